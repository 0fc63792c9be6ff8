//! Key encoding: the only place that lays out key bytes.
//!
//! Integers are big-endian and fixed-width, signed ones with the sign bit flipped, so that the
//! byte order of keys is their logical order (RocksDB iterates in byte order).

use crate::model::Survey;

/// Encodes an `i64` so that byte order equals numeric order.
pub fn i64_key(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn i64_from_key(bytes: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = bytes.try_into().ok()?;
    Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

/// Key of an alert in the `alerts` column family: survey code, then the alert id.
pub fn alert_key(survey: Survey, alert_id: i64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = survey.code();
    key[1..].copy_from_slice(&i64_key(alert_id));
    key
}

/// Key of an object in the `objects` column family: its id, as UTF-8.
pub fn object_key(object_id: &str) -> &[u8] {
    object_id.as_bytes()
}

/// Key of a survey's counters in the `meta` column family.
pub fn counts_key(survey: Survey) -> Vec<u8> {
    format!("counts/{}", survey.as_str()).into_bytes()
}

pub const FORMAT_VERSION_KEY: &[u8] = b"format_version";
pub const SPEC_KEY: &[u8] = b"embedding_spec";
pub const NEXT_POINT_KEY: &[u8] = b"next_point";
pub const INDEX_DUMP_KEY: &[u8] = b"index_dump";
pub const INDEX_SETTINGS_KEY: &[u8] = b"index_settings";
/// Present once the `record_labels` column covers every object.
pub const RECORD_LABELS_KEY: &[u8] = b"record_labels_complete";
/// Present while a bulk seed is in progress (or was interrupted).
pub const SEEDING_KEY: &[u8] = b"seeding";

/// Key of one embedding version in the `vectors` column family: the object id, a 0 byte (ids
/// hold no NUL), then the version number, so an object's versions are adjacent and in order.
pub fn vector_key(object_id: &str, seq: u32) -> Vec<u8> {
    let mut key = vector_prefix(object_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The prefix shared by all versions of one object.
pub fn vector_prefix(object_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(object_id.len() + 5);
    key.extend_from_slice(object_id.as_bytes());
    key.push(0);
    key
}

/// Key of a user's vote on an object in the `votes` column family: user, a 0 byte, object id.
pub fn vote_key(user: &str, object_id: &str) -> Vec<u8> {
    let mut key = vote_prefix(user);
    key.extend_from_slice(object_id.as_bytes());
    key
}

/// The prefix shared by all votes of one user.
pub fn vote_prefix(user: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.len() + 1);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key
}

/// Splits a `vectors` key into object id and version.
pub fn split_vector_key(key: &[u8]) -> Option<(&str, u32)> {
    let cut = key.len().checked_sub(5)?;
    if key[cut] != 0 {
        return None;
    }
    let id = std::str::from_utf8(&key[..cut]).ok()?;
    let seq = u32::from_be_bytes(key[cut + 1..].try_into().ok()?);
    Some((id, seq))
}

/// Key of a Kafka partition in the `offsets` column family: the topic, a 0 byte (topic names
/// hold none), then the partition.
pub fn partition_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(topic.len() + 5);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// Key of a quarantined message: its partition's key, then its offset.
pub fn quarantine_key(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut key = partition_key(topic, partition);
    key.extend_from_slice(&i64_key(offset));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i64_keys_round_trip_and_sort_like_numbers() {
        let values = [i64::MIN, -5, -1, 0, 1, 7, 1 << 40, i64::MAX];
        for w in values.windows(2) {
            assert!(i64_key(w[0]) < i64_key(w[1]), "{} < {}", w[0], w[1]);
        }
        for v in values {
            assert_eq!(i64_from_key(&i64_key(v)), Some(v));
        }
    }

    #[test]
    fn vector_keys_round_trip_and_keep_versions_in_order() {
        let k = vector_key("ZTF18abc", 258);
        assert_eq!(split_vector_key(&k), Some(("ZTF18abc", 258)));
        assert!(vector_key("A", 1) < vector_key("A", 2));
        assert!(
            vector_key("A", u32::MAX) < vector_key("AB", 0),
            "versions of A stay together"
        );
        assert!(k.starts_with(&vector_prefix("ZTF18abc")));
    }

    #[test]
    fn alert_keys_group_by_survey() {
        assert!(alert_key(Survey::Ztf, i64::MAX) < alert_key(Survey::Lsst, i64::MIN));
        assert_eq!(&alert_key(Survey::Lsst, 3)[1..], &i64_key(3));
    }
}
