//! Avro object containers read with each distinct writer schema parsed once per process.
//!
//! ZTF sends one alert per container, each carrying the full writer schema (~10 kB of JSON) in
//! its header; parsing that text again for every packet was a fifth of ingest (BENCHMARKS.md,
//! "Profile of W1"). Here the header is split by hand, the schema text is looked up in a small
//! process-wide cache, and the blocks are decoded with apache-avro's datum reader. Anything this
//! reader does not accept (a codec it does not know, a truncated block, a bad sync marker)
//! returns `None` and the caller falls back to apache-avro's own `Reader`, so malformed files
//! are reported exactly as before.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::{Codec, Schema};

/// Distinct writer schemas kept; ZTF has had about ten schema versions, Rubin a handful. Past
/// this many (a client sending a new schema with every packet), schemas are parsed and dropped.
const MAX_CACHED_SCHEMAS: usize = 64;

type SchemaCache = Mutex<HashMap<Box<[u8]>, Arc<Schema>>>;

fn cache() -> &'static SchemaCache {
    static CACHE: OnceLock<SchemaCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The parsed schema of a header's `avro.schema` text, from the cache when seen before.
fn writer_schema(text: &[u8]) -> Option<Arc<Schema>> {
    if let Some(schema) = cache().lock().ok()?.get(text) {
        return Some(Arc::clone(schema));
    }
    let schema = Arc::new(Schema::parse_str(std::str::from_utf8(text).ok()?).ok()?);
    let mut cache = cache().lock().ok()?;
    if cache.len() < MAX_CACHED_SCHEMAS {
        cache.insert(text.into(), Arc::clone(&schema));
    }
    Some(schema)
}

/// Reads a zig-zag varint `long`, advancing `buf`.
fn long(buf: &mut &[u8]) -> Option<i64> {
    let mut raw: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Reads `n` bytes, advancing `buf`.
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Some(head)
}

/// Reads a length-prefixed `bytes` or `string`, advancing `buf`.
fn bytes<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = usize::try_from(long(buf)?).ok()?;
    take(buf, n)
}

/// Whether a value of `schema` can be written in zero bytes (null, a record of such fields, an
/// empty fixed).
fn zero_bytes(schema: &Schema) -> bool {
    match schema {
        Schema::Null => true,
        Schema::Record(r) => r.fields.iter().all(|f| zero_bytes(&f.schema)),
        Schema::Fixed(f) => f.size == 0,
        _ => false,
    }
}

/// Whether `schema` is, or holds an array of, values written in zero bytes. A block (or an
/// array) may claim any number of such values without holding a byte of them, so reading it
/// would never end; no alert schema is one.
pub(super) fn encodes_in_zero_bytes(schema: &Schema) -> bool {
    fn zero_byte_items(schema: &Schema) -> bool {
        match schema {
            Schema::Array(a) => zero_bytes(&a.items) || zero_byte_items(&a.items),
            Schema::Map(m) => zero_byte_items(&m.types),
            Schema::Record(r) => r.fields.iter().any(|f| zero_byte_items(&f.schema)),
            Schema::Union(u) => u.variants().iter().any(zero_byte_items),
            _ => false,
        }
    }
    zero_bytes(schema) || zero_byte_items(schema)
}

/// Decodes every record of a container, or `None` when the container is not one this reader
/// handles cleanly (the caller then uses apache-avro's `Reader`, which names the problem).
pub(super) fn records(container: &[u8]) -> Option<Vec<Value>> {
    let mut buf = container.strip_prefix(b"Obj\x01")?;
    let mut schema_text = None;
    let mut codec = Codec::Null;
    // Header metadata: a map<bytes> written as blocks; a negative count is followed by the
    // block's size in bytes.
    loop {
        let count = long(&mut buf)?;
        if count == 0 {
            break;
        }
        if count < 0 {
            long(&mut buf)?;
        }
        for _ in 0..count.unsigned_abs() {
            let key = bytes(&mut buf)?;
            let value = bytes(&mut buf)?;
            match key {
                b"avro.schema" => schema_text = Some(value),
                b"avro.codec" => codec = Codec::from_str(std::str::from_utf8(value).ok()?).ok()?,
                _ => {}
            }
        }
    }
    let schema = writer_schema(schema_text?)?;
    if encodes_in_zero_bytes(&schema) {
        return None;
    }
    let sync = take(&mut buf, 16)?;
    let reader = GenericDatumReader::builder(&schema).build().ok()?;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let count = usize::try_from(long(&mut buf)?).ok()?;
        let size = usize::try_from(long(&mut buf)?).ok()?;
        let block = take(&mut buf, size)?;
        if take(&mut buf, 16)? != sync {
            return None;
        }
        let inflated;
        let mut cursor = if codec == Codec::Null {
            block
        } else {
            let mut data = block.to_vec();
            codec.decompress(&mut data).ok()?;
            inflated = data;
            inflated.as_slice()
        };
        for _ in 0..count {
            out.push(reader.read_value(&mut cursor).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Schemas whose values can take no byte, at the top or as array items, are refused: a
    /// block or an array could claim any number of them.
    #[test]
    fn zero_byte_schemas_are_recognised() {
        let parse = |s: &str| Schema::parse_str(s).expect("schema");
        for zero in [
            r#""null""#,
            r#"{"type":"record","name":"a","fields":[]}"#,
            r#"{"type":"record","name":"a","fields":[{"name":"n","type":"null"}]}"#,
            r#"{"type":"record","name":"a","fields":[{"name":"x","type":"long"},
                {"name":"v","type":{"type":"array","items":"null"}}]}"#,
        ] {
            assert!(encodes_in_zero_bytes(&parse(zero)), "{zero}");
        }
        for some in [
            r#""long""#,
            r#"{"type":"record","name":"a","fields":[{"name":"n","type":["null","long"]}]}"#,
            r#"{"type":"array","items":"long"}"#,
        ] {
            assert!(!encodes_in_zero_bytes(&parse(some)), "{some}");
        }
    }

    #[test]
    fn longs_are_zig_zag_varints() {
        for (bytes, want) in [
            (&[0x00u8][..], 0i64),
            (&[0x01], -1),
            (&[0x02], 1),
            (&[0x80, 0x01], 64),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                i64::MIN,
            ),
        ] {
            let mut buf = bytes;
            assert_eq!(long(&mut buf), Some(want));
            assert!(buf.is_empty());
        }
        assert_eq!(long(&mut &[0x80u8][..]), None);
    }

    #[test]
    fn every_bundled_container_reads_as_apache_avro_reads_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let mut compared = 0;
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("data dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let bytes = std::fs::read(&path).expect("read");
                if !bytes.starts_with(b"Obj\x01") {
                    continue;
                }
                let reference: Result<Vec<Value>, _> =
                    apache_avro::Reader::new(bytes.as_slice()).and_then(|r| r.collect());
                match (records(&bytes), reference) {
                    // Compared as decoded alerts, printed: NaN fields (ZTF's `sgmag`) are unequal
                    // to themselves and Avro maps (Fink's `lc_features`) have no order.
                    (Some(ours), Ok(theirs)) => {
                        let alerts = |records: &[Value]| {
                            let alerts: Vec<_> =
                                records.iter().map(super::super::decode_record).collect();
                            format!("{alerts:?}")
                        };
                        assert_eq!(ours.len(), theirs.len(), "{}", path.display());
                        assert!(alerts(&ours) == alerts(&theirs), "{}", path.display());
                    }
                    (None, Err(_)) => {}
                    (ours, theirs) => panic!(
                        "{}: ours {:?}, apache-avro {:?}",
                        path.display(),
                        ours.map(|v| v.len()),
                        theirs.map(|v| v.len())
                    ),
                }
                compared += 1;
            }
        }
        assert!(compared >= 10, "only {compared} containers in data/");
    }
}
