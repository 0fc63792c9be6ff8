//! The Kafka side of the store: each partition's next offset, written in the same batch as the
//! alerts its messages carried (so a restart resumes exactly after the last stored message),
//! and the quarantine of messages that could not be decoded.

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use super::{cf, decode, encode, keys, Batch, Result, Store};

/// Where a Kafka partition stands in this store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    /// The offset of the first message not yet in the store.
    pub next: i64,
    /// The partition's high watermark (the offset the broker will give its next message) when
    /// the consumer last asked, and when that was (Unix seconds): `high - next` is the lag.
    pub high_watermark: Option<i64>,
    pub watermark_at: Option<u64>,
}

impl PartitionOffset {
    /// Messages on the broker not yet in the store, as of the last watermark.
    pub fn lag(&self) -> Option<i64> {
        self.high_watermark.map(|h| (h - self.next).max(0))
    }
}

/// A message that could not be decoded, kept with its bytes so nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    /// Unix seconds when it was quarantined.
    pub at: u64,
    pub bytes: Vec<u8>,
}

impl Store {
    pub(super) fn write_stream_marks(&self, wb: &mut WriteBatch, batch: &Batch) -> Result<()> {
        if !batch.offsets.is_empty() {
            let offsets = self.handle(cf::OFFSETS)?;
            for o in &batch.offsets {
                wb.put_cf(
                    offsets,
                    keys::partition_key(&o.topic, o.partition),
                    encode(cf::OFFSETS, o)?,
                );
            }
        }
        if !batch.quarantined.is_empty() {
            let quarantine = self.handle(cf::QUARANTINE)?;
            for q in &batch.quarantined {
                wb.put_cf(
                    quarantine,
                    keys::quarantine_key(&q.topic, q.partition, q.offset),
                    encode(cf::QUARANTINE, q)?,
                );
            }
        }
        Ok(())
    }

    /// Every partition this store has read, in (topic, partition) order.
    pub fn offsets(&self) -> Result<Vec<PartitionOffset>> {
        let mut out = Vec::new();
        self.scan(cf::OFFSETS, b"", |_, o: PartitionOffset| {
            out.push(o);
            true
        })?;
        Ok(out)
    }

    /// The stored position of one partition.
    pub fn offset(&self, topic: &str, partition: i32) -> Result<Option<PartitionOffset>> {
        let handle = self.handle(cf::OFFSETS)?;
        let key = keys::partition_key(topic, partition);
        self.db
            .get_pinned_cf(handle, &key)?
            .map(|v| decode(cf::OFFSETS, &key, &v))
            .transpose()
    }

    /// Quarantined messages in (topic, partition, offset) order, at most `limit`.
    pub fn quarantined(&self, limit: usize) -> Result<Vec<Quarantined>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan(cf::QUARANTINE, b"", |_, q: Quarantined| {
            out.push(q);
            out.len() < limit
        })?;
        Ok(out)
    }
}
