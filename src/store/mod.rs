//! Durable state in RocksDB: the only module that names `rocksdb`.
//!
//! Column families (names in [`cf`]):
//! - `objects`: object id -> [`ObjectRecord`] (merged lightcurve, annotations, metadata);
//! - `alerts`: (survey, alert id) -> object id, one entry per distinct alert packet ingested;
//! - `vectors`: (object id, version) -> [`VectorVersion`], every embedding an object has had;
//! - `neighbours`: object id -> its k nearest neighbours ([`Neighbour`]s), the kNN graph;
//! - `labels`: object id -> imported [`Label`]s;
//! - `record_labels`: object id -> the [`Label`]s its record's annotations carry (broker and
//!   cross-match classes), written with the record, so that a vote or a label spreading reads a
//!   few bytes per neighbour instead of its whole record (absent where there are none);
//! - `votes`: (user, object id) -> [`Vote`];
//! - `offsets`: (topic, partition) -> the next Kafka offset to read ([`PartitionOffset`]), written
//!   in the same batch as the alerts the messages before it carried;
//! - `quarantine`: (topic, partition, offset) -> a message that could not be decoded
//!   ([`Quarantined`]: its bytes and why);
//! - `meta`: per-survey [`Counts`], the [`EmbeddingSpec`], the next point id, the index backend
//!   and its parameters ([`IndexSettings`]), the index dump that is on disk, and the store's
//!   format version.
//!
//! Every change of an ingest batch is one [`WriteBatch`] written with the WAL (and fsync unless
//! configured otherwise), so a batch is either wholly in the store or not at all. Values are
//! bincode-encoded serde structs. Imports `model` and `embed`.

pub mod keys;
mod labelled;
mod stream;

pub use stream::{PartitionOffset, Quarantined};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::embed::EmbeddingSpec;
use crate::model::{Label, Neighbour, ObjectRecord, Survey, VectorVersion, Vote};

/// Column-family names.
pub mod cf {
    pub const OBJECTS: &str = "objects";
    pub const ALERTS: &str = "alerts";
    pub const META: &str = "meta";
    pub const VECTORS: &str = "vectors";
    pub const NEIGHBOURS: &str = "neighbours";
    pub const LABELS: &str = "labels";
    pub const VOTES: &str = "votes";
    pub const OFFSETS: &str = "offsets";
    pub const QUARANTINE: &str = "quarantine";
    pub const RECORD_LABELS: &str = "record_labels";
    /// Objects re-embedded by a committed batch whose neighbour lists (and the lists they
    /// enter or leave) are not relinked yet: the deferred relink's durable marks.
    pub const UNLINKED: &str = "unlinked";
    pub const ALL: [&str; 11] = [
        OBJECTS,
        ALERTS,
        META,
        VECTORS,
        NEIGHBOURS,
        LABELS,
        VOTES,
        OFFSETS,
        QUARANTINE,
        RECORD_LABELS,
        UNLINKED,
    ];
}

/// Keys per part of a read split over threads ([`Store::multi_get`]).
const PARALLEL_READ_KEYS: usize = 1024;

/// Bytes of the block cache all column families share, unless [`StoreConfig`] says otherwise.
pub const BLOCK_CACHE_BYTES: usize = 64 << 20;

/// Write-ahead log kept at most, unless [`StoreConfig`] says otherwise. A log file is deleted
/// once every column family has flushed what it holds of it, and a column family written a
/// little at a time (the counts in `meta`, the alert ids) fills its 64 MB memtable slowly:
/// RocksDB's own limit (4x the memtables of every column family, 5.6 GB here) let a 1M seed
/// leave 1.3 GB of log, which the next open replayed: 6.6-8.2 s to the first answer, against
/// 2.3-2.4 s after a seed under this limit (21 MB of log; BENCHMARKS.md, "W2 met from recall
/// 0.98"). Past this much log, the column families holding the oldest file back are flushed.
pub const WAL_BYTES: u64 = 256 << 20;

/// The labels of several objects, in the order asked (empty where none).
pub type LabelLists = Vec<Vec<Label>>;

/// What RocksDB holds in memory (its C++ allocations), from its own properties.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StoreMemory {
    /// The shared block cache's contents (at most [`StoreConfig::block_cache_bytes`]).
    pub block_cache_bytes: u64,
    /// Memtables of every column family (writes not flushed yet).
    pub memtable_bytes: u64,
    /// Index and filter blocks of the open table files.
    pub table_readers_bytes: u64,
}

/// Version of the on-disk layout; bumped when a value's encoding changes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StoreError {
    #[error("cannot open the database at {path}: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error("the database at {path} has format version {found}; this build reads {expected}")]
    FormatVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("RocksDB: {detail}")]
    Rocks { detail: String },
    /// A write the file system refused (disk full, a file size limit, a directory turned
    /// read-only): nothing of that write was stored.
    #[error(
        "cannot write to the database at {path}: {detail}; the batch being written was not \
         stored (everything stored before it is intact: free space and run again)"
    )]
    WriteFailed { path: PathBuf, detail: String },
    #[error("cannot encode a value for `{cf}`: {detail}")]
    Encode { cf: &'static str, detail: String },
    #[error("corrupt value under key {key:?} in `{cf}`: {detail}")]
    Corrupt {
        cf: &'static str,
        key: String,
        detail: String,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError::Rocks {
            detail: e.into_string(),
        }
    }
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// fsync the WAL on every batch: survives power loss, not only a killed process.
    pub sync_writes: bool,
    /// Bytes of the block cache every column family shares (default [`BLOCK_CACHE_BYTES`]):
    /// that much more resident memory once it has filled, for fewer blocks read again and
    /// decompressed.
    pub block_cache_bytes: usize,
    /// Bytes of write-ahead log kept before the column families that hold the oldest log back
    /// are flushed (default [`WAL_BYTES`]): what an open replays at most.
    pub wal_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            sync_writes: true,
            block_cache_bytes: BLOCK_CACHE_BYTES,
            wal_bytes: WAL_BYTES,
        }
    }
}

/// Running totals for one survey.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub objects: u64,
    pub alerts: u64,
    pub detections: u64,
}

/// Everything one ingest batch changes, written atomically.
#[derive(Debug, Default)]
pub struct Batch {
    pub objects: Vec<ObjectRecord>,
    /// Alerts not seen before.
    pub alerts: Vec<NewAlert>,
    /// New totals for the surveys the batch touched.
    pub counts: BTreeMap<Survey, Counts>,
    /// New embedding versions.
    pub vectors: Vec<NewVersion>,
    /// Replaced neighbour lists.
    pub neighbours: Vec<(String, Vec<Neighbour>)>,
    pub spec: Option<EmbeddingSpec>,
    pub next_point: Option<u64>,
    /// Kafka partitions' next offsets, after the messages whose alerts this batch holds.
    pub offsets: Vec<PartitionOffset>,
    /// Messages of those partitions that could not be decoded.
    pub quarantined: Vec<Quarantined>,
    /// The labels in the annotations of `objects` (and of objects whose records are not
    /// rewritten, when the column is first filled): the `record_labels` column.
    pub record_labels: Vec<(String, Vec<Label>)>,
    /// Marks the `record_labels` column complete (the last batch of its first filling).
    pub record_labels_complete: bool,
    /// Sets (`Some(true)`) or clears the mark of a bulk seed in progress.
    pub seeding: Option<bool>,
    /// Objects whose lists this batch leaves to a later relink: marked (written after
    /// `linked`, so an object in both stays marked).
    pub unlinked: Vec<String>,
    /// Objects whose deferred relink this batch holds: their marks cleared.
    pub linked: Vec<String>,
}

/// An alert id seen for the first time, and the object it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub survey: Survey,
    pub alert_id: i64,
    pub object_id: String,
}

/// An object's embedding version number `seq` (0, 1, ...) and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion {
    pub object_id: String,
    pub seq: u32,
    pub version: VectorVersion,
}

/// Which ANN library serves a store's index: chosen when the store is created, recorded in
/// `meta` ([`IndexSettings`]) and used by every later open. A store written before the choice
/// existed has no record and is `hnsw_rs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IndexBackend {
    /// `hnsw_rs` (pure Rust; no deletion: superseded points are tombstones).
    HnswRs,
    /// USearch (C++; real deletion, f16/i8 storage, memory-mapped dumps): the default, the
    /// winner of the side-by-side at 1M objects (BENCHMARKS.md).
    #[default]
    Usearch,
}

impl IndexBackend {
    pub const ALL: [IndexBackend; 2] = [IndexBackend::HnswRs, IndexBackend::Usearch];

    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            IndexBackend::HnswRs => "hnsw_rs",
            IndexBackend::Usearch => "usearch",
        }
    }

    pub fn from_name(name: &str) -> Option<IndexBackend> {
        IndexBackend::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl std::fmt::Display for IndexBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The index a store was created with: the backend and its parameters, as the JSON of the
/// backend's parameter struct (which belongs to `index`, a layer above the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexSettings {
    pub backend: IndexBackend,
    pub params_json: String,
}

/// Which index dump is on disk and what it covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexDump {
    pub basename: String,
    /// Spec version of the vectors in the dump.
    pub spec_version: u64,
    /// Every point below this id that was live when dumped is in the dump.
    pub watermark: u64,
    /// The backend that wrote the dump (a dump recorded before backends existed decodes as
    /// `hnsw_rs`: see [`Store::index_dump`]).
    pub backend: IndexBackend,
}

/// [`IndexDump`] as written before it named its backend (all such dumps are hnsw_rs's).
#[derive(Deserialize)]
struct IndexDumpV1 {
    basename: String,
    spec_version: u64,
    watermark: u64,
}

/// One stored key and value, with its column family.
pub type RawEntry = (&'static str, Vec<u8>, Vec<u8>);

pub struct Store {
    db: DB,
    path: PathBuf,
    config: StoreConfig,
    /// The block cache every column family shares.
    cache: rocksdb::Cache,
    /// The objects that may have a label (every key of the two label columns, as hashes): a
    /// neighbour known to have none is answered without a read.
    labelled: labelled::Labelled,
    /// Bytes written since the log was last measured ([`Store::write_batch`]).
    written: AtomicU64,
}

/// One object's stored neighbour list, undecoded, pinned in RocksDB's block cache while it
/// lives ([`Store::stored_lists`]).
pub struct StoredList<'a> {
    object_id: String,
    bytes: rocksdb::DBPinnableSlice<'a>,
}

/// A stored neighbour whose id borrows from its [`StoredList`]: the same bytes as a
/// [`Neighbour`], decoded without an allocation per id.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct NeighbourRef<'a> {
    pub object_id: &'a str,
    pub distance: f32,
}

impl StoredList<'_> {
    /// The list's neighbours, nearest first, as [`Store::multi_neighbours`] reads them.
    pub fn neighbours(&self) -> Result<Vec<NeighbourRef<'_>>> {
        decode(cf::NEIGHBOURS, self.object_id.as_bytes(), &self.bytes)
    }
}

/// Encodes a value for `cf`. bincode fails only on values serde cannot represent (a map with
/// non-string keys is fine, a sequence of unknown length is not); such a failure is an error
/// of the write, never an empty value written in its place.
fn encode<T: Serialize>(cf: &'static str, v: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).map_err(|e| StoreError::Encode {
        cf,
        detail: e.to_string(),
    })
}

/// Decodes a value of `cf`; `T` may borrow from `bytes` (`NeighbourRef`'s ids).
fn decode<'de, T: Deserialize<'de>>(cf: &'static str, key: &[u8], bytes: &'de [u8]) -> Result<T> {
    bincode::serde::borrow_decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| StoreError::Corrupt {
            cf,
            key: String::from_utf8_lossy(key).into_owned(),
            detail: e.to_string(),
        })
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Store> {
        let open_err = |detail: String| StoreError::Open {
            path: path.to_path_buf(),
            detail,
        };
        if path.exists() && !path.is_dir() {
            return Err(open_err("not a directory".into()));
        }
        // One block cache for every column family (RocksDB's default gives each its own 32 MB
        // cache: 320 MB once a pass over every object has filled them).
        let cache = rocksdb::Cache::new_lru_cache(config.block_cache_bytes);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        // Point lookups are most of the reads: an alert id checked for a duplicate, a label
        // that is not there (most objects have none), a neighbour list in one of several
        // levels. A Bloom filter (10 bits a key, ~1% false positives) answers "not in this
        // file" without reading its index or a data block; a hash index in each data block
        // finds a key without the binary search. Both apply to table files written from now
        // on (a store's older files gain them as compaction rewrites them).
        table.set_bloom_filter(10.0, false);
        table.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
        table.set_data_block_hash_ratio(0.75);
        let mut opts = Options::default();
        opts.set_max_total_wal_size(config.wal_bytes);
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_block_based_table_factory(&table);
        let cfs = cf::ALL.iter().map(|name| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
            let detail = e.into_string();
            if detail.contains("Permission denied") || detail.contains("Read-only file system") {
                open_err(format!(
                    "the directory is not writable by this user, and RocksDB writes its lock \
                     file and log even to read ({detail})"
                ))
            } else {
                open_err(detail)
            }
        })?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            config,
            cache,
            labelled: labelled::Labelled::default(),
            written: AtomicU64::new(0),
        };
        store.check_format()?;
        store.mark_labelled()?;
        Ok(store)
    }

    /// What RocksDB holds in memory now.
    pub fn memory(&self) -> StoreMemory {
        let mut m = StoreMemory {
            block_cache_bytes: self.cache.get_usage() as u64,
            ..StoreMemory::default()
        };
        for name in cf::ALL {
            let Some(handle) = self.db.cf_handle(name) else {
                continue;
            };
            let int = |p: &str| {
                self.db
                    .property_int_value_cf(&handle, p)
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            };
            m.memtable_bytes += int("rocksdb.cur-size-all-mem-tables");
            m.table_readers_bytes += int("rocksdb.estimate-table-readers-mem");
        }
        m
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a consistent copy of the whole store into `out`, which must not exist yet: a
    /// RocksDB checkpoint (hard links to the immutable table files where `out` is on the same
    /// file system, copies elsewhere), taken while writes go on.
    pub fn checkpoint(&self, out: &Path) -> Result<()> {
        if out.exists() {
            return Err(StoreError::Open {
                path: out.to_path_buf(),
                detail: "the backup directory already exists".into(),
            });
        }
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        checkpoint.create_checkpoint(out)?;
        Ok(())
    }

    fn handle(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| StoreError::Rocks {
            detail: format!("column family `{name}` is missing"),
        })
    }

    fn check_format(&self) -> Result<()> {
        let meta = self.handle(cf::META)?;
        match self.db.get_cf(meta, keys::FORMAT_VERSION_KEY)? {
            None => {
                self.db
                    .put_cf(meta, keys::FORMAT_VERSION_KEY, FORMAT_VERSION.to_be_bytes())?;
                Ok(())
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_slice())
                    .map(u32::from_be_bytes)
                    .unwrap_or(0);
                if found == FORMAT_VERSION {
                    Ok(())
                } else {
                    Err(StoreError::FormatVersion {
                        path: self.path.clone(),
                        found,
                        expected: FORMAT_VERSION,
                    })
                }
            }
        }
    }

    pub fn get_object(&self, object_id: &str) -> Result<Option<ObjectRecord>> {
        let handle = self.handle(cf::OBJECTS)?;
        let key = keys::object_key(object_id);
        self.db
            .get_pinned_cf(handle, key)?
            .map(|v| decode(cf::OBJECTS, key, &v))
            .transpose()
    }

    /// Reads the values of several object-keyed entries of `cf` in one call.
    fn multi_get<T: DeserializeOwned + Send>(
        &self,
        cf: &'static str,
        ids: &[&str],
    ) -> Result<Vec<Option<T>>> {
        // A large read (a batch's touched neighbour lists: ~12,000 at 1M objects, each a
        // block-cache miss to decompress and decode) is split over the thread pool.
        if ids.len() >= 2 * PARALLEL_READ_KEYS {
            let per_thread = ids.len().div_ceil(rayon::current_num_threads().max(1));
            let chunk = per_thread.max(PARALLEL_READ_KEYS);
            let read: Vec<Result<Vec<Option<T>>>> = ids
                .par_chunks(chunk)
                .map(|part| self.multi_get_serial(cf, part))
                .collect();
            let mut out = Vec::with_capacity(ids.len());
            for part in read {
                out.extend(part?);
            }
            return Ok(out);
        }
        self.multi_get_serial(cf, ids)
    }

    fn multi_get_serial<T: DeserializeOwned>(
        &self,
        cf: &'static str,
        ids: &[&str],
    ) -> Result<Vec<Option<T>>> {
        ids.iter()
            .zip(self.pinned(cf, ids)?)
            .map(|(id, v)| match v {
                Some(bytes) => decode(cf, keys::object_key(id), &bytes).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    /// The values of several objects' keys in `cf` as RocksDB holds them (pinned, not
    /// copied), `None` where a key is absent.
    fn pinned(
        &self,
        cf: &'static str,
        ids: &[&str],
    ) -> Result<Vec<Option<rocksdb::DBPinnableSlice<'_>>>> {
        let handle = self.handle(cf)?;
        self.db
            .batched_multi_get_cf(handle, ids.iter().map(|id| keys::object_key(id)), false)
            .into_iter()
            .map(|v| Ok(v?))
            .collect()
    }

    /// Reads several objects in one call; `None` where an object is unknown.
    pub fn get_objects(&self, ids: &[&str]) -> Result<Vec<Option<ObjectRecord>>> {
        self.multi_get(cf::OBJECTS, ids)
    }

    /// Which of the given alerts are already stored.
    pub fn known_alerts(&self, alerts: &[(Survey, i64)]) -> Result<Vec<bool>> {
        let handle = self.handle(cf::ALERTS)?;
        let keys: Vec<[u8; 9]> = alerts
            .iter()
            .map(|(s, id)| keys::alert_key(*s, *id))
            .collect();
        self.db
            .batched_multi_get_cf(handle, keys.iter(), false)
            .into_iter()
            .map(|v| Ok(v?.is_some()))
            .collect()
    }

    /// Per-survey totals.
    pub fn counts(&self) -> Result<BTreeMap<Survey, Counts>> {
        let meta = self.handle(cf::META)?;
        let mut out = BTreeMap::new();
        for survey in Survey::ALL {
            let key = keys::counts_key(survey);
            if let Some(v) = self.db.get_pinned_cf(meta, &key)? {
                out.insert(survey, decode(cf::META, &key, &v)?);
            }
        }
        Ok(out)
    }

    /// Writes a batch atomically.
    pub fn write(&self, batch: &Batch) -> Result<()> {
        let objects = self.handle(cf::OBJECTS)?;
        let alerts = self.handle(cf::ALERTS)?;
        let meta = self.handle(cf::META)?;
        let mut wb = WriteBatch::default();
        for o in &batch.objects {
            wb.put_cf(
                objects,
                keys::object_key(&o.object_id),
                encode(cf::OBJECTS, o)?,
            );
        }
        for a in &batch.alerts {
            wb.put_cf(
                alerts,
                keys::alert_key(a.survey, a.alert_id),
                a.object_id.as_bytes(),
            );
        }
        for (survey, counts) in &batch.counts {
            wb.put_cf(meta, keys::counts_key(*survey), encode(cf::META, counts)?);
        }
        let vectors = self.handle(cf::VECTORS)?;
        for v in &batch.vectors {
            wb.put_cf(
                vectors,
                keys::vector_key(&v.object_id, v.seq),
                encode(cf::VECTORS, &v.version)?,
            );
        }
        let neighbours = self.handle(cf::NEIGHBOURS)?;
        for (id, list) in &batch.neighbours {
            wb.put_cf(
                neighbours,
                keys::object_key(id),
                encode(cf::NEIGHBOURS, list)?,
            );
        }
        if let Some(spec) = &batch.spec {
            wb.put_cf(meta, keys::SPEC_KEY, encode(cf::META, spec)?);
        }
        if let Some(next) = batch.next_point {
            wb.put_cf(meta, keys::NEXT_POINT_KEY, next.to_be_bytes());
        }
        let record_labels = self.handle(cf::RECORD_LABELS)?;
        self.labelled.insert(
            batch
                .record_labels
                .iter()
                .filter(|(_, labels)| !labels.is_empty())
                .map(|(id, _)| keys::object_key(id)),
        );
        for (id, labels) in &batch.record_labels {
            let key = keys::object_key(id);
            if labels.is_empty() {
                wb.delete_cf(record_labels, key);
            } else {
                wb.put_cf(record_labels, key, encode(cf::RECORD_LABELS, labels)?);
            }
        }
        if batch.record_labels_complete {
            wb.put_cf(meta, keys::RECORD_LABELS_KEY, [1u8]);
        }
        match batch.seeding {
            Some(true) => wb.put_cf(meta, keys::SEEDING_KEY, [1u8]),
            Some(false) => wb.delete_cf(meta, keys::SEEDING_KEY),
            None => {}
        }
        let unlinked = self.handle(cf::UNLINKED)?;
        for id in &batch.linked {
            wb.delete_cf(unlinked, keys::object_key(id));
        }
        for id in &batch.unlinked {
            wb.put_cf(unlinked, keys::object_key(id), []);
        }
        self.write_stream_marks(&mut wb, batch)?;
        self.write_batch(wb)
    }

    /// The objects whose deferred relink has not been written yet (see [`Batch::unlinked`]),
    /// in id order.
    pub fn unlinked(&self) -> Result<Vec<String>> {
        let handle = self.handle(cf::UNLINKED)?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(handle, IteratorMode::Start) {
            let (k, _) = item?;
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }

    fn meta_value<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        let meta = self.handle(cf::META)?;
        self.db
            .get_pinned_cf(meta, key)?
            .map(|v| decode(cf::META, key, &v))
            .transpose()
    }

    /// Writes one value of `meta` ([`Store::meta_value`] reads it back).
    fn put_meta_value<T: Serialize>(&self, key: &[u8], value: &T) -> Result<()> {
        let mut wb = WriteBatch::default();
        wb.put_cf(self.handle(cf::META)?, key, encode(cf::META, value)?);
        self.write_batch(wb)
    }

    pub fn spec(&self) -> Result<Option<EmbeddingSpec>> {
        self.meta_value(keys::SPEC_KEY)
    }

    /// The next unused point id.
    pub fn next_point(&self) -> Result<u64> {
        let meta = self.handle(cf::META)?;
        Ok(self
            .db
            .get_pinned_cf(meta, keys::NEXT_POINT_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// The dump record; one written before dumps named their backend reads as hnsw_rs's (the
    /// older encoding is the same fields without the last, so it fails to decode as the new
    /// one for want of bytes, never by misreading them).
    pub fn index_dump(&self) -> Result<Option<IndexDump>> {
        match self.meta_value(keys::INDEX_DUMP_KEY) {
            Ok(dump) => Ok(dump),
            Err(current) => match self.meta_value::<IndexDumpV1>(keys::INDEX_DUMP_KEY) {
                Ok(old) => Ok(old.map(|d| IndexDump {
                    basename: d.basename,
                    spec_version: d.spec_version,
                    watermark: d.watermark,
                    backend: IndexBackend::HnswRs,
                })),
                Err(_) => Err(current),
            },
        }
    }

    /// The backend and parameters the store's index was created with (`None`: a store from
    /// before they were recorded, or one not opened by the engine yet).
    pub fn index_settings(&self) -> Result<Option<IndexSettings>> {
        self.meta_value(keys::INDEX_SETTINGS_KEY)
    }

    pub fn set_index_settings(&self, settings: &IndexSettings) -> Result<()> {
        self.put_meta_value(keys::INDEX_SETTINGS_KEY, settings)
    }

    pub fn set_index_dump(&self, dump: &IndexDump) -> Result<()> {
        self.put_meta_value(keys::INDEX_DUMP_KEY, dump)
    }

    /// Every embedding version of one object, oldest first.
    pub fn vector_versions(&self, object_id: &str) -> Result<Vec<(u32, VectorVersion)>> {
        let mut out = Vec::new();
        self.scan(cf::VECTORS, &keys::vector_prefix(object_id), |k, v| {
            if let Some((_, seq)) = keys::split_vector_key(k) {
                out.push((seq, v));
            }
            true
        })?;
        Ok(out)
    }

    /// Calls `f(object id, version number, version)` on every embedding version, grouped by
    /// object and oldest first within an object.
    pub fn for_each_vector(&self, mut f: impl FnMut(&str, u32, VectorVersion)) -> Result<()> {
        let mut bad = None;
        self.scan(cf::VECTORS, &[], |k, v| match keys::split_vector_key(k) {
            Some((id, seq)) => {
                f(id, seq, v);
                true
            }
            None => {
                bad = Some(String::from_utf8_lossy(k).into_owned());
                false
            }
        })?;
        match bad {
            Some(key) => Err(StoreError::Corrupt {
                cf: cf::VECTORS,
                key,
                detail: "malformed key".into(),
            }),
            None => Ok(()),
        }
    }

    pub fn neighbours(&self, object_id: &str) -> Result<Option<Vec<Neighbour>>> {
        let handle = self.handle(cf::NEIGHBOURS)?;
        let key = keys::object_key(object_id);
        self.db
            .get_pinned_cf(handle, key)?
            .map(|v| decode(cf::NEIGHBOURS, key, &v))
            .transpose()
    }

    /// Stored neighbour lists of several objects.
    pub fn multi_neighbours(&self, ids: &[&str]) -> Result<Vec<Option<Vec<Neighbour>>>> {
        self.multi_get(cf::NEIGHBOURS, ids)
    }

    /// Stored neighbour lists of several objects as RocksDB holds them (pinned, not copied),
    /// `None` where an object has none: a walk over the lists that keeps few of the ids it
    /// reads decodes each with [`StoredList::neighbours`], borrowing every id instead of
    /// allocating it (a classification's label spreading reads ~7,700 neighbours of 256
    /// lists to keep 256 ids).
    pub fn stored_lists(&self, ids: &[&str]) -> Result<Vec<Option<StoredList<'_>>>> {
        Ok(self
            .pinned(cf::NEIGHBOURS, ids)?
            .into_iter()
            .zip(ids)
            .map(|(v, id)| {
                v.map(|bytes| StoredList {
                    object_id: id.to_string(),
                    bytes,
                })
            })
            .collect())
    }

    /// Calls `f` on every stored neighbour list, in object-id order, until it returns false.
    pub fn for_each_neighbours(
        &self,
        mut f: impl FnMut(&str, Vec<Neighbour>) -> bool,
    ) -> Result<()> {
        self.scan(cf::NEIGHBOURS, &[], |k, v| {
            f(&String::from_utf8_lossy(k), v)
        })
    }

    /// Imported labels of several objects (empty where none).
    pub fn labels_of(&self, ids: &[&str]) -> Result<Vec<Vec<Label>>> {
        self.label_lists(cf::LABELS, ids)
    }

    /// The labels in several objects' annotations, as their records were last written (empty
    /// where none).
    pub fn record_labels_of(&self, ids: &[&str]) -> Result<Vec<Vec<Label>>> {
        self.label_lists(cf::RECORD_LABELS, ids)
    }

    /// [`Store::labels_of`] and [`Store::record_labels_of`] together, the ids looked up in the
    /// label set once.
    pub fn both_labels_of(&self, ids: &[&str]) -> Result<(LabelLists, LabelLists)> {
        let maybe = self.maybe_labelled(ids);
        Ok((
            self.read_label_lists(cf::LABELS, ids, &maybe)?,
            self.read_label_lists(cf::RECORD_LABELS, ids, &maybe)?,
        ))
    }

    fn label_lists(&self, cf: &'static str, ids: &[&str]) -> Result<LabelLists> {
        self.read_label_lists(cf, ids, &self.maybe_labelled(ids))
    }

    /// The indices of the `ids` that may have a label ([`Store::labelled`]).
    fn maybe_labelled(&self, ids: &[&str]) -> Vec<usize> {
        let keys: Vec<&[u8]> = ids.iter().map(|id| keys::object_key(id)).collect();
        self.labelled.maybe(&keys)
    }

    /// The label lists in `cf` of `ids`, of which only those at `maybe` are read.
    fn read_label_lists(
        &self,
        cf: &'static str,
        ids: &[&str],
        maybe: &[usize],
    ) -> Result<LabelLists> {
        let mut out = vec![Vec::new(); ids.len()];
        if maybe.is_empty() {
            return Ok(out);
        }
        let read: Vec<&str> = maybe.iter().map(|&i| ids[i]).collect();
        for (&i, got) in maybe.iter().zip(self.multi_get(cf, &read)?) {
            out[i] = got.unwrap_or_default();
        }
        Ok(out)
    }

    /// Reads the keys of both label columns into [`Store::labelled`] (at open: one pass over
    /// the labelled objects only).
    fn mark_labelled(&self) -> Result<()> {
        for name in [cf::LABELS, cf::RECORD_LABELS] {
            let mut it = self.db.raw_iterator_cf(self.handle(name)?);
            it.seek_to_first();
            let mut keys: Vec<Box<[u8]>> = Vec::new();
            while let Some(k) = it.key() {
                keys.push(k.into());
                if keys.len() >= 65_536 {
                    self.labelled.insert(keys.iter().map(|k| &**k));
                    keys.clear();
                }
                it.next();
            }
            it.status()?;
            self.labelled.insert(keys.iter().map(|k| &**k));
        }
        tracing::debug!(labelled = self.labelled.len(), "label keys read");
        Ok(())
    }

    /// Whether any object has a label, imported or from its annotations (an entry in either
    /// label column): one seek in each, so a classification can tell at once that a store
    /// has nothing to spread.
    pub fn any_labels(&self) -> Result<bool> {
        for name in [cf::LABELS, cf::RECORD_LABELS] {
            let handle = self.handle(name)?;
            if let Some(item) = self.db.iterator_cf(handle, IteratorMode::Start).next() {
                item?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether the `record_labels` column covers every object (stores written before it
    /// existed fill it once, at open).
    pub fn record_labels_complete(&self) -> Result<bool> {
        let meta = self.handle(cf::META)?;
        Ok(self
            .db
            .get_pinned_cf(meta, keys::RECORD_LABELS_KEY)?
            .is_some())
    }

    /// Whether a bulk seed began and has not finished (its objects are stored, not all of them
    /// embedded and linked).
    pub fn seeding(&self) -> Result<bool> {
        let meta = self.handle(cf::META)?;
        Ok(self.db.get_pinned_cf(meta, keys::SEEDING_KEY)?.is_some())
    }

    /// Calls `f` on every object's record labels.
    pub fn for_each_record_labels(&self, f: impl FnMut(&str, Vec<Label>)) -> Result<()> {
        self.each_label_list(cf::RECORD_LABELS, f)
    }

    fn each_label_list(&self, cf: &'static str, mut f: impl FnMut(&str, Vec<Label>)) -> Result<()> {
        self.scan(cf, &[], |k, v| {
            f(&String::from_utf8_lossy(k), v);
            true
        })
    }

    /// Replaces the imported labels of objects, atomically.
    pub fn put_labels(&self, labels: &[(String, Vec<Label>)]) -> Result<()> {
        let handle = self.handle(cf::LABELS)?;
        self.labelled
            .insert(labels.iter().map(|(id, _)| keys::object_key(id)));
        let mut wb = WriteBatch::default();
        for (id, l) in labels {
            wb.put_cf(handle, keys::object_key(id), encode(cf::LABELS, l)?);
        }
        self.write_batch(wb)
    }

    /// Calls `f` on every object's imported labels.
    pub fn for_each_labels(&self, f: impl FnMut(&str, Vec<Label>)) -> Result<()> {
        self.each_label_list(cf::LABELS, f)
    }

    pub fn put_vote(&self, user: &str, object_id: &str, vote: Vote) -> Result<()> {
        let handle = self.handle(cf::VOTES)?;
        let mut wb = WriteBatch::default();
        wb.put_cf(
            handle,
            keys::vote_key(user, object_id),
            encode(cf::VOTES, &vote)?,
        );
        self.write_batch(wb)
    }

    /// A user's votes, by object id.
    pub fn votes(&self, user: &str) -> Result<BTreeMap<String, Vote>> {
        let prefix = keys::vote_prefix(user);
        let mut out = BTreeMap::new();
        self.scan(cf::VOTES, &prefix, |k, v| {
            out.insert(String::from_utf8_lossy(&k[prefix.len()..]).into_owned(), v);
            true
        })?;
        Ok(out)
    }

    /// Writes `wb` atomically (fsync'd unless configured otherwise). A write the file system
    /// refuses is a [`StoreError::WriteFailed`]; RocksDB then refuses further writes until the
    /// store is reopened, and what it had stored before stays readable.
    ///
    /// Past every [`StoreConfig::wal_bytes`] written, the log files are measured: RocksDB's
    /// own limit flushes in the background, and a writer faster than those flushes (or a
    /// process whose flushes wait behind other stores') grows the log past it. Past twice the
    /// limit the writer flushes every column family itself and waits, so the log an open
    /// replays stays under three times the limit (and a batch).
    fn write_batch(&self, wb: WriteBatch) -> Result<()> {
        let bytes = wb.size_in_bytes() as u64;
        let mut wo = WriteOptions::default();
        wo.set_sync(self.config.sync_writes);
        self.db
            .write_opt(wb, &wo)
            .map_err(|e| self.write_error(e))?;
        let limit = self.config.wal_bytes;
        // Past the limit, the writer that takes the count back to 0 measures; the others go on.
        if limit == 0
            || self.written.fetch_add(bytes, Ordering::Relaxed) + bytes < limit
            || self.written.swap(0, Ordering::Relaxed) < limit
            || self.log_bytes() <= 2 * limit
        {
            return Ok(());
        }
        let handles: Vec<_> = cf::ALL
            .iter()
            .map(|name| self.handle(name))
            .collect::<Result<_>>()?;
        let mut fo = rocksdb::FlushOptions::default();
        fo.set_wait(true);
        self.db
            .flush_cfs_opt(&handles, &fo)
            .map_err(|e| self.write_error(e))
    }

    /// A refused write as this layer's error: the file system's refusal (RocksDB then refuses
    /// further writes until a reopen) or RocksDB's own.
    fn write_error(&self, e: rocksdb::Error) -> StoreError {
        let detail = e.into_string();
        if detail.starts_with("IO error") {
            StoreError::WriteFailed {
                path: self.path.clone(),
                detail,
            }
        } else {
            StoreError::Rocks { detail }
        }
    }

    /// Bytes of write-ahead log on disk now (RocksDB's `*.log` files in the store directory).
    pub fn log_bytes(&self) -> u64 {
        std::fs::read_dir(&self.path)
            .map(|dir| {
                dir.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Calls `f` on every object, in id order, until it returns `false`.
    pub fn for_each_object(&self, mut f: impl FnMut(ObjectRecord) -> bool) -> Result<()> {
        self.scan(cf::OBJECTS, &[], |_, v| f(v))
    }

    /// Decodes the entries of `cf` whose keys start with `prefix`, in key order, calling `f`
    /// with each key and value until it returns `false`.
    fn scan<T: DeserializeOwned>(
        &self,
        cf: &'static str,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], T) -> bool,
    ) -> Result<()> {
        let handle = self.handle(cf)?;
        let mode = IteratorMode::From(prefix, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(handle, mode) {
            let (k, v) = item?;
            if !k.starts_with(prefix) || !f(&k, decode(cf, &k, &v)?) {
                break;
            }
        }
        Ok(())
    }

    /// Every key and value of every column family, in order: for comparing two stores and for
    /// backups. Loads everything into memory.
    pub fn raw_entries(&self) -> Result<Vec<RawEntry>> {
        let mut out = Vec::new();
        for name in cf::ALL {
            let handle = self.handle(name)?;
            for item in self.db.iterator_cf(handle, IteratorMode::Start) {
                let (k, v) = item?;
                out.push((name, k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct OldDump<'a> {
        basename: &'a str,
        spec_version: u64,
        watermark: u64,
    }

    #[test]
    fn a_dump_record_from_before_backends_reads_as_hnsw_rs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let old = OldDump {
            basename: "hnsw-s1-p10",
            spec_version: 1,
            watermark: 10,
        };
        let meta = store.handle(cf::META).unwrap();
        let bytes = encode(cf::META, &old).unwrap();
        store.db.put_cf(meta, keys::INDEX_DUMP_KEY, bytes).unwrap();
        let dump = store.index_dump().unwrap().unwrap();
        assert_eq!(
            dump,
            IndexDump {
                basename: "hnsw-s1-p10".into(),
                spec_version: 1,
                watermark: 10,
                backend: IndexBackend::HnswRs,
            }
        );
        // A current record round-trips with its backend.
        let new = IndexDump {
            backend: IndexBackend::Usearch,
            ..dump
        };
        store.set_index_dump(&new).unwrap();
        assert_eq!(store.index_dump().unwrap(), Some(new));
        // Garbage is still an error, not a default.
        store.db.put_cf(meta, keys::INDEX_DUMP_KEY, [0xff]).unwrap();
        assert!(matches!(
            store.index_dump(),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_large_read_split_over_threads_keeps_the_order_and_the_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let list = |i: usize| {
            vec![Neighbour {
                object_id: format!("n{i}"),
                distance: i as f32,
            }]
        };
        let batch = Batch {
            neighbours: (0..5000)
                .step_by(2)
                .map(|i| (format!("o{i}"), list(i)))
                .collect(),
            ..Batch::default()
        };
        store.write(&batch).unwrap();
        // Stored and unknown objects, out of key order, more than one part's worth.
        let ids: Vec<String> = (0..5000).rev().map(|i| format!("o{i}")).collect();
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert!(keys.len() >= 2 * PARALLEL_READ_KEYS);
        let read = store.multi_neighbours(&keys).unwrap();
        assert_eq!(read.len(), 5000);
        for (id, got) in keys.iter().zip(&read) {
            let i: usize = id[1..].parse().unwrap();
            let want = i.is_multiple_of(2).then(|| list(i));
            assert_eq!(got, &want, "{id}");
        }
    }

    #[test]
    fn an_absent_label_is_answered_by_the_bloom_filter_without_reading_a_block() {
        use rocksdb::perf::{self, PerfContext, PerfMetric, PerfStatsLevel};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let label = |i: usize| Label {
            class: if i.is_multiple_of(2) {
                "SN Ia"
            } else {
                "RR Lyrae"
            }
            .into(),
            source: "TNS".into(),
            raw: format!("raw {i}"),
        };
        let labels: Vec<(String, Vec<Label>)> = (0..2000)
            .map(|i| (format!("o{i}"), vec![label(i)]))
            .collect();
        store.put_labels(&labels).unwrap();
        let handle = store.handle(cf::LABELS).unwrap();
        store.db.flush_cf(handle).unwrap();
        // The table file has a filter of ~10 bits a key.
        let props = store
            .db
            .property_value_cf(handle, "rocksdb.aggregated-table-properties")
            .unwrap()
            .unwrap();
        let filter: u64 = props
            .split("; ")
            .find_map(|p| p.strip_prefix("filter block size="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(filter >= 2000 * 9 / 8, "{props}");
        // Objects without a label (most of a store's): no data block is read for them.
        let absent: Vec<String> = (0..500).map(|i| format!("x{i}")).collect();
        let ids: Vec<&str> = absent.iter().map(String::as_str).collect();
        assert!(ids.len() < PARALLEL_READ_KEYS);
        perf::set_perf_stats(PerfStatsLevel::EnableCount);
        let mut ctx = PerfContext::default();
        ctx.reset();
        // Read from RocksDB itself (`labels_of` would not ask it: `Store::labelled`).
        let got: Vec<Option<Vec<Label>>> = store.multi_get(cf::LABELS, &ids).unwrap();
        let (misses, blocks) = (
            ctx.metric(PerfMetric::BloomSstMissCount),
            ctx.metric(PerfMetric::BlockReadCount),
        );
        perf::set_perf_stats(PerfStatsLevel::Disable);
        assert!(got.iter().all(Option::is_none));
        // A false positive or two reads a block; without the filter every key would.
        assert!(misses >= 490, "{misses} of 500 ruled out by the filter");
        assert!(blocks <= 10, "{blocks} blocks read");
        // Labels that are there are still read.
        let got = store.labels_of(&["o7", "o1998"]).unwrap();
        assert_eq!(got, [vec![label(7)], vec![label(1998)]]);
    }

    #[test]
    fn objects_without_a_label_are_answered_without_asking_rocksdb_before_and_after_a_reopen() {
        use rocksdb::perf::{self, PerfContext, PerfMetric, PerfStatsLevel};
        let dir = tempfile::tempdir().unwrap();
        let label = |class: &str| Label {
            class: class.into(),
            source: "TNS".into(),
            raw: class.into(),
        };
        {
            let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
            store
                .put_labels(&[("imported".into(), vec![label("SN Ia")])])
                .unwrap();
            let batch = Batch {
                record_labels: vec![
                    ("annotated".into(), vec![label("AGN")]),
                    ("cleared".into(), Vec::new()),
                ],
                ..Batch::default()
            };
            store.write(&batch).unwrap();
            // Marked before the write: read at once.
            assert_eq!(
                store.labels_of(&["imported"]).unwrap(),
                [vec![label("SN Ia")]]
            );
            assert_eq!(store.labelled.len(), 2);
        }
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        // The keys of both columns are read at open.
        assert_eq!(store.labelled.len(), 2);
        let ids = ["o1", "imported", "o2", "annotated", "cleared"];
        let imported = store.labels_of(&ids).unwrap();
        let own = store.record_labels_of(&ids).unwrap();
        assert_eq!(
            imported,
            [vec![], vec![label("SN Ia")], vec![], vec![], vec![]]
        );
        assert_eq!(own, [vec![], vec![], vec![], vec![label("AGN")], vec![]]);
        assert_eq!(store.both_labels_of(&ids).unwrap(), (imported, own));
        // None of the unlabelled ones reaches RocksDB: no key is looked up at all.
        let unlabelled: Vec<String> = (0..500).map(|i| format!("x{i}")).collect();
        let unlabelled: Vec<&str> = unlabelled.iter().map(String::as_str).collect();
        perf::set_perf_stats(PerfStatsLevel::EnableCount);
        let mut ctx = PerfContext::default();
        ctx.reset();
        let got = store.labels_of(&unlabelled).unwrap();
        let got_own = store.record_labels_of(&unlabelled).unwrap();
        let lookups = |ctx: &PerfContext| {
            ctx.metric(PerfMetric::GetFromMemtableCount)
                + ctx.metric(PerfMetric::BloomSstMissCount)
                + ctx.metric(PerfMetric::BloomSstHitCount)
        };
        let skipped = lookups(&ctx);
        // What these counters show when RocksDB is asked for the same keys.
        ctx.reset();
        let asked: Vec<Option<Vec<Label>>> = store.multi_get(cf::LABELS, &unlabelled).unwrap();
        let read = lookups(&ctx);
        perf::set_perf_stats(PerfStatsLevel::Disable);
        assert!(got.iter().chain(&got_own).all(Vec::is_empty));
        assert!(asked.iter().all(Option::is_none));
        assert_eq!(skipped, 0);
        assert!(read >= 500, "{read}");
        // A label imported now is read at once.
        store
            .put_labels(&[("x7".into(), vec![label("RR Lyrae")])])
            .unwrap();
        assert_eq!(
            store.labels_of(&["x6", "x7"]).unwrap(),
            [vec![], vec![label("RR Lyrae")]]
        );
    }

    /// The log left in a fresh store with `wal_bytes` after `write`, once its background
    /// flushes have taken it under `under` (`None`: measured at once). A flushed log file is
    /// deleted once its flush job finishes: this waits for that (not a timing: a bound on the
    /// wait).
    fn log_left(wal_bytes: u64, under: Option<u64>, write: impl FnOnce(&Store)) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            sync_writes: false,
            wal_bytes,
            ..StoreConfig::default()
        };
        let store = Store::open(dir.path(), config).unwrap();
        write(&store);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut logs = store.log_bytes();
        while under.is_some_and(|u| logs >= u) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            logs = store.log_bytes();
        }
        logs
    }

    /// `n` labels of `bytes` bytes each, for objects `{prefix}0`, `{prefix}1`, ...
    fn big_labels(prefix: &str, n: usize, bytes: usize) -> Vec<(String, Vec<Label>)> {
        (0..n)
            .map(|j| {
                let label = Label {
                    class: "SN Ia".into(),
                    source: "TNS".into(),
                    raw: format!("{prefix}{j:04}").repeat(bytes / (prefix.len() + 4)),
                };
                (format!("{prefix}{j}"), vec![label])
            })
            .collect()
    }

    #[test]
    fn the_write_ahead_log_is_kept_under_its_limit_though_a_column_family_is_written_slowly() {
        // 40 MB of labels in 400 writes, each with a vote (a column family written a few bytes
        // at a time, as the counts in `meta` are): the log a reopen would replay.
        let write = |store: &Store| {
            for i in 0..400 {
                store
                    .put_labels(&big_labels(&format!("o{i}-"), 10, 10_000))
                    .unwrap();
                store.put_vote("ann", &format!("o{i}"), Vote::Up).unwrap();
            }
        };
        // RocksDB's own limit keeps all of it. Ours flushes past 4 MiB in the background, and
        // where those flushes fall behind (a loaded machine: 43 MB once in CI, when that was
        // all there was) the writer flushes itself past twice the limit: never more than three
        // times the limit and a batch (~100 kB) is left.
        let limit = 4 << 20;
        let bound = 3 * limit + (1 << 20);
        let unlimited = log_left(0, None, write);
        let limited = log_left(limit, Some(bound), write);
        assert!(unlimited > 38_000_000, "{unlimited}");
        assert!(limited < bound, "{limited}");
    }

    #[test]
    fn a_write_that_takes_the_log_past_twice_its_limit_is_flushed_by_the_writer() {
        // One 4 MB write and none after it: RocksDB's own limit acts only on the next write,
        // so what brings the log down is the writer's flush.
        let labels = big_labels("o", 40, 100_000);
        let write = |store: &Store| {
            store.put_labels(&labels).unwrap();
            // Flushed or not, the labels read back.
            assert_eq!(store.labels_of(&["o7"]).unwrap()[0], labels[7].1);
        };
        let limit = 1 << 20;
        let unlimited = log_left(0, None, write);
        let limited = log_left(limit, Some(limit), write);
        assert!(unlimited > 4_000_000, "{unlimited}");
        assert!(limited < limit, "{limited}");
    }

    #[test]
    fn index_settings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        assert_eq!(store.index_settings().unwrap(), None);
        let s = IndexSettings {
            backend: IndexBackend::Usearch,
            params_json: "{}".into(),
        };
        store.set_index_settings(&s).unwrap();
        drop(store);
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        assert_eq!(store.index_settings().unwrap(), Some(s));
        assert_eq!(
            IndexBackend::from_name("hnsw_rs"),
            Some(IndexBackend::HnswRs)
        );
        assert_eq!(IndexBackend::Usearch.to_string(), "usearch");
    }
}
