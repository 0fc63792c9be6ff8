//! A coverage-free mutation fuzzer for the decoder entry points: the seed corpora built from the
//! real packets of `data/`, the mutators, and the loop that runs `asterism::alert::decode` under
//! `catch_unwind` and records panics and slow calls. Driven by `benches/fuzz.rs` (long runs) and
//! `tests/fuzz_smoke.rs` (a few hundred deterministic mutations per target).
//!
//! Every input is a function of `(seed, iteration)` only ([`Corpus::input`]), so a finding, and a
//! run that died (stack overflow, out of memory), is reproduced with `--seed S --replay I`.
//! Rejects are the normal outcome; a panic (any thread of the decode, rayon included) or a call
//! slower than [`RunConfig::slow`] is a finding. Imports `asterism`, `apache_avro`, `arrow`,
//! `parquet`, `tar`, `flate2` and `rand`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use asterism::alert::{self, DecodeOptions};
use asterism::source;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A decoder entry point under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Format sniffing: `decode` on any bytes with a name that says nothing (`input`).
    Sniff,
    /// Avro object containers (ZTF, Fink, Rubin).
    Avro,
    /// Confluent-framed Rubin datums, decoded with the LSST 10.0 schema files.
    Confluent,
    /// Parquet: Fink alert rows and lightcurve tables.
    Parquet,
    /// CSV lightcurve tables.
    Csv,
    /// tar, gzip and tar.gz wrappers of real packets.
    Archive,
}

impl Target {
    pub const ALL: [Target; 6] = [
        Target::Sniff,
        Target::Avro,
        Target::Confluent,
        Target::Parquet,
        Target::Csv,
        Target::Archive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Sniff => "sniff",
            Target::Avro => "avro",
            Target::Confluent => "confluent",
            Target::Parquet => "parquet",
            Target::Csv => "csv",
            Target::Archive => "archive",
        }
    }

    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One seed input: the name it is decoded under and its bytes.
#[derive(Debug, Clone)]
pub struct Seed {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The seeds of one target and how it decodes them.
pub struct Corpus {
    pub target: Target,
    pub seeds: Vec<Seed>,
    pub opts: DecodeOptions,
    /// Bytes at the start (the format's magic) restored after mutation in 9 of 10 inputs, so
    /// most inputs reach the target's decoder rather than the sniffer's rejection.
    keep_prefix: usize,
    /// Bytes at the end restored in half the inputs (Parquet's footer length and `PAR1`).
    keep_suffix: usize,
}

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

fn read(rel: &str) -> Result<Seed, String> {
    let path = data(rel);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Seed {
        name: rel.to_string(),
        bytes,
    })
}

/// The files under the given folders of `data/` whose names end with `ext`, sorted.
fn files(folders: &[&str], ext: &str) -> Result<Vec<Seed>, String> {
    let paths: Vec<PathBuf> = folders.iter().map(|f| data(f)).collect();
    let (found, bad) = source::expand(&paths);
    if let Some(b) = bad.first() {
        return Err(format!("{b:?}"));
    }
    let root = data("");
    found
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap_or(p).to_string_lossy();
            read(&rel)
        })
        .collect()
}

/// The first record of a multi-record container, rewritten alone with `codec`: the same real
/// packet in a seed small enough to mutate quickly.
fn first_record(seed: &Seed, codec: apache_avro::Codec, tag: &str) -> Result<Seed, String> {
    let err = |e: apache_avro::Error| format!("{}: {e}", seed.name);
    let mut reader = apache_avro::Reader::new(seed.bytes.as_slice()).map_err(err)?;
    let schema = reader.writer_schema().clone();
    let record = reader
        .next()
        .ok_or_else(|| format!("{}: no record", seed.name))?
        .map_err(err)?;
    let mut writer = apache_avro::Writer::with_codec(&schema, Vec::new(), codec).map_err(err)?;
    writer.append_value(record).map_err(err)?;
    Ok(Seed {
        name: format!("{}#first-{tag}.avro", seed.name),
        bytes: writer.into_inner().map_err(err)?,
    })
}

/// Avro containers: every `.avro` of data/ztf, data/fink, data/lsst, the LSST sample alert, the
/// members of the ZTF tarballs (schemas 1.5, 3.0 .. 3.2), and the first record of each large
/// container rewritten with the null, deflate and snappy codecs.
fn avro_seeds() -> Result<Vec<Seed>, String> {
    use apache_avro::{Codec, DeflateSettings};
    let mut seeds = files(&["ztf", "fink", "lsst"], ".avro")?;
    seeds.push(read("schema/lsst-10.0/fakeAlert.avro")?);
    for tarball in files(&["ztf"], ".tar.gz")? {
        seeds.extend(tar_members(&tarball)?.into_iter().take(3));
    }
    let large: Vec<Seed> = seeds
        .iter()
        .filter(|s| s.bytes.len() > 200_000)
        .cloned()
        .collect();
    for s in &large {
        seeds.push(first_record(s, Codec::Null, "null")?);
        seeds.push(first_record(
            s,
            Codec::Deflate(DeflateSettings::default()),
            "deflate",
        )?);
        seeds.push(first_record(s, Codec::Snappy, "snappy")?);
    }
    Ok(seeds)
}

/// The file members of a `.tar.gz` seed.
fn tar_members(seed: &Seed) -> Result<Vec<Seed>, String> {
    use std::io::Read;
    let err = |e: std::io::Error| format!("{}: {e}", seed.name);
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(seed.bytes.as_slice())
        .read_to_end(&mut tar)
        .map_err(err)?;
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut out = Vec::new();
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(err)?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(err)?;
        if !path.rsplit('/').next().unwrap_or(&path).starts_with("._") {
            out.push(Seed {
                name: format!("{}:{path}", seed.name),
                bytes,
            });
        }
    }
    Ok(out)
}

/// The LSST 10.0 schema files of `data/schema/lsst-10.0`, as `--schema` loads them.
fn lsst_schema() -> Result<alert::AvroSchema, String> {
    source::load_schema(&data("schema/lsst-10.0"))
}

/// The official LSST 10.0 sample alert framed as Rubin's Kafka stream sends it (magic byte 0,
/// schema id 673, one datum), as `tests/common::rubin_confluent_datum` builds it.
fn confluent_seeds() -> Result<Vec<Seed>, String> {
    let dir = data("schema/lsst-10.0");
    let mut texts = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
        .collect();
    paths.sort_by_key(|f| f.to_string_lossy().contains(".alert."));
    for p in &paths {
        texts.push(std::fs::read_to_string(p).map_err(|e| e.to_string())?);
    }
    let err = |e: apache_avro::Error| e.to_string();
    let schemata = apache_avro::Schema::parse_list(&texts).map_err(err)?;
    let main = schemata
        .iter()
        .find(|s| s.name().is_some_and(|n| n.name() == "alert"))
        .ok_or("no alert schema")?;
    let sample = read("schema/lsst-10.0/fakeAlert.avro")?;
    let value = apache_avro::Reader::new(sample.bytes.as_slice())
        .map_err(err)?
        .next()
        .ok_or("no record in fakeAlert.avro")?
        .map_err(err)?;
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(main)
        .schemata(schemata.iter().collect())
        .map_err(err)?
        .build()
        .map_err(err)?
        .write_value_to_vec(value)
        .map_err(err)?;
    let mut framed = vec![0u8, 0, 0, 2, 161];
    framed.extend_from_slice(&datum);
    Ok(vec![Seed {
        name: "kafka:lsst-10.0".into(),
        bytes: framed,
    }])
}

/// A Parquet file of `batch` written with `compression`.
fn parquet_bytes(
    batch: &arrow::array::RecordBatch,
    compression: parquet::basic::Compression,
) -> Result<Vec<u8>, String> {
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    let props = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut bytes = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Parquet: the Fink TDE file, its first two alerts rewritten uncompressed, snappy and zstd,
/// and two lightcurve CSVs as Parquet tables (text and double columns).
fn parquet_seeds() -> Result<Vec<Seed>, String> {
    use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::{Compression, ZstdLevel};
    let tde = read("fink/tde_ZTF20abfcszi_202008.parquet")?;
    let mut reader =
        ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(tde.bytes.clone()))
            .map_err(|e| e.to_string())?
            .with_batch_size(2)
            .build()
            .map_err(|e| e.to_string())?;
    let first = reader
        .next()
        .ok_or("no rows in the TDE file")?
        .map_err(|e| e.to_string())?;
    let mut seeds = vec![tde];
    for (tag, c) in [
        ("plain", Compression::UNCOMPRESSED),
        ("snappy", Compression::SNAPPY),
        ("zstd", Compression::ZSTD(ZstdLevel::default())),
    ] {
        seeds.push(Seed {
            name: format!("fink/tde-first2-{tag}.parquet"),
            bytes: parquet_bytes(&first, c)?,
        });
    }
    for rel in [
        "lightcurves/RRLyrae/1061631.csv",
        "lightcurves/from-issues/light-curve-3/1.csv",
    ] {
        let csv = read(rel)?;
        let text = String::from_utf8_lossy(&csv.bytes).into_owned();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().ok_or("empty csv")?.split(',').collect();
        let rows: Vec<Vec<&str>> = lines.take(40).map(|l| l.split(',').collect()).collect();
        let column = |i: usize| rows.iter().map(move |r| r.get(i).copied().unwrap_or(""));
        let texts: Vec<ArrayRef> = (0..header.len())
            .map(|i| std::sync::Arc::new(StringArray::from_iter_values(column(i))) as ArrayRef)
            .collect();
        let numbers: Vec<ArrayRef> = (0..header.len())
            .map(|i| {
                let values: Vec<Option<f64>> = column(i).map(|c| c.parse().ok()).collect();
                if values.iter().all(Option::is_some) {
                    std::sync::Arc::new(Float64Array::from(values)) as ArrayRef
                } else {
                    std::sync::Arc::new(StringArray::from_iter_values(column(i))) as ArrayRef
                }
            })
            .collect();
        for (tag, columns) in [("text", texts), ("doubles", numbers)] {
            let batch = RecordBatch::try_from_iter(header.iter().copied().zip(columns))
                .map_err(|e| e.to_string())?;
            let stem = rel.trim_end_matches(".csv");
            seeds.push(Seed {
                name: format!("{stem}-{tag}.parquet"),
                bytes: parquet_bytes(&batch, Compression::SNAPPY)?,
            });
        }
    }
    Ok(seeds)
}

/// A tar (ustar headers) of `members`.
fn tar_of(members: &[&Seed]) -> Result<Vec<u8>, String> {
    let mut tar = tar::Builder::new(Vec::new());
    for m in members {
        let mut header = tar::Header::new_ustar();
        header.set_size(m.bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let name = m.name.rsplit('/').next().unwrap_or(&m.name);
        tar.append_data(&mut header, name, m.bytes.as_slice())
            .map_err(|e| e.to_string())?;
    }
    tar.into_inner().map_err(|e| e.to_string())
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

/// Archives of real packets built in memory: tars of a ZTF packet, the LSST sample and a CSV
/// lightcurve, their gzip, a gzipped packet, a tar inside a tar, and the two small real ZTF
/// tarballs.
fn archive_seeds() -> Result<Vec<Seed>, String> {
    let ztf = read("ztf/ZTF20abyfpze.avro")?;
    let lsst = read("schema/lsst-10.0/fakeAlert.avro")?;
    let csv = read("lightcurves/from-issues/light-curve-3/1.csv")?;
    let tar = tar_of(&[&ztf, &lsst, &csv])?;
    let inner = Seed {
        name: "inner.tar".into(),
        bytes: tar_of(&[&csv])?,
    };
    let nested = tar_of(&[&inner, &lsst])?;
    Ok(vec![
        Seed {
            name: "packets.tar.gz".into(),
            bytes: gzip(&tar)?,
        },
        Seed {
            name: "packets.tar".into(),
            bytes: tar,
        },
        Seed {
            name: "ZTF20abyfpze.avro.gz".into(),
            bytes: gzip(&ztf.bytes)?,
        },
        Seed {
            name: "nested.tar".into(),
            bytes: nested,
        },
        read("ztf/ZTF18abxhyqv.tar.gz")?,
        read("ztf/ZTF18acruwxq.tar.gz")?,
    ])
}

impl Corpus {
    /// The seed corpus of `target`, from the files of `data/`.
    pub fn load(target: Target) -> Result<Corpus, String> {
        let mut opts = DecodeOptions::default();
        let (seeds, keep_prefix, keep_suffix) = match target {
            Target::Avro => (avro_seeds()?, 4, 0),
            Target::Confluent => {
                opts.confluent_schema = Some(Arc::new(lsst_schema()?));
                (confluent_seeds()?, 5, 0)
            }
            Target::Parquet => (parquet_seeds()?, 4, 8),
            Target::Csv => (files(&["lightcurves"], ".csv")?, 0, 0),
            Target::Archive => (archive_seeds()?, 0, 0),
            Target::Sniff => {
                // Every other target's seeds under a name that says nothing; only the smaller
                // ones, so the sniffer gets many tries.
                let mut all = Vec::new();
                all.extend(avro_seeds()?);
                all.extend(confluent_seeds()?);
                all.extend(parquet_seeds()?);
                all.extend(files(&["lightcurves/from-issues"], ".csv")?);
                all.extend(archive_seeds()?);
                all.retain(|s| s.bytes.len() <= 200_000);
                (all, 0, 0)
            }
        };
        if seeds.is_empty() {
            return Err(format!("no seeds for {}", target.name()));
        }
        Ok(Corpus {
            target,
            seeds,
            opts,
            keep_prefix,
            keep_suffix,
        })
    }

    /// Keeps only seeds of at most `max` bytes (the quick test); fails if none is left.
    pub fn small(mut self, max: usize) -> Result<Corpus, String> {
        self.seeds.retain(|s| s.bytes.len() <= max);
        if self.seeds.is_empty() {
            return Err(format!(
                "no seed of {} under {max} bytes",
                self.target.name()
            ));
        }
        Ok(self)
    }

    /// The name and bytes of input `iteration` of the run seeded with `seed`.
    pub fn input(&self, seed: u64, iteration: u64) -> (String, Vec<u8>) {
        let mut rng =
            Xoshiro256PlusPlus::seed_from_u64(seed ^ iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let primary = &self.seeds[rng.gen_range(0..self.seeds.len())];
        let mut data = primary.bytes.clone();
        // Stacked mutations, 1 to 16, most often few.
        let rounds = 1usize << rng.gen_range(0..5);
        for _ in 0..rng.gen_range(1..=rounds) {
            mutate(&mut rng, &mut data, &self.seeds);
        }
        if self.keep_prefix > 0 && rng.gen_bool(0.9) && data.len() >= self.keep_prefix {
            data[..self.keep_prefix].copy_from_slice(&primary.bytes[..self.keep_prefix]);
        }
        let n = self.keep_suffix;
        if n > 0 && rng.gen_bool(0.5) && data.len() >= n && primary.bytes.len() >= n {
            let (at, from) = (data.len() - n, primary.bytes.len() - n);
            data[at..].copy_from_slice(&primary.bytes[from..]);
        }
        let name = match self.target {
            Target::Sniff => "input".to_string(),
            _ => primary.name.clone(),
        };
        (name, data)
    }
}

const INTERESTING_8: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, 0x40, 0x20, 0x0a];
const INTERESTING_64: [u64; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
];

/// An offset into `data` (which must not be empty): half the time within the first or last 4 kB,
/// where headers, schemas and footers live.
fn offset(rng: &mut Xoshiro256PlusPlus, len: usize) -> usize {
    match rng.gen_range(0..4) {
        0 => rng.gen_range(0..len.min(4096)),
        1 => len - 1 - rng.gen_range(0..len.min(4096)),
        _ => rng.gen_range(0..len),
    }
}

/// A range `start..end` of `data` of at most `max` bytes.
fn range(rng: &mut Xoshiro256PlusPlus, len: usize, max: usize) -> (usize, usize) {
    let start = offset(rng, len);
    let n = rng.gen_range(1..=max.min(len - start).max(1));
    (start, (start + n).min(len))
}

/// Zig-zag varint (Avro's `long`) encoding of `v`.
fn varint(v: i64) -> Vec<u8> {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let byte = (raw & 0x7f) as u8;
        raw >>= 7;
        if raw == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Applies one random mutation to `data`.
pub fn mutate(rng: &mut Xoshiro256PlusPlus, data: &mut Vec<u8>, seeds: &[Seed]) {
    if data.is_empty() {
        data.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>()));
        return;
    }
    let len = data.len();
    match rng.gen_range(0..11) {
        // Bit flip.
        0 => {
            let i = offset(rng, len);
            data[i] ^= 1 << rng.gen_range(0..8);
        }
        // A byte set to an interesting value.
        1 => {
            let i = offset(rng, len);
            data[i] = INTERESTING_8[rng.gen_range(0..INTERESTING_8.len())];
        }
        // A 2-, 4- or 8-byte field set to an interesting value, either byte order.
        2 => {
            let width = [2usize, 4, 8][rng.gen_range(0..3)];
            let i = offset(rng, len);
            let v = INTERESTING_64[rng.gen_range(0..INTERESTING_64.len())];
            let bytes = if rng.gen_bool(0.5) {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            let src = if rng.gen_bool(0.5) {
                &bytes[..width]
            } else {
                &bytes[8 - width..]
            };
            for (k, b) in src.iter().enumerate() {
                if let Some(d) = data.get_mut(i + k) {
                    *d = *b;
                }
            }
        }
        // Arithmetic on a byte.
        3 => {
            let i = offset(rng, len);
            data[i] =
                data[i].wrapping_add(rng.gen_range(1..=35u8).wrapping_mul(if rng.gen_bool(0.5) {
                    1
                } else {
                    255
                }));
        }
        // Truncation.
        4 => data.truncate(rng.gen_range(0..len)),
        // Splice: this input up to a point, another seed from a point.
        5 => {
            let other = &seeds[rng.gen_range(0..seeds.len())].bytes;
            if !other.is_empty() {
                let at = rng.gen_range(0..=len);
                let from = rng.gen_range(0..other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
        }
        // A range duplicated elsewhere.
        6 => {
            let (s, e) = range(rng, len, 4096);
            let chunk = data[s..e].to_vec();
            let at = rng.gen_range(0..=len);
            data.splice(at..at, chunk);
        }
        // A range removed.
        7 => {
            let (s, e) = range(rng, len, 4096);
            data.drain(s..e);
        }
        // A varint-ish length field bumped: the zig-zag varint at an offset re-encoded with a
        // nearby, doubled, negated or extreme value (lengths and counts in Avro and Parquet's
        // Thrift footers are varints).
        8 => {
            let i = offset(rng, len);
            let mut raw: u64 = 0;
            let mut n = 0;
            for (k, &b) in data[i..].iter().enumerate().take(10) {
                raw |= u64::from(b & 0x7f) << (7 * k);
                n = k + 1;
                if b & 0x80 == 0 {
                    break;
                }
            }
            let v = (raw >> 1) as i64 ^ -((raw & 1) as i64);
            let new = match rng.gen_range(0..8) {
                0 => v.wrapping_add(1),
                1 => v.wrapping_sub(1),
                2 => v.wrapping_mul(2),
                3 => v.wrapping_neg(),
                4 => 0,
                5 => -1,
                6 => i64::from(i32::MAX),
                _ => i64::MAX,
            };
            data.splice(i..i + n, varint(new));
        }
        // Random bytes written over a short range.
        9 => {
            let (s, e) = range(rng, len, 32);
            for d in &mut data[s..e] {
                *d = rng.gen();
            }
        }
        // Random bytes inserted.
        _ => {
            let at = rng.gen_range(0..=len);
            let chunk: Vec<u8> = (0..rng.gen_range(1..32)).map(|_| rng.gen::<u8>()).collect();
            data.splice(at..at, chunk);
        }
    }
}

/// How long and how hard to fuzz.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    /// Stop after this many executions (whichever of the two limits comes first).
    pub iterations: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// A call slower than this (and than ten times the slowest seed's own decode) is a finding.
    pub slow: Duration,
    /// A call still running after this long is a hang: the input is written and the process
    /// exits with status 3 (nothing can stop a running decode).
    pub hang: Duration,
    /// Where panicking, slow and hanging inputs are written; `None`: nowhere.
    pub findings_dir: Option<PathBuf>,
    /// Progress lines on stderr every this often; `None`: silent.
    pub progress: Option<Duration>,
}

/// A distinct finding (panics keyed by message, digits blanked, and location).
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: &'static str,
    pub message: String,
    pub location: String,
    /// How many inputs hit it, the first one's iteration, its length and where it was written.
    pub count: u64,
    pub first_iteration: u64,
    pub input_len: usize,
    pub file: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub target: Target,
    pub seed: u64,
    pub seeds: usize,
    pub executions: u64,
    pub seconds: f64,
    pub alerts: u64,
    pub rejects: u64,
    pub slowest_call: Duration,
    pub slow_threshold: Duration,
    pub findings: Vec<Finding>,
}

impl Summary {
    pub fn exec_per_s(&self) -> f64 {
        self.executions as f64 / self.seconds.max(1e-9)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "target": self.target.name(),
            "seed": self.seed,
            "seeds": self.seeds,
            "executions": self.executions,
            "seconds": (self.seconds * 10.0).round() / 10.0,
            "exec_per_s": (self.exec_per_s() * 10.0).round() / 10.0,
            "alerts": self.alerts,
            "rejects": self.rejects,
            "slowest_call_ms": self.slowest_call.as_millis() as u64,
            "slow_threshold_ms": self.slow_threshold.as_millis() as u64,
            "unique_panics": self.findings.iter().filter(|f| f.kind == "panic").count(),
            "slow_calls": self.findings.iter().filter(|f| f.kind == "slow").count(),
            "findings": self.findings.iter().map(|f| serde_json::json!({
                "kind": f.kind,
                "message": f.message,
                "location": f.location,
                "count": f.count,
                "first_iteration": f.first_iteration,
                "input_len": f.input_len,
                "file": f.file.as_ref().map(|p| p.display().to_string()),
            })).collect::<Vec<_>>(),
        })
    }
}

/// The last panic seen while [`CAPTURING`], from whichever thread panicked.
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);
static CAPTURING: AtomicBool = AtomicBool::new(false);

/// Installs (once) a panic hook that records panics while fuzzing instead of printing them, and
/// leaves every other panic (a failing test) to the previous hook.
fn install_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CAPTURING.load(Ordering::SeqCst) {
                return previous(info);
            }
            let message = info
                .payload_as_str()
                .unwrap_or("(non-string payload)")
                .to_string();
            let location = info
                .location()
                .map_or_else(|| "?".to_string(), |l| format!("{}:{}", l.file(), l.line()));
            if let Ok(mut last) = LAST_PANIC.lock() {
                last.get_or_insert((message, location));
            }
        }));
    });
}

/// `message` with every run of digits replaced by `N`, so one bug with varying values is one
/// finding.
fn blank_digits(message: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

fn write_finding(dir: &Path, stem: &str, name: &str, bytes: &[u8], note: &str) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(format!("{stem}.bin"));
    std::fs::write(&path, bytes).ok()?;
    std::fs::write(
        dir.join(format!("{stem}.txt")),
        format!("name: {name}\n{note}\n"),
    )
    .ok()?;
    Some(path)
}

fn hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Decodes input `iteration` under `catch_unwind`; the panic's message and location on a panic.
pub fn run_one(corpus: &Corpus, name: &str, bytes: &[u8]) -> Result<(u64, u64), (String, String)> {
    install_hook();
    if let Ok(mut last) = LAST_PANIC.lock() {
        *last = None;
    }
    CAPTURING.store(true, Ordering::SeqCst);
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let d = alert::decode(name, bytes, &corpus.opts);
        (d.alerts.len() as u64, d.rejects.len() as u64)
    }));
    CAPTURING.store(false, Ordering::SeqCst);
    result.map_err(|_| {
        LAST_PANIC
            .lock()
            .ok()
            .and_then(|mut l| l.take())
            .unwrap_or_else(|| ("(panic not captured)".into(), "?".into()))
    })
}

/// Runs the fuzzer on `corpus` until a limit of `cfg` is reached.
pub fn run(corpus: Arc<Corpus>, cfg: &RunConfig) -> Summary {
    // The slowest seed sets the bar for a slow call, so a large real file is not a finding.
    let mut slowest_seed = Duration::ZERO;
    for s in &corpus.seeds {
        let t = Instant::now();
        let _ = run_one(&corpus, &s.name, &s.bytes);
        slowest_seed = slowest_seed.max(t.elapsed());
    }
    let slow_threshold = cfg.slow.max(slowest_seed * 10);

    // The watchdog: the iteration now running and since when.
    let current = Arc::new(Mutex::new(None::<(u64, Instant)>));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (current, done, corpus) =
            (Arc::clone(&current), Arc::clone(&done), Arc::clone(&corpus));
        let (hang, seed, dir) = (cfg.hang, cfg.seed, cfg.findings_dir.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                let running = current.lock().ok().and_then(|c| *c);
                if let Some((iteration, since)) = running {
                    if since.elapsed() > hang {
                        let (name, bytes) = corpus.input(seed, iteration);
                        let file = dir.as_ref().and_then(|d| {
                            write_finding(
                                d,
                                &format!("hang-{iteration}"),
                                &name,
                                &bytes,
                                &format!("hang over {hang:?}; replay: --seed {seed} --replay {iteration}"),
                            )
                        });
                        eprintln!(
                            "fuzz {}: HANG at iteration {iteration} (seed {seed}), input {} bytes written to {file:?}",
                            corpus.target.name(),
                            bytes.len()
                        );
                        std::process::exit(3);
                    }
                }
            }
        })
    };

    let start = Instant::now();
    let mut summary = Summary {
        target: corpus.target,
        seed: cfg.seed,
        seeds: corpus.seeds.len(),
        executions: 0,
        seconds: 0.0,
        alerts: 0,
        rejects: 0,
        slowest_call: Duration::ZERO,
        slow_threshold,
        findings: Vec::new(),
    };
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_report = Instant::now();
    let mut iteration = 0u64;
    loop {
        if cfg.iterations.is_some_and(|n| iteration >= n)
            || cfg.duration.is_some_and(|d| start.elapsed() >= d)
        {
            break;
        }
        let (name, bytes) = corpus.input(cfg.seed, iteration);
        if let Ok(mut c) = current.lock() {
            *c = Some((iteration, Instant::now()));
        }
        let t = Instant::now();
        let result = run_one(&corpus, &name, &bytes);
        let took = t.elapsed();
        if let Ok(mut c) = current.lock() {
            *c = None;
        }
        summary.slowest_call = summary.slowest_call.max(took);
        let finding = match result {
            Ok((a, r)) => {
                summary.alerts += a;
                summary.rejects += r;
                (took > slow_threshold).then(|| {
                    (
                        "slow",
                        format!("decode took {} ms", took.as_millis()),
                        String::new(),
                    )
                })
            }
            Err((message, location)) => Some(("panic", message, location)),
        };
        if let Some((kind, message, location)) = finding {
            let key = format!("{kind} {} @ {location}", blank_digits(&message));
            let known = by_key.get(&key).copied();
            let index = known.unwrap_or_else(|| {
                let file = cfg.findings_dir.as_ref().and_then(|d| {
                    write_finding(
                        d,
                        &format!("{kind}-{:016x}", hash(&key)),
                        &name,
                        &bytes,
                        &format!(
                            "{kind}: {message}\nat: {location}\nreplay: --seed {} --replay {iteration}",
                            cfg.seed
                        ),
                    )
                });
                eprintln!(
                    "fuzz {}: {kind} at iteration {iteration}: {message} at {location} ({} bytes, {file:?})",
                    corpus.target.name(),
                    bytes.len()
                );
                summary.findings.push(Finding {
                    kind,
                    message: message.clone(),
                    location: location.clone(),
                    count: 0,
                    first_iteration: iteration,
                    input_len: bytes.len(),
                    file,
                });
                by_key.insert(key, summary.findings.len() - 1);
                summary.findings.len() - 1
            });
            summary.findings[index].count += 1;
        }
        iteration += 1;
        if let Some(every) = cfg.progress {
            if last_report.elapsed() >= every {
                last_report = Instant::now();
                let s = start.elapsed().as_secs_f64();
                eprintln!(
                    "fuzz {}: {iteration} execs in {s:.0} s ({:.1}/s), {} unique panics, {} slow, slowest {} ms",
                    corpus.target.name(),
                    iteration as f64 / s.max(1e-9),
                    summary.findings.iter().filter(|f| f.kind == "panic").count(),
                    summary.findings.iter().filter(|f| f.kind == "slow").count(),
                    summary.slowest_call.as_millis()
                );
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    summary.executions = iteration;
    summary.seconds = start.elapsed().as_secs_f64();
    summary
}
