//! Avro object containers read with each distinct writer schema parsed once per process.
//!
//! ZTF sends one alert per container, each carrying the full writer schema (~10 kB of JSON) in
//! its header; parsing that text again for every packet was a fifth of ingest (BENCHMARKS.md,
//! "Profile of W1"). Here the header is split by hand, the schema text is looked up in a small
//! process-wide cache, and the blocks are decoded with apache-avro's datum reader. Anything this
//! reader does not accept (a codec it does not know, a truncated block, a bad sync marker)
//! returns `None` and the caller falls back to apache-avro's own `Reader`, so malformed files
//! are reported exactly as before.
//!
//! The same reader walks a container from a [`Streamed`] reader, a block at a time, so that a
//! container of any size (a night of alerts written as one file) is decoded without being held
//! whole.

use std::collections::HashMap;
use std::io::{BufRead, Read};
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
            return Some(unzigzag(raw));
        }
    }
    None
}

/// The `long` a zig-zag encoded `raw` stands for.
fn unzigzag(raw: u64) -> i64 {
    (raw >> 1) as i64 ^ -((raw & 1) as i64)
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

/// Where a container's bytes come from: a slice in memory, whose blocks are borrowed, or a
/// reader ([`Streamed`]), whose blocks are read one at a time into buffers of their own, so
/// that a container of any size is never held whole.
pub(super) trait Source {
    /// A block's bytes.
    type Block: AsRef<[u8]>;
    /// Reads a zig-zag varint `long`.
    fn long(&mut self) -> Result<i64, String>;
    /// Reads the next `n` bytes.
    fn bytes(&mut self, n: usize) -> Result<Self::Block, String>;
    /// Whether every byte has been read.
    fn at_end(&mut self) -> Result<bool, String>;
}

impl<'s> Source for &'s [u8] {
    type Block = &'s [u8];

    fn long(&mut self) -> Result<i64, String> {
        long(self).ok_or_else(|| "truncated or overlong varint".to_string())
    }

    fn bytes(&mut self, n: usize) -> Result<&'s [u8], String> {
        if self.len() < n {
            return Err(format!("{n} bytes declared, {} left", self.len()));
        }
        let (head, rest) = self.split_at(n);
        *self = rest;
        Ok(head)
    }

    fn at_end(&mut self) -> Result<bool, String> {
        Ok(self.is_empty())
    }
}

/// A container read from `R` as it is decoded.
pub(super) struct Streamed<R>(pub R);

impl<R: BufRead> Source for Streamed<R> {
    type Block = Vec<u8>;

    fn long(&mut self) -> Result<i64, String> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let mut byte = [0u8];
            self.0
                .read_exact(&mut byte)
                .map_err(|e| format!("cannot read: {e}"))?;
            raw |= u64::from(byte[0] & 0x7f) << (7 * i);
            if byte[0] & 0x80 == 0 {
                return Ok(unzigzag(raw));
            }
        }
        Err("overlong varint".into())
    }

    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        // Grown as the bytes arrive: a declared size larger than the input allocates nothing
        // beyond what the input holds.
        let mut out = Vec::new();
        (&mut self.0)
            .take(n as u64)
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot read: {e}"))?;
        if out.len() < n {
            return Err(format!("{n} bytes declared, {} left", out.len()));
        }
        Ok(out)
    }

    fn at_end(&mut self) -> Result<bool, String> {
        self.0
            .fill_buf()
            .map(<[u8]>::is_empty)
            .map_err(|e| format!("cannot read: {e}"))
    }
}

/// A container's header: its writer schema (from the cache), codec and sync marker.
pub(super) struct Header {
    schema: Arc<Schema>,
    codec: Codec,
    sync: [u8; 16],
}

/// A block as read, before it is decompressed and decoded.
pub(super) struct RawBlock<B> {
    /// How many records it declares.
    pub count: usize,
    /// Its size, without the sync marker that ends `bytes`.
    size: usize,
    bytes: B,
}

impl<B: AsRef<[u8]>> RawBlock<B> {
    /// Its bytes on disk.
    pub fn len(&self) -> usize {
        self.size
    }
}

impl Header {
    /// Reads the header, or says why this reader does not take the container (the caller then
    /// uses apache-avro's `Reader`, which names the problem).
    pub(super) fn read(src: &mut impl Source) -> Result<Header, String> {
        if src.bytes(4)?.as_ref() != b"Obj\x01" {
            return Err("not an Avro object container".into());
        }
        let mut schema = None;
        let mut codec = Codec::Null;
        // Header metadata: a map<bytes> written as blocks; a negative count is followed by the
        // block's size in bytes.
        loop {
            let count = src.long()?;
            if count == 0 {
                break;
            }
            if count < 0 {
                src.long()?;
            }
            for _ in 0..count.unsigned_abs() {
                let n = usize::try_from(src.long()?).map_err(|_| "negative key length")?;
                enum Key {
                    Schema,
                    Codec,
                    Other,
                }
                let key = match src.bytes(n)?.as_ref() {
                    b"avro.schema" => Key::Schema,
                    b"avro.codec" => Key::Codec,
                    _ => Key::Other,
                };
                let n = usize::try_from(src.long()?).map_err(|_| "negative value length")?;
                let value = src.bytes(n)?;
                match key {
                    Key::Schema => schema = writer_schema(value.as_ref()),
                    Key::Codec => {
                        codec = std::str::from_utf8(value.as_ref())
                            .ok()
                            .and_then(|c| Codec::from_str(c).ok())
                            .ok_or("unknown codec")?;
                    }
                    Key::Other => {}
                }
            }
        }
        let schema = schema.ok_or("no readable writer schema")?;
        if encodes_in_zero_bytes(&schema) {
            return Err("the writer schema encodes a record in zero bytes".into());
        }
        let mut sync = [0u8; 16];
        sync.copy_from_slice(src.bytes(16)?.as_ref());
        Ok(Header {
            schema,
            codec,
            sync,
        })
    }

    /// The next block, `None` at the end of the input.
    pub(super) fn next_block<S: Source>(
        &self,
        src: &mut S,
    ) -> Option<Result<RawBlock<S::Block>, String>> {
        match src.at_end() {
            Ok(true) => None,
            Ok(false) => Some(self.block(src)),
            Err(e) => Some(Err(e)),
        }
    }

    /// Reads one block and the sync marker after it.
    fn block<S: Source>(&self, src: &mut S) -> Result<RawBlock<S::Block>, String> {
        let count = usize::try_from(src.long()?).map_err(|_| "negative record count")?;
        let size = usize::try_from(src.long()?).map_err(|_| "negative block size")?;
        // The block and the sync marker after it, read as one.
        let bytes = src.bytes(size.checked_add(16).ok_or("block size overflows")?)?;
        if bytes.as_ref()[size..] != self.sync {
            return Err("a block does not end in the container's sync marker".into());
        }
        Ok(RawBlock { count, size, bytes })
    }

    /// Decodes a block's records one at a time, handing each to `each` (so that a block's
    /// records are never held decoded together), up to the first that does not decode; then
    /// says why that one did not (the rest of the block, and of the container, cannot be found).
    pub(super) fn decode(
        &self,
        block: &RawBlock<impl AsRef<[u8]>>,
        mut each: impl FnMut(Value),
    ) -> Option<String> {
        let data = &block.bytes.as_ref()[..block.size];
        let inflated;
        let mut cursor = if self.codec == Codec::Null {
            data
        } else {
            let mut buf = data.to_vec();
            if let Err(e) = self.codec.decompress(&mut buf) {
                return Some(format!("block: {e}"));
            }
            inflated = buf;
            inflated.as_slice()
        };
        let reader = match GenericDatumReader::builder(&self.schema).build() {
            Ok(r) => r,
            Err(e) => return Some(e.to_string()),
        };
        for _ in 0..block.count {
            match reader.read_value(&mut cursor) {
                Ok(v) => each(v),
                Err(e) => return Some(e.to_string()),
            }
        }
        None
    }
}

/// Hands every record of a container in memory to `each`, in order, with its index; `false`
/// when the container is not one this reader handles cleanly (the caller then drops what it
/// was given and uses apache-avro's `Reader`, which names the problem).
pub(super) fn for_each_record(container: &[u8], mut each: impl FnMut(usize, Value)) -> bool {
    let mut src = container;
    let Ok(header) = Header::read(&mut src) else {
        return false;
    };
    let mut i = 0;
    while let Some(block) = header.next_block(&mut src) {
        let Ok(block) = block else {
            return false;
        };
        let failed = header.decode(&block, |v| {
            each(i, v);
            i += 1;
        });
        if failed.is_some() {
            return false;
        }
    }
    true
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
                let mut ours = Vec::new();
                let ours = for_each_record(&bytes, |_, v| ours.push(v)).then_some(ours);
                match (ours, reference) {
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
