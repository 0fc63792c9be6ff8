//! The engine: owns the store and the live index, and exposes ingest and query operations.
//!
//! Operations take decoded [`Alert`]s, not files or sockets, so the CLI, the gRPC server and a
//! future Kafka consumer all ingest through [`Engine::ingest`]. Writes are serialised by one lock;
//! each batch of alerts becomes one atomic store write holding the merged objects, their new
//! embedding versions and the refreshed neighbour lists, so a batch is queryable when it
//! returns. Imports `model`, `alert`, `embed`, `store`, `index`, `graph`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ndarray::Array2;
use rayon::prelude::*;
use serde::Serialize;

use crate::alert::Decoded;
use crate::embed::{Embedder, EmbeddingSpec};
use crate::graph::labels::{self as taxonomy, primary};
use crate::graph::science::{self, Evaluation, Explanation, IsolationForest};
use crate::graph::{self, GraphError, GRAPH_K};
use crate::index::live::{Entry, LiveIndex};
use crate::index::{HnswIndex, HnswParams, IndexError, PointId, VectorInsert};
use crate::model::{
    Alert, AnnotationValue, Label, Neighbour, ObjectRecord, Survey, VectorVersion, Vote,
};
use crate::store::{Batch, Counts, Store, StoreConfig, StoreError};

mod lists;
mod refit;
mod reverse;
mod similar;

use refit::PendingRefit;
use reverse::LazyReverse;

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
    #[error("the stored embeddings were made by another feature list; run `asterism reindex`")]
    SpecOutdated,
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("unknown user `{user}` (no votes)")]
    UnknownUser { user: String },
    #[error("no positive examples: give --like IDs, or a user who voted objects up")]
    NoPositiveExamples,
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub store: StoreConfig,
    /// Alerts per atomic write.
    pub batch_size: usize,
    pub hnsw: HnswParams,
    /// Rebuild the index in the background when tombstones exceed this multiple of live points.
    pub rebuild_tombstone_ratio: f64,
    /// From this many objects, a refit of the scaler runs beside the engine (see
    /// `engine/refit.rs`) instead of inside the batch that triggers it.
    pub background_refit_from: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: StoreConfig::default(),
            batch_size: DEFAULT_BATCH_SIZE,
            hnsw: HnswParams::default(),
            rebuild_tombstone_ratio: 1.0,
            background_refit_from: 16_384,
        }
    }
}

/// Alerts per atomic write unless configured otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// The scaler is first fitted at this many embedded objects, then refitted each time their
/// number doubles (so O(log n) refits over a store's life, each re-scaling every vector).
pub const MIN_OBJECTS_TO_FIT: u64 = 32;

use lists::{Lists, Replaced};

/// Largest `k` a similarity query may ask for.
pub const MAX_K: usize = 1000;

/// How the live index came to be at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IndexOrigin {
    /// Loaded from the dump on disk, then `replayed` newer vectors inserted.
    Loaded { replayed: usize },
    /// Built from the stored vectors (no usable dump).
    Rebuilt,
}

impl EngineConfig {
    pub fn validate(&self) -> Result<()> {
        self.hnsw.validate()?;
        if self.batch_size == 0 {
            return Err(EngineError::InvalidConfig {
                field: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// A rejected packet, row or file, as reported to the user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectReport {
    pub source: String,
    pub reason: String,
}

/// The outcome of an ingest call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestReport {
    /// Alerts (packets, or objects of a lightcurve table) decoded.
    pub alerts_read: u64,
    /// Packets, rows and files that could not be decoded.
    pub alerts_rejected: u64,
    /// Alerts already in the store (the same packet ingested before).
    pub alerts_duplicate: u64,
    pub objects_new: u64,
    pub objects_updated: u64,
    pub detections_added: u64,
    pub rejects: Vec<RejectReport>,
    /// Objects created or changed, in id order.
    #[serde(skip)]
    pub changed_objects: Vec<String>,
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
    /// Anomaly scores before personalisation, the generation they were computed at and when.
    anomaly_cache: Mutex<Option<(u64, std::time::Instant, Arc<AnomalyBase>)>>,
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

/// The unpersonalised anomaly scores of every embedded object.
struct AnomalyBase {
    ids: Vec<String>,
    /// Current scaled vectors, one per id.
    vectors: Vec<Vec<f32>>,
    lof: Vec<f64>,
    isolation: Vec<f64>,
    /// Mean of the LOF and isolation percentile ranks.
    base: Vec<f64>,
    last_mjd: Vec<Option<f64>>,
    /// Median nearest-neighbour distance: the kernel width of personalisation.
    sigma: f64,
}

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
    /// when the dump is usable, otherwise by a build from the stored vectors.
    pub fn open(path: &Path, config: EngineConfig) -> Result<Engine> {
        config.validate()?;
        let store = Store::open(path, config.store.clone())?;
        let embedder = Embedder::new();
        let spec = store
            .spec()?
            .unwrap_or_else(|| EmbeddingSpec::initial(&embedder));
        let spec_outdated = !spec.matches(&embedder);
        let entries = current_entries(&store)?;
        let dir = index_dir(path);
        let dump = store.index_dump()?.filter(|d| {
            d.spec_version == spec.version
                && store.next_point().is_ok_and(|next| d.watermark <= next)
        });
        let loaded = dump.and_then(|d| {
            LiveIndex::load(spec.clone(), config.hnsw.clone(), &dir, &d, &entries)
                .map_err(|e| tracing::warn!("index dump unusable, rebuilding: {e}"))
                .ok()
        });
        let (live, origin) = match loaded {
            Some((live, replayed)) => (live, IndexOrigin::Loaded { replayed }),
            None => (
                LiveIndex::build(spec, config.hnsw.clone(), entries)?,
                IndexOrigin::Rebuilt,
            ),
        };
        tracing::info!(?origin, vectors = live.len(), "index ready");
        let store = Arc::new(store);
        Ok(Engine {
            listed_by: LazyReverse::load_in_background(Arc::clone(&store)),
            store,
            writer: Mutex::new(()),
            config,
            embedder,
            live: Arc::new(RwLock::new(live)),
            origin,
            spec_outdated,
            rebuilding: Arc::new(AtomicBool::new(false)),
            rebuild_thread: Mutex::new(None),
            refit: Mutex::new(None),
            generation: AtomicU64::new(0),
            observers: RwLock::new(Vec::new()),
            anomaly_cache: Mutex::new(None),
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

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// The embedding spec in force.
    pub fn spec(&self) -> EmbeddingSpec {
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

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Ingests decoded input: stores the alerts in batches of `batch_size`, each one atomic,
    /// and reports the rejects.
    pub fn ingest(&self, decoded: Decoded) -> Result<IngestReport> {
        let mut session = self.session();
        session.add(decoded)?;
        Ok(session.finish())
    }

    /// Starts an ingest that spans several inputs (files, stream messages), so that an object
    /// created by one input and updated by a later one counts once, as new.
    pub fn session(&self) -> IngestSession<'_> {
        IngestSession {
            engine: self,
            tally: IngestTally::default(),
        }
    }

    /// Merges one batch of alerts into the store in one atomic write.
    pub fn apply(&self, alerts: &[Alert]) -> Result<BatchOutcome> {
        // A poisoned lock only means another writer panicked; the store itself is consistent.
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.install_refit(false)?;
        let mut outcome = BatchOutcome::default();

        let mut ids: Vec<&str> = alerts.iter().map(|a| a.object_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let existing = self.store.get_objects(&ids)?;
        let mut records: HashMap<&str, (ObjectRecord, bool)> = HashMap::new();
        for (id, rec) in ids.iter().zip(existing) {
            if let Some(rec) = rec {
                records.insert(id, (rec, false));
            }
        }

        let alert_keys: Vec<(Survey, i64)> = alerts
            .iter()
            .filter_map(|a| a.alert_id.map(|id| (a.survey, id)))
            .collect();
        let known = self.store.known_alerts(&alert_keys)?;
        let mut known: HashSet<(Survey, i64)> = alert_keys
            .iter()
            .zip(known)
            .filter(|(_, k)| *k)
            .map(|(key, _)| *key)
            .collect();

        let mut counts = self.store.counts()?;
        let mut batch = Batch::default();
        for alert in alerts {
            if let Some(id) = alert.alert_id {
                if known.insert((alert.survey, id)) {
                    batch
                        .alerts
                        .push((alert.survey, id, alert.object_id.clone()));
                    counts.entry(alert.survey).or_default().alerts += 1;
                } else {
                    outcome.alerts_duplicate += 1;
                }
            }
            let (record, changed) = records.entry(alert.object_id.as_str()).or_insert_with(|| {
                outcome.new_objects.push(alert.object_id.clone());
                counts.entry(alert.survey).or_default().objects += 1;
                (
                    ObjectRecord::new(alert.object_id.clone(), alert.survey),
                    true,
                )
            });
            let merged = record.merge(alert);
            if merged.changed() {
                *changed = true;
            }
            outcome.detections_added += merged.detections_added;
            counts.entry(record.survey).or_default().detections += merged.detections_added;
        }
        let mut changed_records = Vec::new();
        for (_, (record, changed)) in records {
            if changed {
                changed_records.push(record);
            }
        }
        changed_records.sort_by(|a, b| a.object_id.cmp(&b.object_id));
        outcome.changed_objects = changed_records
            .iter()
            .map(|r| r.object_id.clone())
            .collect();
        // Only surveys this batch touched are rewritten.
        let touched: HashSet<Survey> = alerts.iter().map(|a| a.survey).collect();
        let total_objects: u64 = counts.values().map(|c| c.objects).sum();
        batch.counts = counts
            .into_iter()
            .filter(|(s, _)| touched.contains(s))
            .collect();
        if self.spec_outdated && !changed_records.is_empty() {
            return Err(EngineError::SpecOutdated);
        }
        let replaced = self.embed_and_link(&changed_records, total_objects, &mut batch)?;
        batch.objects = changed_records;
        self.store.write(&batch)?;
        self.note_lists(replaced, &batch.neighbours)?;
        if self.refit_due(total_objects) == Some(true) && lock(&self.refit).is_none() {
            self.start_refit()?;
        }
        self.notify(ChangeEvent {
            changed_objects: outcome.changed_objects.clone(),
            relisted: batch.neighbours.iter().map(|(id, _)| id.clone()).collect(),
            ..ChangeEvent::default()
        });
        tracing::debug!(
            alerts = alerts.len(),
            objects = batch.objects.len(),
            "committed batch"
        );
        self.maybe_rebuild_in_background();
        Ok(outcome)
    }

    /// Embeds the changed objects, updates the live index (refitting the scaler when the store
    /// has doubled) and recomputes the affected neighbour lists, all into `batch`. Returns the
    /// stored lists the new ones replace (`None` after a refit, which rewrites every list).
    fn embed_and_link(
        &self,
        changed: &[ObjectRecord],
        total_objects: u64,
        batch: &mut Batch,
    ) -> Result<Option<Replaced>> {
        if changed.is_empty() {
            return Ok(Some(Replaced::new()));
        }
        let raws: Vec<Vec<f32>> = changed
            .par_iter()
            .map(|r| {
                self.embedder
                    .features(r, None)
                    .into_iter()
                    .map(|x| x as f32)
                    .collect()
            })
            .collect();
        let mut next_point = self.store.next_point()?;
        let mut entries: Vec<Entry> = Vec::with_capacity(changed.len());
        {
            let live = read(&self.live);
            for (r, raw) in changed.iter().zip(raws) {
                let seq = live.current(&r.object_id).map_or(0, |c| c.seq + 1);
                let version = VectorVersion {
                    point: next_point,
                    from_mjd: r.meta.last_mjd.unwrap_or(f64::NAN),
                    n_detections: r.detections.len() as u32,
                    raw: raw.clone(),
                };
                batch.vectors.push((r.object_id.clone(), seq, version));
                entries.push((r.object_id.clone(), seq, next_point, raw));
                next_point += 1;
            }
        }
        batch.next_point = Some(next_point);

        if self.refit_due(total_objects) == Some(false) {
            self.refit_and_rebuild(entries, batch)?;
            let all: Vec<String> = read(&self.live)
                .objects()
                .map(|(id, _)| id.to_string())
                .collect();
            batch.neighbours = self.lists_for(&all);
        } else {
            let ids: Vec<String> = entries.iter().map(|e| e.0.clone()).collect();
            if let Some(pending) = lock(&self.refit).as_ref() {
                pending.log(&entries);
            }
            // The HNSW insertion under a read lock: queries go on meanwhile.
            let prepared = read(&self.live).prepare(entries);
            write(&self.live).commit(prepared);
            let (lists, replaced) = self.relink(&ids)?;
            batch.neighbours = lists;
            return Ok(Some(replaced));
        }
        Ok(None)
    }

    /// New neighbour lists after the `moved` objects were re-embedded, and the stored lists
    /// they replace; see [`lists::relink`].
    fn relink(&self, moved: &[String]) -> Result<(Lists, Replaced)> {
        let reverse = self.listed_by.get(&self.store)?;
        lists::relink(&read(&self.live), &reverse, moved, |keys| {
            Ok(self.store.multi_neighbours(keys)?)
        })
    }

    /// Whether the store has doubled since the scaler was fitted: `Some(true)` when the refit
    /// is to run beside the engine, `Some(false)` inside the batch.
    fn refit_due(&self, total_objects: u64) -> Option<bool> {
        let fitted_on = read(&self.live).spec.fitted_on;
        (total_objects >= MIN_OBJECTS_TO_FIT && total_objects >= 2 * fitted_on.max(1))
            .then_some(total_objects >= self.config.background_refit_from)
    }

    /// Starts a refit beside the engine on every object's current vector (the writer lock is
    /// held, and the store holds the last batch).
    fn start_refit(&self) -> Result<()> {
        let entries = current_entries(&self.store)?;
        let spec = read(&self.live).spec.clone();
        tracing::info!(
            objects = entries.len(),
            "refitting the scaler beside the engine"
        );
        *lock(&self.refit) = Some(PendingRefit::start(entries, spec, self.config.hnsw.clone()));
        Ok(())
    }

    /// Installs a refit that ran beside the engine, once it is done (with `wait`, waits for
    /// it): replays the entries logged since its last round into its index, patches the lists
    /// they touch, writes the spec and every list in one batch and swaps the index in. The
    /// writer lock is held.
    fn install_refit(&self, wait: bool) -> Result<()> {
        let pending = {
            let mut slot = lock(&self.refit);
            match slot.as_ref() {
                Some(p) if wait || p.is_finished() => slot.take(),
                _ => None,
            }
        };
        let Some(pending) = pending else {
            return Ok(());
        };
        let from_version = pending.from_version;
        let (done, log) = pending.join();
        let Some(mut done) = done else {
            tracing::warn!("the refit beside the engine failed; the next batch starts another");
            return Ok(());
        };
        if read(&self.live).spec.version != from_version {
            tracing::info!("dropped a refit: the spec was replaced meanwhile");
            return Ok(());
        }
        let replayed = done.replay(log)?;
        let batch = Batch {
            spec: Some(done.live.spec.clone()),
            neighbours: done.lists.into_iter().collect(),
            ..Batch::default()
        };
        self.store.write(&batch)?;
        tracing::info!(
            version = done.live.spec.version,
            replayed,
            "installed the refit"
        );
        *write(&self.live) = done.live;
        self.listed_by.install(done.reverse);
        self.notify(ChangeEvent {
            relisted: batch.neighbours.into_iter().map(|(id, _)| id).collect(),
            ..ChangeEvent::default()
        });
        Ok(())
    }

    /// Fits a new scaler on every object's latest raw features (the stored ones overridden by
    /// `fresh`), records the spec in `batch` and rebuilds the index with it.
    fn refit_and_rebuild(&self, fresh: Vec<Entry>, batch: &mut Batch) -> Result<()> {
        let mut all: BTreeMap<String, Entry> = BTreeMap::new();
        for e in current_entries(&self.store)?.into_iter().chain(fresh) {
            all.insert(e.0.clone(), e);
        }
        let entries: Vec<Entry> = all.into_values().collect();
        let rows = raw_matrix(&entries, self.embedder.dim());
        let spec = read(&self.live).spec.refit(&rows);
        tracing::info!(
            objects = entries.len(),
            version = spec.version,
            "refitted the scaler"
        );
        batch.spec = Some(spec.clone());
        let rebuilt = LiveIndex::build(spec, self.config.hnsw.clone(), entries)?;
        *write(&self.live) = rebuilt;
        Ok(())
    }

    /// Fresh neighbour lists for `ids`, by index search.
    fn lists_for(&self, ids: &[String]) -> Lists {
        lists::search(&read(&self.live), ids)
    }

    /// Updates the reverse graph after `lists` were written over `replaced` (the old lists by
    /// object; `None`: every list was rewritten).
    fn note_lists(
        &self,
        replaced: Option<Replaced>,
        lists: &[(String, Vec<Neighbour>)],
    ) -> Result<()> {
        let Some(mut replaced) = replaced else {
            self.listed_by.replace(lists);
            return Ok(());
        };
        self.listed_by
            .get(&self.store)?
            .update(&mut replaced, lists);
        Ok(())
    }

    /// Starts a background rebuild when tombstones pass the threshold (on a thread pool of its
    /// own); the new graph is swapped in atomically, with the vectors that arrived meanwhile
    /// added first.
    fn maybe_rebuild_in_background(&self) {
        let (tomb, live_n) = {
            let live = read(&self.live);
            (live.tombstones(), live.len())
        };
        let threshold = (live_n as f64 * self.config.rebuild_tombstone_ratio).max(1000.0);
        if (tomb as f64) < threshold || self.rebuilding.swap(true, Ordering::SeqCst) {
            return;
        }
        let live = Arc::clone(&self.live);
        let flag = Arc::clone(&self.rebuilding);
        let params = self.config.hnsw.clone();
        let handle = std::thread::spawn(move || {
            let pool = refit::background_pool();
            let run = || {
                let (snapshot, spec_version) = {
                    let l = read(&live);
                    (l.snapshot(), l.spec.version)
                };
                let built: HashSet<PointId> = snapshot.iter().map(|(p, _)| *p).collect();
                let result = HnswIndex::new(HnswParams {
                    capacity: params.capacity.max(snapshot.len()),
                    ..params
                });
                if let Ok(graph) = result {
                    graph.insert(&snapshot);
                    let mut l = write(&live);
                    // A refit replaced the whole index meanwhile: this graph is stale.
                    if l.spec.version == spec_version {
                        l.swap_graph(graph, &built);
                        tracing::info!(vectors = l.len(), "swapped in the rebuilt index");
                    }
                }
            };
            // Its own pool: the batches' parallel work must not queue behind the build.
            match pool {
                Some(pool) => pool.install(run),
                None => run(),
            }
            flag.store(false, Ordering::SeqCst);
        });
        *lock(&self.rebuild_thread) = Some(handle);
    }

    /// Waits for a background rebuild, if one runs.
    pub fn wait_for_rebuild(&self) {
        if let Some(h) = lock(&self.rebuild_thread).take() {
            let _ = h.join();
        }
    }

    /// Points in the index that no object owns any more.
    pub fn tombstones(&self) -> usize {
        read(&self.live).tombstones()
    }

    /// For a process that exits soon after this engine: its in-memory index is not freed
    /// when the engine drops but left to the exit (freeing hnsw_rs's graph link by link takes
    /// seconds on a 1M-object store: BENCHMARKS.md, W4). Background work and the store still
    /// end on drop; nothing durable lives only in the index.
    pub fn skip_index_teardown(&self) {
        std::mem::forget(Arc::clone(&self.live));
    }

    /// Writes the index to `<db>/index/` and records what it covers, so the next open loads it
    /// instead of rebuilding. Older dumps are removed. A refit running beside the engine is
    /// waited for and installed first (on a large store, minutes), so the dump has its spec.
    pub fn checkpoint(&self) -> Result<()> {
        let _guard = lock(&self.writer);
        self.install_refit(true)?;
        self.wait_for_rebuild();
        if read(&self.live).is_empty() {
            // Nothing to dump (hnsw_rs cannot write an empty graph); open builds it in no time.
            return Ok(());
        }
        let dir = index_dir(self.store.path());
        let dump = read(&self.live).dump(&dir)?;
        self.store.set_index_dump(&dump)?;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with(&format!("{}.", dump.basename)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// Re-embeds every object and every stored version with the current feature list, refits
    /// the scaler on all objects and rebuilds the index and the kNN graph.
    pub fn reindex(&self) -> Result<ReindexReport> {
        let _guard = lock(&self.writer);
        // Its spec is about to be replaced: stop a refit running beside the engine.
        drop(lock(&self.refit).take());
        let mut records = Vec::new();
        self.store.for_each_object(|r| {
            records.push(r);
            true
        })?;
        let mut batch = Batch::default();
        let mut next_point = self.store.next_point()?;
        let mut versions = 0usize;
        let mut current: Vec<Entry> = Vec::new();
        for r in &records {
            let mut stored = self.store.vector_versions(&r.object_id)?;
            if stored.is_empty() {
                stored.push((
                    0,
                    VectorVersion {
                        point: 0,
                        from_mjd: r.meta.last_mjd.unwrap_or(f64::NAN),
                        n_detections: r.detections.len() as u32,
                        raw: Vec::new(),
                    },
                ));
            }
            let last = stored.len() - 1;
            for (i, (seq, v)) in stored.into_iter().enumerate() {
                let as_of = if i == last { None } else { Some(v.from_mjd) };
                let raw: Vec<f32> = self
                    .embedder
                    .features(r, as_of)
                    .into_iter()
                    .map(|x| x as f32)
                    .collect();
                let version = VectorVersion {
                    point: next_point,
                    raw: raw.clone(),
                    ..v
                };
                if i == last {
                    current.push((r.object_id.clone(), seq, next_point, raw));
                }
                batch.vectors.push((r.object_id.clone(), seq, version));
                next_point += 1;
                versions += 1;
            }
        }
        batch.next_point = Some(next_point);
        let dim = self.embedder.dim();
        let rows = raw_matrix(&current, dim);
        let base = read(&self.live).spec.clone();
        let mut spec = EmbeddingSpec::initial(&self.embedder);
        spec.version = base.version;
        let spec = if current.is_empty() {
            spec
        } else {
            spec.refit(&rows)
        };
        batch.spec = Some(spec.clone());
        self.wait_for_rebuild();
        *write(&self.live) = LiveIndex::build(spec, self.config.hnsw.clone(), current)?;
        let ids: Vec<String> = records.iter().map(|r| r.object_id.clone()).collect();
        batch.neighbours = self.lists_for(&ids);
        self.store.write(&batch)?;
        self.note_lists(None, &batch.neighbours)?;
        self.notify(ChangeEvent {
            changed_objects: ids,
            relisted: batch.neighbours.iter().map(|(id, _)| id.clone()).collect(),
            ..ChangeEvent::default()
        });
        Ok(ReindexReport {
            objects: records.len(),
            versions,
            dim,
        })
    }

    /// The `k` objects most similar to `object_id`, nearest first, the object itself excluded;
    /// with `as_of`, among the embeddings every object had at that MJD (see [`similar`]).
    pub fn similar(&self, object_id: &str, k: usize, as_of: Option<f64>) -> Result<Vec<Neighbour>> {
        let mut q = SimilarQuery::new(Target::Object(object_id.to_string()), k);
        q.as_of = as_of;
        Ok(self
            .find_similar(&q)?
            .into_iter()
            .map(|h| Neighbour {
                object_id: h.object_id,
                distance: h.distance,
            })
            .collect())
    }

    /// An object's current scaled vector and its mask of undefined features.
    pub fn vector(&self, object_id: &str) -> Result<(Vec<f32>, Vec<bool>)> {
        let versions = self.store.vector_versions(object_id)?;
        let Some((_, v)) = versions.last() else {
            self.object(object_id)?;
            return Err(EngineError::NoEmbedding {
                object_id: object_id.to_string(),
                as_of: None,
            });
        };
        let raw: Vec<f64> = v.raw.iter().map(|&x| f64::from(x)).collect();
        Ok(self.spec().scaler.transform(&raw))
    }

    /// The neighbour list of an object in the kNN graph: its [`GRAPH_K`] nearest.
    pub fn neighbours(&self, object_id: &str) -> Result<Vec<Neighbour>> {
        match self.store.neighbours(object_id)? {
            Some(mut list) => {
                list.truncate(GRAPH_K);
                Ok(list)
            }
            None => {
                self.object(object_id)?;
                Ok(Vec::new())
            }
        }
    }

    /// Every object's [`GRAPH_K`] nearest neighbours: the kNN graph the analytics use.
    fn graph_lists(&self) -> Result<BTreeMap<String, Vec<Neighbour>>> {
        let mut lists = BTreeMap::new();
        self.store.for_each_neighbours(|id, mut list| {
            list.truncate(GRAPH_K);
            lists.insert(id.to_string(), list);
            true
        })?;
        Ok(lists)
    }

    /// Every current scaled vector, in object-id order.
    pub fn vectors(&self) -> (Vec<String>, Vec<Vec<f32>>) {
        let live = read(&self.live);
        let mut rows: Vec<(&Arc<str>, &Vec<f32>)> =
            live.objects().map(|(id, c)| (id, &c.vector)).collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        rows.into_iter()
            .map(|(id, v)| (id.to_string(), v.clone()))
            .unzip()
    }

    /// Every current vector, in object-id order: ids and an n × dim matrix.
    pub fn matrix(&self) -> Result<(Vec<String>, Array2<f64>)> {
        let (ids, vectors) = self.vectors();
        Ok((ids, matrix_of(vectors.iter(), self.embedder.dim())))
    }

    /// Connected components of the kNN graph and KMeans clusters of the embeddings.
    pub fn clusters(&self, k: Option<usize>, seed: u64) -> Result<ClusterReport> {
        let lists = self.graph_lists()?;
        let components = graph::components(&lists);
        let (ids, m) = self.matrix()?;
        let records = self
            .store
            .get_objects(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
        let surveys: Vec<String> = records
            .iter()
            .map(|r| r.as_ref().map_or("?".into(), |r| r.survey.to_string()))
            .collect();
        let k =
            k.unwrap_or_else(|| ((ids.len() as f64 / 2.0).sqrt().round() as usize).clamp(2, 20));
        let clusters = graph::kmeans(&ids, &surveys, &m, k, seed)?;
        Ok(ClusterReport {
            objects: ids.len(),
            component_sizes: components.iter().map(Vec::len).collect(),
            k: clusters.len(),
            clusters,
        })
    }

    /// The most trusted label of each object (imported or from its annotations).
    fn primary_labels(&self, ids: &[&str]) -> Result<Vec<Option<Label>>> {
        let records = self.store.get_objects(ids)?;
        self.primary_labels_of(ids, records.iter().map(Option::as_ref))
    }

    /// [`Self::primary_labels`] for records already read.
    fn primary_labels_of<'r>(
        &self,
        ids: &[&str],
        records: impl IntoIterator<Item = Option<&'r ObjectRecord>>,
    ) -> Result<Vec<Option<Label>>> {
        let imported = self.store.labels_of(ids)?;
        Ok(records
            .into_iter()
            .zip(imported)
            .map(|(r, imp)| r.and_then(|r| primary(&taxonomy::labels_of(r, &imp)).cloned()))
            .collect())
    }

    /// Every label of an object, most trusted first.
    pub fn labels(&self, object_id: &str) -> Result<Vec<Label>> {
        let r = self.object(object_id)?;
        let imported = self
            .store
            .labels_of(&[object_id])?
            .pop()
            .unwrap_or_default();
        Ok(taxonomy::labels_of(&r, &imported))
    }

    /// Imports `(object id, class)` rows from a labels file named `source`. Classes are mapped
    /// onto the taxonomy where they name one of its classes or a SIMBAD/TNS type, and kept as
    /// written otherwise. Rows for objects not in the store are counted, not stored.
    pub fn import_labels(&self, rows: &[(String, String)], source: &str) -> Result<LabelImport> {
        let _guard = lock(&self.writer);
        let source = format!("csv:{source}");
        let mut report = LabelImport::default();
        let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
        let known = self.store.get_objects(&ids)?;
        let mut existing = self.store.labels_of(&ids)?;
        let mut out: BTreeMap<String, Vec<Label>> = BTreeMap::new();
        for (((id, raw), known), current) in rows.iter().zip(known).zip(existing.iter_mut()) {
            if known.is_none() {
                report.unknown_objects.push(id.clone());
                continue;
            }
            let class =
                taxonomy::canonical(raw).map_or_else(|| raw.trim().to_string(), String::from);
            let entry = out
                .entry(id.clone())
                .or_insert_with(|| std::mem::take(current));
            entry.retain(|l| l.source != source);
            entry.push(Label {
                class: class.clone(),
                source: source.clone(),
                raw: raw.clone(),
            });
            *report.classes.entry(class).or_default() += 1;
            report.imported += 1;
        }
        let batch: Vec<(String, Vec<Label>)> = out.into_iter().collect();
        self.store.put_labels(&batch)?;
        self.notify(ChangeEvent {
            labelled: batch.iter().map(|(id, _)| id.clone()).collect(),
            ..ChangeEvent::default()
        });
        Ok(report)
    }

    fn current_vector(&self, object_id: &str) -> Result<Vec<f32>> {
        if self.spec_outdated {
            return Err(EngineError::SpecOutdated);
        }
        if let Some(c) = read(&self.live).current(object_id) {
            return Ok(c.vector.clone());
        }
        self.object(object_id)?;
        Err(EngineError::NoEmbedding {
            object_id: object_id.to_string(),
            as_of: None,
        })
    }

    /// Class probabilities of an object from the labels of its nearest neighbours (see
    /// [`science`] for the weights, the calibration and the packet-score pooling), or by label
    /// spreading over the kNN graph when no neighbour among the nearest is labelled.
    pub fn classify(&self, object_id: &str) -> Result<Classification> {
        let record = self.object(object_id)?;
        let vector = self.current_vector(object_id)?;
        let candidates = read(&self.live).search(&vector, VOTE_CANDIDATES, Some(object_id));
        let ids: Vec<&str> = candidates.iter().map(|(id, _)| id.as_ref()).collect();
        let labels = self.primary_labels(&ids)?;
        let voters: Vec<Voter> = candidates
            .iter()
            .zip(labels)
            .filter_map(|((id, d), l)| {
                l.map(|l| Voter {
                    object_id: id.to_string(),
                    class: l.class,
                    source: l.source,
                    distance: *d,
                })
            })
            .take(VOTERS)
            .collect();
        let (mut probabilities, method) = if voters.is_empty() {
            let p = self.spread_to(object_id)?;
            let m = if p.is_empty() { "none" } else { "propagation" };
            (p, m)
        } else {
            let v: Vec<(String, f32)> = voters
                .iter()
                .map(|v| (v.class.clone(), v.distance))
                .collect();
            (science::vote(&v), "vote")
        };
        let packet_snia_score = snia_score(&record);
        if let Some(s) = packet_snia_score {
            science::pool_snia_score(&mut probabilities, s);
        }
        let best = probabilities
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(c, p)| (c.clone(), *p));
        Ok(Classification {
            object_id: object_id.to_string(),
            class: best.as_ref().map(|b| b.0.clone()),
            confidence: best.map_or(0.0, |b| b.1),
            probabilities,
            method,
            voters,
            packet_snia_score,
            labels: self.labels(object_id)?,
        })
    }

    /// Label spreading over the stored kNN graph; the scores of `object_id`.
    fn spread_to(&self, object_id: &str) -> Result<BTreeMap<String, f64>> {
        let lists = self.graph_lists()?;
        let ids: Vec<&str> = lists.keys().map(String::as_str).collect();
        let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let Some(&me) = index.get(object_id) else {
            return Ok(BTreeMap::new());
        };
        let mut edges = Vec::new();
        for (i, (_, list)) in lists.iter().enumerate() {
            for n in list {
                if let Some(&j) = index.get(n.object_id.as_str()) {
                    edges.push((i, j, n.distance));
                }
            }
        }
        let labels = self.primary_labels(&ids)?;
        let mut classes: Vec<String> = labels.iter().flatten().map(|l| l.class.clone()).collect();
        classes.sort();
        classes.dedup();
        let seeds: Vec<(usize, usize)> = labels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let l = l.as_ref()?;
                Some((i, classes.binary_search(&l.class).ok()?))
            })
            .filter(|(i, _)| *i != me)
            .collect();
        let f = science::spread_labels(ids.len(), &edges, &seeds, classes.len());
        Ok(classes
            .into_iter()
            .zip(f[me].iter().copied())
            .filter(|(_, p)| *p > 0.0)
            .collect())
    }

    /// Leave-one-out neighbour-vote classification of the objects in `truth` (id -> class):
    /// each is classified by the votes of its nearest neighbours that `truth` labels, its own
    /// label hidden. Objects absent from the store are counted in `missing`.
    pub fn evaluate(&self, truth: &BTreeMap<String, String>) -> Result<EvaluationReport> {
        if self.spec_outdated {
            return Err(EngineError::SpecOutdated);
        }
        let truth: BTreeMap<&str, String> = truth
            .iter()
            .map(|(id, c)| {
                let c = taxonomy::canonical(c).map_or_else(|| c.trim().to_string(), String::from);
                (id.as_str(), c)
            })
            .collect();
        let live = read(&self.live);
        let present: Vec<(&str, &String)> = truth
            .iter()
            .filter(|(id, _)| live.current(id).is_some())
            .map(|(id, c)| (*id, c))
            .collect();
        let predicted: Vec<String> = present
            .par_iter()
            .map(|(id, _)| {
                let Some(c) = live.current(id) else {
                    return "none".to_string();
                };
                let voters: Vec<(String, f32)> = live
                    .search(&c.vector, VOTE_CANDIDATES, Some(id))
                    .into_iter()
                    .filter_map(|(n, d)| truth.get(n.as_ref()).map(|c| (c.clone(), d)))
                    .take(VOTERS)
                    .collect();
                science::vote(&voters)
                    .into_iter()
                    .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                    .map_or_else(|| "none".to_string(), |(c, _)| c)
            })
            .collect();
        let actual: Vec<String> = present.iter().map(|(_, c)| (*c).clone()).collect();
        Ok(EvaluationReport {
            missing: truth.len() - present.len(),
            evaluation: science::evaluate(&actual, &predicted),
        })
    }

    /// Records a user's vote on an object.
    pub fn vote(&self, user: &str, object_id: &str, vote: Vote) -> Result<()> {
        if user.is_empty() || user.contains('\0') {
            return Err(EngineError::InvalidArgument {
                field: "user",
                reason: "must be a non-empty name without NUL".into(),
            });
        }
        self.object(object_id)?;
        Ok(self.store.put_vote(user, object_id, vote)?)
    }

    fn user_votes(&self, user: &str) -> Result<BTreeMap<String, Vote>> {
        let votes = self.store.votes(user)?;
        if votes.is_empty() {
            return Err(EngineError::UnknownUser {
                user: user.to_string(),
            });
        }
        Ok(votes)
    }

    /// Objects ranked by anomaly score (see [`science`]), most anomalous first. With `user`,
    /// the ranking is personalised by that user's votes: each object's score moves by
    /// λ·mean over votes of ±exp(−d²/2σ²) (+ for up, − for down; d its distance to the voted
    /// object, σ the median neighbour distance, λ = 0.5), so objects like what the user found
    /// interesting rise and objects like what they dismissed sink; voted objects are left out.
    /// The scores are recomputed after a commit, but at most every [`ANOMALY_MAX_AGE`] while
    /// commits keep coming: an object ingested meanwhile may be missing for that long.
    pub fn anomalies(&self, query: &AnomalyQuery) -> Result<Vec<AnomalyScore>> {
        if self.spec_outdated {
            return Err(EngineError::SpecOutdated);
        }
        if query.top == 0 || query.top > MAX_K {
            return Err(EngineError::InvalidArgument {
                field: "top",
                reason: format!("{} is not in 1..={MAX_K}", query.top),
            });
        }
        if query.since.is_some_and(|t| !t.is_finite()) {
            return Err(EngineError::InvalidArgument {
                field: "since",
                reason: "must be a finite MJD".into(),
            });
        }
        let votes = match &query.user {
            Some(u) => self.user_votes(u)?,
            None => BTreeMap::new(),
        };
        let b = self.anomaly_base()?;
        let sigma = b.sigma;
        let voted: Vec<(Vec<f32>, f64)> = votes
            .iter()
            .filter_map(|(id, v)| {
                let sign = if *v == Vote::Up { 1.0 } else { -1.0 };
                read(&self.live)
                    .current(id)
                    .map(|c| (c.vector.clone(), sign))
            })
            .collect();
        let mut out: Vec<AnomalyScore> = b
            .ids
            .iter()
            .enumerate()
            .filter(|(_, id)| !votes.contains_key(*id))
            .filter(|(i, _)| {
                query
                    .since
                    .is_none_or(|t| b.last_mjd[*i].is_some_and(|l| l >= t))
            })
            .map(|(i, id)| {
                let row = &b.vectors[i];
                let personal = if voted.is_empty() {
                    0.0
                } else {
                    PERSONAL_WEIGHT
                        * voted
                            .iter()
                            .map(|(v, sign)| {
                                let d = f64::from(crate::embed::l2(row, v));
                                sign * (-(d * d) / (2.0 * sigma * sigma)).exp()
                            })
                            .sum::<f64>()
                        / voted.len() as f64
                };
                AnomalyScore {
                    object_id: id.clone(),
                    score: b.base[i] + personal,
                    lof: b.lof[i],
                    isolation: b.isolation[i],
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.object_id.cmp(&b.object_id))
        });
        out.truncate(query.top);
        Ok(out)
    }

    /// An object's unpersonalised anomaly score; `None` when it has no embedding.
    pub fn anomaly_of(&self, object_id: &str) -> Result<Option<AnomalyScore>> {
        self.object(object_id)?;
        let b = self.anomaly_base()?;
        Ok(b.ids
            .binary_search_by(|id| id.as_str().cmp(object_id))
            .ok()
            .map(|i| AnomalyScore {
                object_id: object_id.to_string(),
                score: b.base[i],
                lof: b.lof[i],
                isolation: b.isolation[i],
            }))
    }

    /// The anomaly scores, computed at most once per generation and, while commits keep
    /// coming, at most once per [`ANOMALY_MAX_AGE`]: they cost a pass over every object, too
    /// much to repeat after each batch of a running ingest.
    fn anomaly_base(&self) -> Result<Arc<AnomalyBase>> {
        let generation = self.generation();
        if let Some((g, at, b)) = lock(&self.anomaly_cache).as_ref() {
            if *g == generation || at.elapsed() < ANOMALY_MAX_AGE {
                return Ok(Arc::clone(b));
            }
        }
        let started = std::time::Instant::now();
        let lists = self.graph_lists()?;
        let (ids, vectors) = self.vectors();
        let rows = matrix_of(vectors.iter(), self.embedder.dim());
        let lof_scores = science::local_outlier_factor(&lists);
        let lof: Vec<f64> = ids
            .iter()
            .map(|id| lof_scores.get(id).copied().unwrap_or(1.0))
            .collect();
        let isolation: Vec<f64> = if ids.is_empty() {
            Vec::new()
        } else {
            let forest = IsolationForest::fit(&rows, 100, 256, ANOMALY_SEED);
            rows.rows()
                .into_iter()
                .map(|r| forest.score(r.as_slice().unwrap_or(&[])))
                .collect()
        };
        let (lof_rank, iso_rank) = (
            science::percentile_ranks(&lof),
            science::percentile_ranks(&isolation),
        );
        let base = lof_rank
            .iter()
            .zip(&iso_rank)
            .map(|(a, b)| 0.5 * (a + b))
            .collect();
        let mut nearest: Vec<f32> = lists
            .values()
            .filter_map(|l| l.first())
            .map(|n| n.distance)
            .collect();
        nearest.sort_by(f32::total_cmp);
        let sigma = f64::from(nearest.get(nearest.len() / 2).copied().unwrap_or(1.0)).max(1e-3);
        let records = self
            .store
            .get_objects(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
        let last_mjd = records
            .iter()
            .map(|r| r.as_ref().and_then(|r| r.meta.last_mjd))
            .collect();
        let b = Arc::new(AnomalyBase {
            ids,
            vectors,
            lof,
            isolation,
            base,
            last_mjd,
            sigma,
        });
        *lock(&self.anomaly_cache) = Some((generation, started, Arc::clone(&b)));
        Ok(b)
    }

    /// Objects like the positive examples and unlike the negative ones (or like what `user`
    /// voted up and unlike what they voted down), filtered, best first. Score: mean over
    /// positives of 1/(1 + d) minus mean over negatives of 1/(1 + d). Never returns the
    /// examples nor objects the user voted on.
    pub fn recommend(&self, req: &RecommendQuery) -> Result<Vec<Recommendation>> {
        let (mut like, mut unlike) = (req.like.clone(), req.unlike.clone());
        let mut exclude: HashSet<String> = like.iter().chain(&unlike).cloned().collect();
        if let Some(user) = &req.user {
            for (id, v) in self.user_votes(user)? {
                match v {
                    Vote::Up => like.push(id.clone()),
                    Vote::Down => unlike.push(id.clone()),
                }
                exclude.insert(id);
            }
        }
        if like.is_empty() {
            return Err(EngineError::NoPositiveExamples);
        }
        req.filters.validate()?;
        if req.top == 0 || req.top > MAX_K {
            return Err(EngineError::InvalidArgument {
                field: "top",
                reason: format!("{} is not in 1..={MAX_K}", req.top),
            });
        }
        let pos: Vec<Vec<f32>> = like
            .iter()
            .map(|id| self.current_vector(id))
            .collect::<Result<_>>()?;
        let neg: Vec<Vec<f32>> = unlike
            .iter()
            .map(|id| self.current_vector(id))
            .collect::<Result<_>>()?;
        let per_example = (req.top * 10).clamp(50, MAX_K);
        let mut candidates: HashSet<String> = HashSet::new();
        {
            let live = read(&self.live);
            for v in &pos {
                for (id, _) in live.search(v, per_example, None) {
                    if !exclude.contains(id.as_ref()) {
                        candidates.insert(id.to_string());
                    }
                }
            }
        }
        let score = |v: &[f32], set: &[Vec<f32>]| -> f64 {
            if set.is_empty() {
                return 0.0;
            }
            set.iter()
                .map(|e| 1.0 / (1.0 + f64::from(crate::embed::l2(v, e))))
                .sum::<f64>()
                / set.len() as f64
        };
        let mut scored: Vec<(f64, String)> = {
            let live = read(&self.live);
            candidates
                .into_iter()
                .filter_map(|id| {
                    let v = &live.current(&id)?.vector;
                    Some((score(v, &pos) - score(v, &neg), id))
                })
                .collect()
        };
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out = Vec::new();
        for (s, id) in scored {
            if out.len() == req.top {
                break;
            }
            let r = self.object(&id)?;
            if !req.filters.admits(r.detections.len(), r.meta.last_mjd, &r) {
                continue;
            }
            let label = self
                .primary_labels_of(&[id.as_str()], [Some(&r)])?
                .pop()
                .flatten();
            let Some(class) = self.class_if_admitted(&id, label, &req.filters)? else {
                continue;
            };
            out.push(Recommendation {
                object_id: id,
                score: s,
                class,
                n_detections: r.detections.len(),
            });
        }
        Ok(out)
    }

    /// Which features and bands make two objects close, and which set them apart.
    pub fn explain(&self, a: &str, b: &str) -> Result<Explanation> {
        let (va, ma) = self.vector(a)?;
        let (vb, mb) = self.vector(b)?;
        Ok(science::explain(
            self.embedder.names(),
            &va,
            &vb,
            &ma,
            &mb,
            8,
        ))
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

/// Nearest candidates searched for labelled voters.
pub const VOTE_CANDIDATES: usize = 30;
/// Labelled voters used.
pub const VOTERS: usize = 10;
/// Weight of a user's votes in their anomaly ranking.
pub const PERSONAL_WEIGHT: f64 = 0.5;
const ANOMALY_SEED: u64 = 7;
/// How stale anomaly scores may be while ingest runs (see [`Engine::anomalies`]).
pub const ANOMALY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// The mean of the brokers' SN Ia probabilities in an object's annotations, if any.
fn snia_score(r: &ObjectRecord) -> Option<f64> {
    let scores: Vec<f64> = ["rf_snia_vs_nonia", "snn_snia_vs_nonia"]
        .iter()
        .filter_map(|k| match r.annotations.get(*k).map(|a| &a.value) {
            Some(AnnotationValue::Number(x)) if (0.0..=1.0).contains(x) => Some(*x),
            _ => None,
        })
        .collect();
    (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
}

/// A labelled neighbour that voted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Voter {
    pub object_id: String,
    pub class: String,
    pub source: String,
    pub distance: f32,
}

/// The answer of [`Engine::classify`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Classification {
    pub object_id: String,
    pub class: Option<String>,
    pub confidence: f64,
    pub probabilities: BTreeMap<String, f64>,
    /// `vote`, `propagation` or `none`.
    pub method: &'static str,
    pub voters: Vec<Voter>,
    pub packet_snia_score: Option<f64>,
    /// The object's own labels, if it has any.
    pub labels: Vec<Label>,
}

/// What a label import did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LabelImport {
    pub imported: usize,
    pub classes: BTreeMap<String, usize>,
    pub unknown_objects: Vec<String>,
}

/// [`Engine::evaluate`]'s figures and the labelled objects not in the store.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvaluationReport {
    #[serde(flatten)]
    pub evaluation: Evaluation,
    pub missing: usize,
}

#[derive(Debug, Clone, Default)]
pub struct AnomalyQuery {
    pub top: usize,
    pub since: Option<f64>,
    pub user: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnomalyScore {
    pub object_id: String,
    pub score: f64,
    pub lof: f64,
    pub isolation: f64,
}

#[derive(Debug, Clone, Default)]
pub struct RecommendQuery {
    pub like: Vec<String>,
    pub unlike: Vec<String>,
    pub user: Option<String>,
    pub top: usize,
    pub filters: Filters,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendation {
    pub object_id: String,
    pub score: f64,
    pub class: Option<String>,
    pub n_detections: usize,
}

/// What `reindex` did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReindexReport {
    pub objects: usize,
    pub versions: usize,
    pub dim: usize,
}

/// Components of the kNN graph and KMeans clusters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterReport {
    pub objects: usize,
    /// Sizes of the connected components of the kNN graph, largest first.
    pub component_sizes: Vec<usize>,
    pub k: usize,
    pub clusters: Vec<graph::Cluster>,
}

/// The raw features of `entries` as an n × dim matrix (`NaN` where undefined).
fn raw_matrix(entries: &[Entry], dim: usize) -> Array2<f64> {
    matrix_of(entries.iter().map(|e| &e.3), dim)
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

fn index_dir(db: &Path) -> PathBuf {
    db.join("index")
}

/// Every object's latest stored vector version, as index entries.
fn current_entries(store: &Store) -> Result<Vec<Entry>> {
    // Vector keys are the object id, a 0 byte, then the sequence number big-endian: an
    // object's versions are adjacent and in order, so its last one is its current one.
    let mut out: Vec<Entry> = Vec::new();
    store.for_each_vector(|id, seq, v| match out.last_mut() {
        Some(last) if last.0 == id => {
            if seq >= last.1 {
                (last.1, last.2, last.3) = (seq, v.point, v.raw);
            }
        }
        _ => out.push((id.to_string(), seq, v.point, v.raw)),
    })?;
    Ok(out)
}

/// What one atomic batch did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub new_objects: Vec<String>,
    pub changed_objects: Vec<String>,
    pub alerts_duplicate: u64,
    pub detections_added: u64,
}

/// Totals of an ingest that spans several inputs and batches: an object created by one batch
/// and updated by a later one counts once, as new.
#[derive(Debug, Default)]
pub struct IngestTally {
    report: IngestReport,
    new_objects: HashSet<String>,
    changed: HashSet<String>,
}

impl IngestTally {
    pub fn add_rejects(&mut self, rejects: Vec<crate::alert::Reject>) {
        self.report.alerts_rejected += rejects.len() as u64;
        self.report
            .rejects
            .extend(rejects.into_iter().map(|r| RejectReport {
                source: r.source,
                reason: r.error.to_string(),
            }));
    }

    /// Counts a committed batch of `alerts` alerts.
    pub fn add_batch(&mut self, alerts: usize, outcome: BatchOutcome) {
        self.report.alerts_read += alerts as u64;
        self.report.alerts_duplicate += outcome.alerts_duplicate;
        self.report.detections_added += outcome.detections_added;
        self.new_objects.extend(outcome.new_objects);
        self.changed.extend(outcome.changed_objects);
    }

    pub fn report(&self) -> &IngestReport {
        &self.report
    }

    pub fn finish(mut self) -> IngestReport {
        self.report.objects_new = self.new_objects.len() as u64;
        self.report.objects_updated = self.changed.difference(&self.new_objects).count() as u64;
        let mut changed: Vec<String> = self.changed.into_iter().collect();
        changed.sort();
        self.report.changed_objects = changed;
        self.report
    }
}

/// An ingest in progress; see [`Engine::session`].
pub struct IngestSession<'a> {
    engine: &'a Engine,
    tally: IngestTally,
}

impl IngestSession<'_> {
    /// Stores one input's alerts and records its rejects.
    pub fn add(&mut self, decoded: Decoded) -> Result<()> {
        self.tally.add_rejects(decoded.rejects);
        for chunk in decoded.alerts.chunks(self.engine.config.batch_size) {
            let outcome = self.engine.apply(chunk)?;
            self.tally.add_batch(chunk.len(), outcome);
        }
        Ok(())
    }

    pub fn report(&self) -> &IngestReport {
        self.tally.report()
    }

    pub fn finish(self) -> IngestReport {
        self.tally.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reverse graph kept in memory batch by batch equals the one read from the stored
    /// lists (as at open), after many small batches of relinks and the refits between them,
    /// and a reopen between them.
    #[test]
    fn the_reverse_graph_follows_the_stored_lists() {
        check_lists_after_small_batches(EngineConfig::default());
    }

    /// The same with every refit running beside the engine while batches go on; after
    /// `checkpoint` (which installs the last one), every indexed vector is its object's
    /// stored raw vector under the stored spec.
    #[test]
    fn refits_beside_the_engine_leave_the_same_graph() {
        let dir = check_lists_after_small_batches(EngineConfig {
            background_refit_from: 0,
            ..EngineConfig::default()
        });
        let engine = Engine::open(dir.path(), EngineConfig::default()).expect("reopen");
        let spec = engine.store.spec().expect("spec").expect("a spec");
        assert!(spec.version >= 2, "spec version {}", spec.version);
        assert_eq!(spec.version, engine.spec().version);
        let (ids, vectors) = engine.vectors();
        for (id, v) in ids.iter().zip(&vectors) {
            let versions = engine.store.vector_versions(id).expect("versions");
            let (_, latest) = versions.last().expect("a version");
            assert_eq!(&crate::index::live::scale(&spec, &latest.raw), v, "{id}");
        }
    }

    fn check_lists_after_small_batches(config: EngineConfig) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path(), config.clone()).expect("open");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let (files, _) = crate::source::expand(&[root.join("ztf"), root.join("lightcurves")]);
        let mut alerts: Vec<Alert> = files
            .iter()
            .flat_map(|f| crate::source::decode_file(f, &Default::default()).alerts)
            .collect();
        alerts.sort_by(|a, b| a.mjd.total_cmp(&b.mjd));
        let (earlier, last) = alerts.split_at(alerts.len() - 40);
        for chunk in earlier.chunks(40) {
            engine.apply(chunk).expect("apply");
        }
        // Reopened, the graph loads in the background: closing at once stops the load (or
        // the next open would find the store locked), and the first write waits for it.
        drop(engine);
        drop(Engine::open(dir.path(), config.clone()).expect("reopen"));
        let engine = Engine::open(dir.path(), config).expect("reopen");
        let (ids, _) = engine.vectors();
        assert_eq!(engine.similar(&ids[0], 5, None).expect("query").len(), 5);
        engine.apply(last).expect("apply after reopen");
        engine.checkpoint().expect("checkpoint");
        assert!(
            engine.indexed() > 100,
            "{} objects indexed",
            engine.indexed()
        );
        let from_store = reverse::ReverseGraph::from_store(&engine.store, &AtomicBool::new(false))
            .expect("lists");
        let kept = engine.listed_by.get(&engine.store).expect("graph").to_map();
        assert!(kept.len() > 100);
        assert_eq!(kept, from_store.to_map());

        // The patched lists still name each object's nearest neighbours (against exact search
        // over the current vectors; the lists were found by HNSW search, hence not 1.0).
        let (ids, vectors) = engine.vectors();
        let points = crate::index::numbered(vectors);
        let (mut hits, mut total) = (0, 0);
        for (i, id) in ids.iter().enumerate() {
            let truth: Vec<&str> =
                crate::index::exact_knn(&points, &points[i].1, GRAPH_K, &|p| p as usize != i)
                    .iter()
                    .map(|h| ids[h.point as usize].as_str())
                    .collect();
            let list = engine.neighbours(id).expect("list");
            assert_eq!(list.len(), GRAPH_K.min(ids.len() - 1), "{id}");
            hits += list
                .iter()
                .filter(|n| truth.contains(&n.object_id.as_str()))
                .count();
            total += truth.len();
        }
        let recall = hits as f64 / total as f64;
        assert!(recall > 0.95, "graph recall@10 {recall}");
        dir
    }
}
