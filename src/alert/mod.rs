//! Decoding of alert packets and lightcurve tables into [`crate::model::Alert`]s.
//!
//! Pure: every function takes bytes and a name and returns alerts plus rejects; nothing here
//! opens a file, a socket or a database, so the same code serves files, gRPC streams and,
//! later, Kafka. The format is recognised from the bytes, not the file name:
//!
//! | bytes start with | format |
//! |---|---|
//! | `Obj\x01` | Avro object container (ZTF, Fink, Rubin, ELAsTiCC; null, deflate or snappy) |
//! | `PAR1` | Parquet: alert rows (`candidate` or `diaSource` column) or a lightcurve table |
//! | `\x1f\x8b` | gzip: a tar of packets, or one packet |
//! | `ustar` at offset 257 | tar of packets |
//! | `\x00` + 4-byte schema id | Confluent wire format: one Avro datum, needs a schema |
//! | text with a header line | CSV lightcurve table |
//!
//! Imports only [`crate::model`].

mod container;
mod lsst;
mod pages;
mod table;
pub mod value;
pub mod write;
mod ztf;

use rayon::prelude::*;
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::{Reader, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::model::Alert;

/// Why a packet, a row or a file could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty file")]
    Empty,
    #[error("unrecognised format: {detail}")]
    UnknownFormat { detail: String },
    #[error("Avro: {detail}")]
    Avro { detail: String },
    #[error("Parquet: {detail}")]
    Parquet { detail: String },
    #[error("CSV: {detail}")]
    Csv { detail: String },
    #[error("archive: {detail}")]
    Archive { detail: String },
    #[error(
        "a Confluent-framed Avro datum (schema id {schema_id}) needs a writer schema (--schema)"
    )]
    NeedsSchema { schema_id: u32 },
    #[error("no writer schema for schema id {schema_id} (known: {known})")]
    UnknownSchemaId { schema_id: u32, known: String },
    #[error("record is neither a ZTF alert (no `candidate`) nor an LSST alert (no `diaSource`)")]
    UnknownRecord,
    #[error("missing field `{field}`")]
    MissingField { field: &'static str },
    #[error("invalid `{field}`: {reason}")]
    InvalidValue { field: &'static str, reason: String },
    #[error("not a lightcurve table: no {missing} column (columns: {columns})")]
    NotALightcurveTable { missing: String, columns: String },
    #[error("{reason}")]
    BadRow { reason: String },
}

pub type Result<T> = std::result::Result<T, DecodeError>;

/// Something that was not decoded, with where it came from (`file`, `file#record 3`,
/// `archive.tar.gz:member.avro`, `table.csv:line 12`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub source: String,
    pub error: DecodeError,
}

/// The alerts and rejects of one input.
#[derive(Debug, Default)]
pub struct Decoded {
    pub alerts: Vec<Alert>,
    pub rejects: Vec<Reject>,
}

impl Decoded {
    fn reject(&mut self, source: impl Into<String>, error: DecodeError) {
        self.rejects.push(Reject {
            source: source.into(),
            error,
        });
    }
}

/// A writer schema for Confluent-framed datums: the alert schema and the named schemas it uses.
#[derive(Debug)]
pub struct AvroSchema {
    main: Schema,
    named: Vec<Schema>,
}

impl AvroSchema {
    /// Parses schema texts; with several (LSST and ZTF split their schemas into one `.avsc` per
    /// record), the one named `alert` is the writer schema and the others resolve its references.
    pub fn parse(texts: &[String]) -> Result<AvroSchema> {
        let err = |e: apache_avro::Error| DecodeError::Avro {
            detail: format!("schema: {e}"),
        };
        if texts.len() == 1 {
            let main = Schema::parse_str(&texts[0]).map_err(err)?;
            return Ok(AvroSchema {
                main,
                named: Vec::new(),
            });
        }
        let mut named = Schema::parse_list(texts).map_err(err)?;
        let at = named
            .iter()
            .position(|s| s.name().is_some_and(|n| n.name() == "alert"))
            .ok_or(DecodeError::Avro {
                detail: "schema: no record named `alert` among the schema files".into(),
            })?;
        // References resolve in list order: the alert record, which uses the others, goes last.
        let main = named.remove(at);
        named.push(main.clone());
        Ok(AvroSchema { main, named })
    }

    fn read(&self, datum: &[u8]) -> Result<Value> {
        let err = |e: apache_avro::Error| DecodeError::Avro {
            detail: e.to_string(),
        };
        let builder = GenericDatumReader::builder(&self.main);
        let reader = if self.named.is_empty() {
            builder.build()
        } else {
            builder
                .writer_schemata(self.named.iter().collect())
                .map_err(err)?
                .build()
        }
        .map_err(err)?;
        let mut cursor = datum;
        let value = reader.read_value(&mut cursor).map_err(err)?;
        if !cursor.is_empty() {
            return Err(DecodeError::Avro {
                detail: format!("{} bytes left after the datum: wrong schema?", cursor.len()),
            });
        }
        Ok(value)
    }
}

/// Options for decoding.
#[derive(Debug, Default, Clone)]
pub struct DecodeOptions {
    /// Writer schema for Confluent-framed datums whatever their schema id (one `--schema`).
    pub confluent_schema: Option<Arc<AvroSchema>>,
    /// Writer schemas by schema id (Rubin: major * 100 + minor), from a schema tree or a
    /// registry; an id found here wins over `confluent_schema`.
    pub schemas_by_id: HashMap<u32, Arc<AvroSchema>>,
}

impl DecodeOptions {
    /// The writer schema for a datum framed with `schema_id`.
    pub fn schema_for(&self, schema_id: u32) -> Result<&AvroSchema> {
        if let Some(s) = self.schemas_by_id.get(&schema_id) {
            return Ok(s);
        }
        match &self.confluent_schema {
            Some(s) => Ok(s),
            None if self.schemas_by_id.is_empty() => Err(DecodeError::NeedsSchema { schema_id }),
            None => {
                let mut known: Vec<u32> = self.schemas_by_id.keys().copied().collect();
                known.sort_unstable();
                Err(DecodeError::UnknownSchemaId {
                    schema_id,
                    known: known
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
    }
}

/// The schema id of a Confluent-framed datum (magic byte 0, then the id, big-endian), if
/// `bytes` is one.
pub fn confluent_schema_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [0, a, b, c, d, _, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Decodes one ZTF or LSST alert record, whatever container it came from.
pub fn decode_record(record: &Value) -> Result<Alert> {
    let alert = if value::field(record, "candidate").is_some() {
        ztf::decode(record)?
    } else if value::field(record, "diaSource").is_some() {
        lsst::decode(record)?
    } else {
        return Err(DecodeError::UnknownRecord);
    };
    check_object_id(&alert.object_id)?;
    Ok(alert)
}

/// An object id the store can key: not empty, no NUL byte (the store separates an object id
/// from what follows it in a key with a NUL).
pub fn check_object_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "is empty"
    } else if id.contains('\0') {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(DecodeError::InvalidValue {
        field: "objectId",
        reason: reason.into(),
    })
}

/// Decodes the bytes of one input named `name` (a file path, an archive member, a stream id).
pub fn decode(name: &str, bytes: &[u8], opts: &DecodeOptions) -> Decoded {
    let mut out = Decoded::default();
    decode_into(name, bytes, opts, &mut out, 0);
    out
}

const MAX_NESTING: usize = 4;

fn decode_into(name: &str, bytes: &[u8], opts: &DecodeOptions, out: &mut Decoded, depth: usize) {
    let reject = |out: &mut Decoded, error| out.reject(name, error);
    if bytes.is_empty() {
        return reject(out, DecodeError::Empty);
    }
    if depth > MAX_NESTING {
        return reject(
            out,
            DecodeError::Archive {
                detail: "archives nested too deep".into(),
            },
        );
    }
    if bytes.starts_with(b"Obj\x01") {
        avro_container(name, bytes, out);
    } else if bytes.starts_with(b"PAR1") {
        parquet_file(name, bytes, out);
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut inner = Vec::new();
        match flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut inner) {
            Ok(_) => {
                let inner_name = name.strip_suffix(".gz").unwrap_or(name);
                decode_into(inner_name, &inner, opts, out, depth + 1);
            }
            Err(e) => reject(
                out,
                DecodeError::Archive {
                    detail: format!("gzip: {e}"),
                },
            ),
        }
    } else if is_tar(bytes) {
        tar_archive(name, bytes, opts, out, depth);
    } else if bytes[0] == 0 && bytes.len() > 5 {
        confluent(name, bytes, opts, out);
    } else if bytes.starts_with(b"PK\x03\x04") {
        reject(
            out,
            DecodeError::UnknownFormat {
                detail: "a zip archive; Asterism reads tar, tar.gz, gzip and plain files".into(),
            },
        );
    } else if looks_like_csv(name, bytes) {
        csv_table(name, bytes, out);
    } else {
        reject(
            out,
            DecodeError::UnknownFormat {
                detail: "not Avro, Parquet, tar, gzip, a Confluent-framed datum or a CSV table"
                    .into(),
            },
        );
    }
}

fn is_tar(bytes: &[u8]) -> bool {
    bytes.len() >= 262 && &bytes[257..262] == b"ustar"
}

fn looks_like_csv(name: &str, bytes: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".csv") || lower.ends_with(".csv.gz") {
        return true;
    }
    let head = &bytes[..bytes.len().min(4096)];
    std::str::from_utf8(head).is_ok_and(|s| s.lines().next().is_some_and(|l| l.contains(',')))
        && !lower.ends_with(".json")
}

fn avro_container(name: &str, bytes: &[u8], out: &mut Decoded) {
    // Each record becomes an alert as it is read: a record's Avro value is ~100 times its
    // bytes, so a container's values are never held together.
    let mut one = Decoded::default();
    let read = container::for_each_record(bytes, |i, record| match decode_record(&record) {
        Ok(alert) => one.alerts.push(alert),
        Err(error) => one.reject(format!("{name}#record {i}"), error),
    });
    if read {
        out.alerts.extend(one.alerts);
        out.rejects.extend(one.rejects);
        return;
    }
    // Not a container the cached-schema reader takes: apache-avro's reader names the problem.
    let reader = match Reader::new(bytes) {
        Ok(r) if container::encodes_in_zero_bytes(r.writer_schema()) => {
            out.reject(
                name,
                DecodeError::Avro {
                    detail: "the writer schema encodes a record in zero bytes: no alert".into(),
                },
            );
            return;
        }
        Ok(r) => r,
        Err(e) => {
            out.reject(
                name,
                DecodeError::Avro {
                    detail: e.to_string(),
                },
            );
            return;
        }
    };
    for (i, record) in reader.enumerate() {
        let source = || format!("{name}#record {i}");
        match record {
            Ok(v) => match decode_record(&v) {
                Ok(alert) => out.alerts.push(alert),
                Err(error) => out.reject(source(), error),
            },
            Err(e) => {
                // A corrupt block cannot be resynchronised: the rest of the file is lost.
                out.reject(
                    source(),
                    DecodeError::Avro {
                        detail: e.to_string(),
                    },
                );
                break;
            }
        }
    }
}

/// Decodes an Avro object container read from `reader` without holding it whole: its blocks are
/// read in order, and each run of blocks whose sizes add up to at least `piece_bytes` is decoded
/// (the blocks in parallel) and handed to `each` as one piece. The pieces together hold what
/// [`decode`] gives for the same bytes; a damaged block ends the container with a reject of
/// its first unreadable record, after every record before it. Records are named
/// `{name}#record {i}`, counted from the start of the container. `each` returns `false` to stop
/// reading; so does this function then. `None`, before any piece, when the header is not one
/// this reader takes (not a container, an unknown codec, a schema that does not parse): decode
/// the bytes with [`decode`], which names the problem.
pub fn decode_container_stream(
    name: &str,
    reader: impl std::io::BufRead,
    piece_bytes: usize,
    mut each: impl FnMut(Decoded) -> bool,
) -> Option<bool> {
    let mut src = container::Streamed(reader);
    let header = container::Header::read(&mut src).ok()?;
    // Blocks read and not yet decoded, each with the index of its first record.
    let mut blocks = Vec::new();
    let (mut held, mut next_record) = (0usize, 0usize);
    // Each block's records become alerts as they are read, the blocks of a piece in parallel.
    let decode_blocks = |blocks: &mut Vec<(usize, container::RawBlock<Vec<u8>>)>| {
        let decoded: Vec<(Decoded, Option<Reject>)> = blocks
            .par_iter()
            .map(|(first, block)| {
                let (mut one, mut i) = (Decoded::default(), *first);
                let error = header.decode(block, |record| {
                    match decode_record(&record) {
                        Ok(alert) => one.alerts.push(alert),
                        Err(error) => one.reject(format!("{name}#record {i}"), error),
                    }
                    i += 1;
                });
                let error = error.map(|detail| Reject {
                    source: format!("{name}#record {i}"),
                    error: DecodeError::Avro {
                        detail: format!("{detail}; the rest of the container cannot be read"),
                    },
                });
                (one, error)
            })
            .collect();
        blocks.clear();
        let mut piece = Decoded::default();
        for (one, error) in decoded {
            piece.alerts.extend(one.alerts);
            piece.rejects.extend(one.rejects);
            if let Some(reject) = error {
                piece.rejects.push(reject);
                return (piece, false);
            }
        }
        (piece, true)
    };
    let mut broken = None;
    while let Some(block) = header.next_block(&mut src) {
        match block {
            Ok(block) => {
                held = held.saturating_add(block.len());
                let count = block.count;
                blocks.push((next_record, block));
                next_record = next_record.saturating_add(count);
                if held >= piece_bytes {
                    held = 0;
                    let (piece, whole) = decode_blocks(&mut blocks);
                    let more = each(piece);
                    // A damaged block ended the container: that piece was its last.
                    if !more || !whole {
                        return Some(more);
                    }
                }
            }
            Err(detail) => {
                broken = Some(detail);
                break;
            }
        }
    }
    let (mut last, whole) = decode_blocks(&mut blocks);
    if let (Some(detail), true) = (broken, whole) {
        last.reject(
            format!("{name}#record {next_record}"),
            DecodeError::Avro {
                detail: format!("truncated or corrupt container: {detail}"),
            },
        );
    }
    Some(each(last))
}

fn confluent(name: &str, bytes: &[u8], opts: &DecodeOptions, out: &mut Decoded) {
    let schema_id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let result = opts
        .schema_for(schema_id)
        .and_then(|schema| schema.read(&bytes[5..]))
        .and_then(|v| decode_record(&v));
    match result {
        Ok(alert) => out.alerts.push(alert),
        Err(error) => out.reject(name, error),
    }
}

fn tar_archive(name: &str, bytes: &[u8], opts: &DecodeOptions, out: &mut Decoded, depth: usize) {
    tar_pieces((name, name), bytes, opts, depth, usize::MAX, |piece| {
        out.alerts.extend(piece.alerts);
        out.rejects.extend(piece.rejects);
        true
    });
}

/// Whether the first bytes of an input (decompressed, if it is gzip) are those of a tar
/// archive: [`decode_tar_stream`] can read such an input a piece at a time.
pub fn is_tar_head(head: &[u8]) -> bool {
    is_tar(head)
}

/// Decodes a tar archive read from `reader` (a file, a gzip decoder over one) without holding
/// it whole: its members are read in order and handed on in pieces, each the members whose
/// sizes add up to at most `piece_bytes` (a larger member is a piece of its own), decoded in
/// parallel and given to `each` in archive order. The pieces together are what [`decode`]
/// gives for the same bytes, rejects included (a truncated or corrupt archive ends with a
/// reject of `name`, after the members read before the damage). Members are named
/// `{tar}:{path}`, where `tar` is the archive's name as [`decode`] gives it (a gzip's without
/// `.gz`). `each` returns `false` to stop reading; so does this function then.
pub fn decode_tar_stream(
    name: &str,
    tar: &str,
    reader: impl Read,
    opts: &DecodeOptions,
    piece_bytes: usize,
    each: impl FnMut(Decoded) -> bool,
) -> bool {
    tar_pieces((name, tar), reader, opts, 0, piece_bytes, each)
}

/// The members of the tar archive read from `reader`, decoded a piece at a time (see
/// [`decode_tar_stream`]: `(name, tar)`, what a reject of the archive and its members are
/// named by); `false` when `each` stopped it.
fn tar_pieces(
    (name, tar): (&str, &str),
    reader: impl Read,
    opts: &DecodeOptions,
    depth: usize,
    piece_bytes: usize,
    mut each: impl FnMut(Decoded) -> bool,
) -> bool {
    // Members decode independently: in parallel, their results kept in archive order.
    let decode_piece = |members: &mut Vec<(String, Vec<u8>)>| -> Decoded {
        let decoded: Vec<Decoded> = members
            .par_iter()
            .map(|(member, data)| {
                let mut one = Decoded::default();
                decode_into(member, data, opts, &mut one, depth + 1);
                one
            })
            .collect();
        members.clear();
        let mut piece = Decoded::default();
        for d in decoded {
            piece.alerts.extend(d.alerts);
            piece.rejects.extend(d.rejects);
        }
        piece
    };
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            let mut piece = Decoded::default();
            piece.reject(
                name,
                DecodeError::Archive {
                    detail: e.to_string(),
                },
            );
            return each(piece);
        }
    };
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut held = 0usize;
    let mut broken = None;
    for entry in entries {
        let result = entry.and_then(|mut e| {
            let path = e.path()?.to_string_lossy().into_owned();
            let is_file = e.header().entry_type().is_file();
            let mut data = Vec::new();
            if is_file {
                e.read_to_end(&mut data)?;
            }
            Ok((path, is_file, data))
        });
        match result {
            Ok((path, true, data)) => {
                let base = path.rsplit('/').next().unwrap_or(&path);
                // macOS tar writes `._name` resource forks beside each member.
                if base.starts_with("._") {
                    continue;
                }
                if !members.is_empty() && held.saturating_add(data.len()) > piece_bytes {
                    if !each(decode_piece(&mut members)) {
                        return false;
                    }
                    held = 0;
                }
                held = held.saturating_add(data.len());
                members.push((format!("{tar}:{path}"), data));
            }
            Ok(_) => {}
            Err(e) => {
                broken = Some(DecodeError::Archive {
                    detail: format!("truncated or corrupt tar: {e}"),
                });
                break;
            }
        }
    }
    let mut last = decode_piece(&mut members);
    if let Some(e) = broken {
        last.reject(name, e);
    }
    each(last)
}

/// Columns never needed for decoding; skipping them makes Parquet alerts much cheaper to read.
fn unneeded_column(name: &str) -> bool {
    name.starts_with("cutout") || name.starts_with("lc_features")
}

/// Decodes a Parquet file held in memory (see [`decode_parquet_stream`]).
fn parquet_file(name: &str, bytes: &[u8], out: &mut Decoded) {
    decode_parquet_stream(
        name,
        bytes::Bytes::copy_from_slice(bytes),
        usize::MAX,
        |piece| {
            out.alerts.extend(piece.alerts);
            out.rejects.extend(piece.rejects);
            true
        },
    );
}

/// Runs `f`, turning a panic into its message.
fn caught<R>(f: impl FnOnce() -> R) -> std::result::Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into())
    })
}

/// Decodes a Parquet file read from `input` (the bytes in memory, or a file read as it is
/// decoded) a row group at a time, handing the alerts on to `each` in pieces: a piece is the
/// rows of about `piece_bytes` of a row group's compressed columns (at least one row, at most a
/// row group), so that a file of any size is never held whole. `usize::MAX` makes each row
/// group one piece. A lightcurve table (no `candidate` or `diaSource` column) is one piece: its
/// rows are grouped by object across the whole file. `each` returns `false` to stop reading;
/// so does this function then.
///
/// The parquet and arrow crates panic on some malformed files (a negative column offset in the
/// footer, a zero-width byte-array page, a data page whose dictionary is missing, a validity
/// bitmap shorter than its column: all found by `benches/fuzz.rs`); such a row group is
/// rejected with the reader's message instead of taking the ingest (or the server's worker)
/// down with it, and the row groups after it are still read. Page headers the reader would
/// trust with gigabytes or minutes are checked first, a row group at a time
/// ([`pages::check_group`]), and the footer before anything ([`pages::check_footer`]).
pub fn decode_parquet_stream<T>(
    name: &str,
    input: T,
    piece_bytes: usize,
    mut each: impl FnMut(Decoded) -> bool,
) -> bool
where
    T: parquet::file::reader::ChunkReader + Clone + 'static,
{
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};

    let mut out = Decoded::default();
    let malformed = |detail: String| DecodeError::Parquet {
        detail: format!("malformed file: {detail}"),
    };
    let failed = |message: String| DecodeError::Parquet {
        detail: format!("malformed file, the Parquet reader failed: {message}"),
    };
    let perr = |e: &dyn std::fmt::Display| DecodeError::Parquet {
        detail: e.to_string(),
    };
    let file_len = input.len();
    let read = |start: u64, end: u64| {
        let n = usize::try_from(end - start).map_err(|e| e.to_string())?;
        input.get_bytes(start, n).map_err(|e| e.to_string())
    };
    if let Err(detail) = pages::check_footer(file_len, read) {
        out.reject(name, malformed(detail));
        return each(out);
    }
    let metadata = match caught(|| ArrowReaderMetadata::load(&input, ArrowReaderOptions::new())) {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            out.reject(name, perr(&e));
            return each(out);
        }
        Err(message) => {
            out.reject(name, failed(message));
            return each(out);
        }
    };
    let columns: Vec<String> = metadata
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let is_alerts = columns.iter().any(|c| c == "candidate" || c == "diaSource");
    let keep: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !unneeded_column(c))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(metadata.parquet_schema(), keep);
    let layout = if is_alerts {
        None
    } else {
        let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
        match table::layout(&cols) {
            Ok(l) => Some(l),
            Err(error) => {
                out.reject(name, error);
                return each(out);
            }
        }
    };
    let mut rows = Vec::new();
    let mut group_start = 0usize;
    for g in 0..metadata.metadata().num_row_groups() {
        let group = metadata.metadata().row_group(g);
        let group_rows = usize::try_from(group.num_rows()).unwrap_or(0);
        let mut row_index = group_start;
        group_start = group_start.saturating_add(group_rows);
        if let Err(detail) = pages::check_group(metadata.metadata(), g, file_len, read) {
            out.reject(name, malformed(detail));
            continue;
        }
        // Rows per piece: the row group's share of `piece_bytes`, by its compressed size.
        let compressed = usize::try_from(group.compressed_size()).unwrap_or(1).max(1);
        let batch_rows =
            (group_rows as u128 * piece_bytes as u128 / compressed as u128).clamp(1, 8192) as usize;
        let built = caught(|| {
            ParquetRecordBatchReaderBuilder::new_with_metadata(input.clone(), metadata.clone())
                .with_projection(mask.clone())
                .with_row_groups(vec![g])
                .with_batch_size(batch_rows)
                .build()
        });
        let mut reader = match built {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                out.reject(format!("{name}#row {row_index}"), perr(&e));
                continue;
            }
            Err(message) => {
                out.reject(name, failed(format!("{message} (row group {g})")));
                continue;
            }
        };
        loop {
            let batch = match caught(|| reader.next()) {
                Ok(None) => break,
                Ok(Some(Ok(batch))) => batch,
                Ok(Some(Err(e))) => {
                    out.reject(format!("{name}#row {row_index}"), perr(&e));
                    break;
                }
                Err(message) => {
                    // The reader is left in no known state: the rest of the row group is lost.
                    out.reject(
                        name,
                        failed(format!(
                            "{message} (row group {g}, rows {row_index} to {} lost)",
                            group_start.saturating_sub(1)
                        )),
                    );
                    break;
                }
            };
            for r in 0..batch.num_rows() {
                let record = value::arrow_row(&batch, r, &|_| false);
                if is_alerts {
                    match decode_record(&record) {
                        Ok(alert) => out.alerts.push(alert),
                        Err(error) => out.reject(format!("{name}#row {row_index}"), error),
                    }
                } else {
                    rows.push((format!("{name}#row {row_index}"), record));
                }
                row_index += 1;
            }
            if is_alerts && piece_bytes != usize::MAX && !each(std::mem::take(&mut out)) {
                return false;
            }
        }
    }
    if let Some(layout) = layout {
        table::decode_rows(
            rows.into_iter(),
            layout,
            &default_object_id(name),
            &mut out.alerts,
            &mut out.rejects,
        );
    }
    each(out)
}

fn csv_table(name: &str, bytes: &[u8], out: &mut Decoded) {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            out.reject(
                name,
                DecodeError::Csv {
                    detail: e.to_string(),
                },
            );
            return;
        }
    };
    let cols: Vec<&str> = header.iter().collect();
    let layout = match table::layout(&cols) {
        Ok(l) => l,
        Err(error) => {
            out.reject(name, error);
            return;
        }
    };
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        match record {
            Ok(r) => {
                let fields = header
                    .iter()
                    .zip(r.iter())
                    .map(|(h, cell)| {
                        let v = if cell.is_empty() {
                            Value::Null
                        } else {
                            Value::String(cell.to_string())
                        };
                        (h.to_string(), v)
                    })
                    .collect();
                rows.push((format!("{name}:line {line}"), Value::Record(fields)));
            }
            Err(e) => out.reject(
                format!("{name}:line {line}"),
                DecodeError::Csv {
                    detail: e.to_string(),
                },
            ),
        }
    }
    table::decode_rows(
        rows.into_iter(),
        layout,
        &default_object_id(name),
        &mut out.alerts,
        &mut out.rejects,
    );
}

/// The object id of a one-object-per-file table: the file's stem. A stem of fewer than four
/// characters (`1.csv`) names no object, so the parent folder's name is put before it
/// (`light-curve-3/1`), which keeps such files apart.
pub fn default_object_id(name: &str) -> String {
    let path = name.rsplit(':').next().unwrap_or(name);
    let mut parts = path.rsplit('/');
    let file = parts.next().unwrap_or(path);
    let stem = file
        .split_once('.')
        .map_or(file, |(stem, _)| stem)
        .to_string();
    match parts.next() {
        Some(parent) if stem.len() < 4 && !parent.is_empty() => format!("{parent}/{stem}"),
        _ => stem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ids_come_from_file_names() {
        assert_eq!(
            default_object_id("data/lc/ZTF18aaa.csv"),
            "ZTF18aaa".to_string()
        );
        assert_eq!(
            default_object_id("x/light-curve-3/1.csv"),
            "light-curve-3/1"
        );
        assert_eq!(default_object_id("a.tar.gz:dir/1013184.csv"), "1013184");
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        let d = decode("x.bin", b"\x7fELF....", &DecodeOptions::default());
        assert!(d.alerts.is_empty());
        assert!(matches!(
            d.rejects[0].error,
            DecodeError::UnknownFormat { .. }
        ));
        let d = decode("x.avro", b"", &DecodeOptions::default());
        assert_eq!(d.rejects[0].error, DecodeError::Empty);
        let d = decode("x.avro", b"\0\0\0\0\x07abc", &DecodeOptions::default());
        assert_eq!(
            d.rejects[0].error,
            DecodeError::NeedsSchema { schema_id: 7 }
        );
    }

    #[test]
    fn a_table_of_limiting_magnitudes_gives_upper_limits() {
        let csv = b"oid,mjd,fid,diffmaglim\nZTF00a,58000.5,1,20.1\nZTF00a,58001.5,2,19.9\n";
        let d = decode("non_detections.csv", csv, &DecodeOptions::default());
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        assert_eq!(d.alerts[0].object_id, "ZTF00a");
        assert!(d.alerts[0].detections.is_empty());
        assert_eq!(d.alerts[0].upper_limits.len(), 2);
        assert_eq!(d.alerts[0].upper_limits[1].band, crate::model::Band::R);
    }

    #[test]
    fn csv_rows_with_bad_values_are_rejected_alone() {
        let csv =
            b"time,mag,magerr,band\n1.0,18.0,0.1,g\n2.0,NaN,0.1,g\n3.0,,0.1,r\n4.0,17.5,0.2,r\n";
        let d = decode("dir/ZTF00test.csv", csv, &DecodeOptions::default());
        assert_eq!(d.alerts.len(), 1);
        assert_eq!(d.alerts[0].object_id, "ZTF00test");
        assert_eq!(d.alerts[0].detections.len(), 2);
        assert_eq!(d.rejects.len(), 2);
        assert_eq!(d.rejects[0].source, "dir/ZTF00test.csv:line 3");
    }

    /// The store separates an object id from what follows it in a key with a NUL byte: an id
    /// holding one is rejected with its row, the other rows land.
    #[test]
    fn object_ids_with_a_nul_byte_are_rejected_with_their_row() {
        let csv = b"oid,mjd,fid,magpsf,sigmapsf\nZTF00a,58000.5,1,18.0,0.1\nZTF\x0000b,58001.5,2,18.1,0.1\n";
        let d = decode("t.csv", csv, &DecodeOptions::default());
        assert_eq!(d.alerts.len(), 1);
        assert_eq!(d.alerts[0].object_id, "ZTF00a");
        assert_eq!(d.rejects.len(), 1);
        assert_eq!(d.rejects[0].source, "t.csv:line 3");
        assert_eq!(
            d.rejects[0].error,
            DecodeError::InvalidValue {
                field: "objectId",
                reason: "contains a NUL byte".into()
            }
        );
        assert!(check_object_id("").is_err());
        assert!(check_object_id("ZTF18abxhyqv").is_ok());
    }
}
