//! The engine: the one facade over the store, the live index and the kNN graph, through which
//! the CLI, the gRPC server and future consumers ingest and query.
//!
//! Operations take decoded [`Alert`](crate::model::Alert)s, not files or sockets. Writes are
//! serialised by one lock; each batch of alerts becomes one atomic store write holding the
//! merged objects, their new embedding versions and the refreshed neighbour lists, so a batch is
//! queryable when it returns.
//!
//! Its methods live in one file per job:
//! - `ingest.rs`: [`Engine::apply`] and ingest sessions (merge, embed, index, link, write);
//! - `refit.rs`: scaler refits, in the batch or beside the engine;
//! - `maintenance.rs`: tombstone rebuilds, checkpoints, `reindex`;
//! - `metric.rs`: the metric learned from labels and its k-fold evaluation;
//! - `seed.rs`: bulk seeding of an empty store from an archive;
//! - `integrity.rs`: backups while serving, and the check of every part against the others;
//! - `query.rs` and `similar.rs`: neighbours, vectors, clusters, similarity search;
//! - `classify.rs`: labels, the neighbour vote, its evaluation;
//! - `anomaly.rs`: anomaly scores and their personalisation;
//! - `recommend.rs`: votes, recommendations, explanations;
//! - `config.rs`: [`EngineConfig`] and query limits.
//!
//! Locks, in the order they may be taken (never the reverse): `writer` (one write at a time),
//! `refit` (a refit beside the engine), the reverse graph (`listed_by`), then `live` (the index,
//! read for queries, written only for a short commit or swap). The anomaly scores' refresh lock
//! (held while they are computed, which reads `live`) is taken while holding no other lock.
//! `observers`, the anomaly cache, `unlinked` and `rebuild_thread` are taken alone, never
//! while waiting for another.
//!
//! Imports `model`, `alert`, `embed`, `store`, `index`, `graph`, `science`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ndarray::Array2;
use serde::Serialize;

use crate::embed::{Embedder, EmbeddingSpec};
use crate::graph::reverse::LazyReverse;
use crate::graph::GraphError;
use crate::index::live::{Entry, Facts, LiveIndex};
use crate::index::{AnyIndex, IndexBackend, IndexConfig, IndexError};
use crate::memory::{back_with_huge_pages_beside, AnonymousMemory};
use crate::model::{ObjectRecord, Survey};
use crate::store::{Counts, Store, StoreError};

mod anomaly;
mod classify;
mod config;
mod ingest;
mod integrity;
mod maintenance;
mod metric;
mod query;
mod recommend;
mod refit;
mod seed;
mod similar;
#[cfg(test)]
mod tests;

use anomaly::Anomalies;
use refit::PendingRefit;

pub use anomaly::{AnomalyQuery, AnomalyScore, ANOMALY_MAX_AGE, PERSONAL_WEIGHT};
pub use classify::{
    Classification, EvaluateOptions, EvaluationReport, LabelImport, Voter, SPREAD_NEIGHBOURHOOD,
    VOTERS, VOTE_CANDIDATES,
};
pub use config::{
    index_from_env, EngineConfig, DEFAULT_BATCH_SIZE, DEFAULT_RELINK_DELAY, INDEX_ENV, MAX_K,
    MIN_OBJECTS_TO_FIT,
};
pub use ingest::{
    BatchOutcome, BatchTimes, IngestReport, IngestSession, IngestTally, RejectReport, StreamMarks,
    MAX_WAITING,
};
pub use integrity::{BackupReport, CheckReport, MAX_LISTED_PROBLEMS};
pub use maintenance::{ReindexOptions, ReindexReport};
pub use metric::{MetricReport, DEFAULT_FOLDS, LEARNED_METHOD};
pub use query::ClusterReport;
pub use recommend::{RecommendQuery, Recommendation};
pub use seed::{Seed, SeedReport};
pub use similar::{lightcurve_record, separation, Cone, Filters, SimilarHit, SimilarQuery, Target};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown object `{object_id}`")]
    UnknownObject { object_id: String },
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("object `{object_id}` has no embedding{}", as_of.map(|t| format!(" as of MJD {t}")).unwrap_or_default())]
    NoEmbedding {
        object_id: String,
        as_of: Option<f64>,
    },
    #[error(
        "the stored embeddings were made by another feature list; the store must be reindexed"
    )]
    SpecOutdated,
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("invalid argument vector: has {got} values, the embedding has {expected}")]
    WrongDimension { expected: usize, got: usize },
    #[error("unknown user `{user}` (no votes)")]
    UnknownUser { user: String },
    #[error("no positive examples: give object ids, or a user who voted objects up")]
    NoPositiveExamples,
    #[error(
        "a bulk seed of this store did not finish: run `asterism ingest --bulk` on it again \
         (with the same inputs or none) before other writes"
    )]
    SeedUnfinished,
    #[error(
        "--bulk seeds a store that has no embedding yet; this one has {embedded} embedded \
         objects: ingest without --bulk"
    )]
    NotEmpty { embedded: usize },
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// How the live index came to be at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IndexOrigin {
    /// Loaded from the dump on disk, then `replayed` newer vectors inserted.
    Loaded { replayed: usize },
    /// Built from the stored vectors (no usable dump).
    Rebuilt,
}

pub struct Engine {
    store: Arc<Store>,
    writer: Mutex<()>,
    config: EngineConfig,
    embedder: Embedder,
    live: Arc<RwLock<LiveIndex>>,
    /// Who lists each object among its neighbours (the reverse kNN graph).
    listed_by: LazyReverse,
    origin: IndexOrigin,
    spec_outdated: bool,
    rebuilding: Arc<AtomicBool>,
    rebuild_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// A refit of the scaler running beside the engine.
    refit: Mutex<Option<PendingRefit>>,
    /// Bumped by every committed change of vectors or labels.
    generation: AtomicU64,
    observers: RwLock<Vec<Observer>>,
    /// Anomaly scores before personalisation, and the worker that recomputes them.
    anomalies: Arc<Anomalies>,
    /// A bulk seed is in progress or was interrupted: other writes wait for it to finish.
    seeding: AtomicBool,
    /// Objects whose lists wait for a deferred relink (`EngineConfig::relink_delay`); the
    /// store marks them too (`Store::unlinked`).
    unlinked: Mutex<ingest::Waiting>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.anomalies.stop();
    }
}

/// See [`Engine::memory`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EngineMemory {
    pub index_graph_bytes: Option<usize>,
    pub store: crate::store::StoreMemory,
}

/// What one committed write changed; given to every observer (see [`Engine::observe`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeEvent {
    pub generation: u64,
    /// Objects whose lightcurve (and so embedding) changed.
    pub changed_objects: Vec<String>,
    /// Objects whose stored neighbour list was rewritten.
    pub relisted: Vec<String>,
    /// Objects that got new labels.
    pub labelled: Vec<String>,
}

type Observer = Box<dyn Fn(&ChangeEvent) + Send + Sync>;

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked; the data is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Opens the store and brings the index up: from its dump plus a replay of newer vectors
    /// when the dump is usable (and of the store's backend), otherwise by a build from the
    /// stored vectors. The backend is the store's ([`index_config`]).
    pub fn open(path: &Path, config: EngineConfig) -> Result<Engine> {
        config.validate()?;
        let store = Store::open(path, config.store.clone())?;
        Engine::fill_record_labels(&store)?;
        let seeding = store.seeding()?;
        let unlinked = store.unlinked()?;
        let index = index_config(&store, &config)?;
        let embedder = Embedder::new();
        let spec = store
            .spec()?
            .unwrap_or_else(|| EmbeddingSpec::initial(&embedder));
        let spec_outdated = !spec.matches(&embedder);
        let dir = index_dir(path);
        let dump = store.index_dump()?.filter(|d| {
            d.spec_version == spec.version
                && store.next_point().is_ok_and(|next| d.watermark <= next)
        });
        let before = AnonymousMemory::now();
        let loader = dump.and_then(|d| {
            LiveIndex::load(spec.clone(), index.clone(), &dir, &d)
                .map_err(|e| tracing::warn!("index dump unusable, rebuilding: {e}"))
                .ok()
        });
        // From a dump, objects are streamed into the index one at a time (a list of every
        // object's vector, freed at once, would leave the allocator a few hundred MB at 1M).
        let (live, origin) = match loader {
            Some(mut loader) => {
                for_each_current_entry(&store, |e| loader.add(e))?;
                let (live, replayed) = loader.finish();
                (live, IndexOrigin::Loaded { replayed })
            }
            None => (
                LiveIndex::build(spec, index, current_entries(&store)?)?,
                IndexOrigin::Rebuilt,
            ),
        };
        tracing::info!(?origin, backend = %live.config().backend, vectors = live.len(), allocator = %crate::memory::allocator(), "index ready");
        crate::memory::release_free_memory();
        // The graph and the live maps, hundreds of MB at 1M read at random by every query, move
        // onto huge pages beside what follows (doing it beside the load slowed the first
        // answer by ~1.4 s: BENCHMARKS.md, "Huge pages").
        back_with_huge_pages_beside(AnonymousMemory::now().added_since(&before));
        let store = Arc::new(store);
        let ids: Vec<Arc<str>> = live.ids().cloned().collect();
        let live = Arc::new(RwLock::new(live));
        let anomalies = Anomalies::start(Arc::clone(&store), Arc::clone(&live));
        Ok(Engine {
            listed_by: LazyReverse::load_in_background(Arc::clone(&store), ids),
            store,
            writer: Mutex::new(()),
            config,
            embedder,
            live,
            origin,
            spec_outdated,
            rebuilding: Arc::new(AtomicBool::new(false)),
            rebuild_thread: Mutex::new(None),
            refit: Mutex::new(None),
            generation: AtomicU64::new(0),
            observers: RwLock::new(Vec::new()),
            anomalies,
            seeding: AtomicBool::new(seeding),
            unlinked: Mutex::new(ingest::Waiting::load(unlinked)),
        })
    }

    /// Calls `f` after every committed write of vectors, neighbour lists or labels, on the
    /// writer's thread (so `f` must be quick: hand the event to a channel).
    pub fn observe(&self, f: impl Fn(&ChangeEvent) + Send + Sync + 'static) {
        write(&self.observers).push(Box::new(f));
    }

    /// Counts committed writes of vectors or labels.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn notify(&self, mut event: ChangeEvent) {
        if event.changed_objects.is_empty()
            && event.relisted.is_empty()
            && event.labelled.is_empty()
        {
            return;
        }
        event.generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        for f in read(&self.observers).iter() {
            f(&event);
        }
    }

    pub fn index_origin(&self) -> IndexOrigin {
        self.origin
    }

    /// The backend and parameters of the store's index, as recorded.
    pub fn index_config(&self) -> IndexConfig {
        read(&self.live).config().clone()
    }

    /// The backend of the store's index.
    pub fn index_backend(&self) -> IndexBackend {
        read(&self.live).config().backend
    }

    /// An empty graph of the store's backend and recorded settings (the kind a rebuild fills),
    /// sized for `capacity` points: what a benchmark compares the live graph with after churn.
    pub fn empty_index(&self, capacity: usize) -> Result<AnyIndex> {
        Ok(read(&self.live).empty_graph(capacity)?)
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// The embedding spec in force (shared: the next refit replaces it, never changes it).
    pub fn spec(&self) -> Arc<EmbeddingSpec> {
        read(&self.live).spec.clone()
    }

    /// Alerts per atomic write.
    pub fn batch_size(&self) -> usize {
        self.config.batch_size
    }

    /// Points in the live index (current embeddings).
    pub fn indexed(&self) -> usize {
        read(&self.live).len()
    }

    /// What the parts written in C++ hold in memory (the Rust heap is not counted here): the
    /// index graph, where its backend counts it, and RocksDB.
    pub fn memory(&self) -> EngineMemory {
        EngineMemory {
            index_graph_bytes: read(&self.live).graph_memory_bytes(),
            store: self.store.memory(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Candidates kept while inserting new vectors into the current graph (USearch's
    /// ef_construction for live ingest; the bulk seed and rebuilds use the recorded
    /// `expansion_add`): a lower figure makes each alert cheaper and links it less well
    /// (measured in BENCHMARKS.md, "W1 live into the 1M store").
    pub fn set_insert_expansion(&self, n: usize) {
        read(&self.live).set_insert_expansion(n);
    }

    /// Candidates kept by every similarity search from now on (ef_search; USearch stores): a
    /// lower figure answers faster and finds fewer of the true neighbours (swept in
    /// BENCHMARKS.md against hnswlib on the same vectors). Returns whether the store's index
    /// backend took it (hnsw_rs keeps its recorded ef_search).
    pub fn set_search_expansion(&self, n: usize) -> bool {
        read(&self.live).set_search_expansion(n)
    }

    /// For a process that exits soon after this engine: its in-memory index is not freed
    /// when the engine drops but left to the exit (freeing hnsw_rs's graph link by link takes
    /// seconds on a 1M-object store: BENCHMARKS.md, W4). Background work and the store still
    /// end on drop; nothing durable lives only in the index.
    pub fn skip_index_teardown(&self) {
        std::mem::forget(Arc::clone(&self.live));
    }

    /// An object's record.
    pub fn object(&self, object_id: &str) -> Result<ObjectRecord> {
        self.store
            .get_object(object_id)?
            .ok_or_else(|| EngineError::UnknownObject {
                object_id: object_id.to_string(),
            })
    }

    /// Per-survey totals.
    pub fn stats(&self) -> Result<BTreeMap<Survey, Counts>> {
        Ok(self.store.counts()?)
    }
}

/// The raw features of `entries` as an n × dim matrix (`NaN` where undefined).
fn raw_matrix(entries: &[Entry], dim: usize) -> Array2<f64> {
    matrix_of(entries.iter().map(|e| &e.raw), dim)
}

/// Vectors as the rows of an n × dim matrix.
fn matrix_of<'a>(vectors: impl ExactSizeIterator<Item = &'a Vec<f32>>, dim: usize) -> Array2<f64> {
    let mut m = Array2::<f64>::zeros((vectors.len(), dim));
    for (i, v) in vectors.enumerate() {
        for (j, x) in v.iter().enumerate().take(dim) {
            m[[i, j]] = f64::from(*x);
        }
    }
    m
}

/// Checks a count a caller asked for (`k`, `top`): 1..=[`MAX_K`]. The one place this bound
/// is checked, for the engine's own queries and the server's requests alike.
pub fn check_count(field: &'static str, n: usize) -> Result<usize> {
    if n == 0 || n > MAX_K {
        return Err(EngineError::InvalidArgument {
            field,
            reason: format!("{n} is not in 1..={MAX_K}"),
        });
    }
    Ok(n)
}

fn index_dir(db: &Path) -> PathBuf {
    db.join("index")
}

/// The index backend and parameters of the store: those it recorded; for a new store (no
/// vector made yet) those `config` asks for, recorded now; for a store from before backends
/// were recorded, hnsw_rs with `config`'s parameters, recorded now. Asking for another backend
/// than the store's is an error.
fn index_config(store: &Store, config: &EngineConfig) -> Result<IndexConfig> {
    let mismatch = |recorded: IndexBackend, asked: IndexBackend| EngineError::InvalidConfig {
        field: "index",
        reason: format!(
            "{asked} was asked for, but the store at {} was created with {recorded} (the \
             backend is chosen when a store is created; rebuild the store to change it)",
            store.path().display()
        ),
    };
    let recorded = store.index_settings()?;
    let backend = match (&recorded, config.index) {
        (Some(r), Some(asked)) if asked != r.backend => return Err(mismatch(r.backend, asked)),
        (Some(r), _) => r.backend,
        (None, asked) if store.next_point()? == 0 => asked.unwrap_or(config.new_store_index),
        (None, Some(IndexBackend::Usearch)) => {
            return Err(mismatch(IndexBackend::HnswRs, IndexBackend::Usearch))
        }
        (None, _) => IndexBackend::HnswRs,
    };
    let index = config.index_config(backend);
    match recorded {
        Some(r) => Ok(index.recorded(&r)?),
        None => {
            index.validate()?;
            store.set_index_settings(&index.settings()?)?;
            Ok(index)
        }
    }
}

/// Every object's latest stored vector version, as index entries.
fn current_entries(store: &Store) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for_each_current_entry(store, |e| out.push(e))?;
    Ok(out)
}

/// Calls `f` with every object's current vector entry, in object-id order.
fn for_each_current_entry(store: &Store, mut f: impl FnMut(Entry)) -> Result<()> {
    // Vector keys are the object id, a 0 byte, then the sequence number big-endian: an
    // object's versions are adjacent and in order, so its last one is its current one.
    let mut pending: Option<Entry> = None;
    store.for_each_vector(|id, seq, v| match &mut pending {
        Some(last) if last.object_id == id => {
            if seq >= last.seq {
                (last.seq, last.point, last.facts) = (seq, v.point, Facts::from(&v));
                last.raw = v.raw;
            }
        }
        _ => {
            let next = Entry {
                object_id: id.to_string(),
                seq,
                point: v.point,
                facts: Facts::from(&v),
                raw: v.raw,
            };
            if let Some(done) = pending.replace(next) {
                f(done);
            }
        }
    })?;
    if let Some(done) = pending {
        f(done);
    }
    Ok(())
}
