//! The engine: owns the store and the live index, and exposes ingest and query operations.
//!
//! Operations take decoded [`Alert`]s, not files or sockets, so the CLI, the gRPC server and a
//! future Kafka consumer all ingest through [`Engine::ingest`]. Writes are serialised by one lock;
//! each batch of alerts becomes one atomic store write holding the merged objects, their new
//! embedding versions and the refreshed neighbour lists, so a batch is queryable when it
//! returns. Imports `model`, `alert`, `embed`, `store`, `index`, `graph`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ndarray::Array2;
use rayon::prelude::*;
use serde::Serialize;

use crate::alert::Decoded;
use crate::embed::{Embedder, EmbeddingSpec};
use crate::graph::{self, GraphError, GRAPH_K};
use crate::index::live::{scale, Entry, LiveIndex};
use crate::index::{exact_knn, HnswIndex, HnswParams, IndexError, PointId, VectorInsert};
use crate::model::{Alert, Neighbour, ObjectRecord, Survey, VectorVersion};
use crate::store::{Batch, Counts, Store, StoreConfig, StoreError};

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: StoreConfig::default(),
            batch_size: 1000,
            hnsw: HnswParams::default(),
            rebuild_tombstone_ratio: 1.0,
        }
    }
}

/// The scaler is first fitted at this many embedded objects, then refitted each time their
/// number doubles (so O(log n) refits over a store's life, each re-scaling every vector).
pub const MIN_OBJECTS_TO_FIT: u64 = 32;

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
    store: Store,
    writer: Mutex<()>,
    config: EngineConfig,
    embedder: Embedder,
    live: Arc<RwLock<LiveIndex>>,
    /// Who lists each object among its neighbours (the reverse kNN graph).
    listed_by: Mutex<HashMap<String, HashSet<String>>>,
    origin: IndexOrigin,
    spec_outdated: bool,
    rebuilding: Arc<AtomicBool>,
    rebuild_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
            LiveIndex::load(spec.clone(), config.hnsw.clone(), &dir, &d, entries.clone())
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
        let mut listed_by: HashMap<String, HashSet<String>> = HashMap::new();
        store.for_each_neighbours(|id, list| {
            for n in list {
                listed_by
                    .entry(n.object_id)
                    .or_default()
                    .insert(id.to_string());
            }
        })?;
        tracing::info!(?origin, vectors = live.len(), "index ready");
        Ok(Engine {
            store,
            writer: Mutex::new(()),
            config,
            embedder,
            live: Arc::new(RwLock::new(live)),
            listed_by: Mutex::new(listed_by),
            origin,
            spec_outdated,
            rebuilding: Arc::new(AtomicBool::new(false)),
            rebuild_thread: Mutex::new(None),
        })
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
            report: IngestReport::default(),
            new_objects: HashSet::new(),
            changed: HashSet::new(),
        }
    }

    /// Merges one batch of alerts into the store in one atomic write.
    pub fn apply(&self, alerts: &[Alert]) -> Result<BatchOutcome> {
        // A poisoned lock only means another writer panicked; the store itself is consistent.
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
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
        self.embed_and_link(&changed_records, total_objects, &mut batch)?;
        batch.objects = changed_records;
        self.store.write(&batch)?;
        self.note_lists(&batch.neighbours);
        tracing::debug!(
            alerts = alerts.len(),
            objects = batch.objects.len(),
            "committed batch"
        );
        self.maybe_rebuild_in_background();
        Ok(outcome)
    }

    /// Embeds the changed objects, updates the live index (refitting the scaler when the store
    /// has doubled) and recomputes the affected neighbour lists, all into `batch`.
    fn embed_and_link(
        &self,
        changed: &[ObjectRecord],
        total_objects: u64,
        batch: &mut Batch,
    ) -> Result<()> {
        if changed.is_empty() {
            return Ok(());
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

        let fitted_on = read(&self.live).spec.fitted_on;
        let refit = total_objects >= MIN_OBJECTS_TO_FIT && total_objects >= 2 * fitted_on.max(1);
        let affected: Vec<String> = if refit {
            let spec = self.refit_with(&entries, batch)?;
            self.rebuild_now(spec, entries)?;
            let live = read(&self.live);
            live.objects().map(|(id, _)| id.to_string()).collect()
        } else {
            let ids: Vec<String> = entries.iter().map(|e| e.0.clone()).collect();
            write(&self.live).upsert(entries);
            self.affected_by(&ids)
        };
        batch.neighbours = self.lists_for(&affected);
        Ok(())
    }

    /// Fits a new scaler on every object's latest raw features (stored ones overridden by
    /// `fresh`), recording the spec in `batch`.
    fn refit_with(&self, fresh: &[Entry], batch: &mut Batch) -> Result<EmbeddingSpec> {
        let mut latest: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for (id, _, _, raw) in current_entries(&self.store)? {
            latest.insert(id, raw);
        }
        for (id, _, _, raw) in fresh {
            latest.insert(id.clone(), raw.clone());
        }
        let dim = self.embedder.dim();
        let mut rows = Array2::<f64>::zeros((latest.len(), dim));
        for (i, raw) in latest.values().enumerate() {
            for (j, x) in raw.iter().enumerate() {
                rows[[i, j]] = f64::from(*x);
            }
        }
        let spec = read(&self.live).spec.refit(&rows);
        tracing::info!(
            objects = latest.len(),
            version = spec.version,
            "refitted the scaler"
        );
        batch.spec = Some(spec.clone());
        Ok(spec)
    }

    /// Rebuilds the index synchronously with `spec`, over the stored current vectors and `fresh`.
    fn rebuild_now(&self, spec: EmbeddingSpec, fresh: Vec<Entry>) -> Result<()> {
        let mut all: BTreeMap<String, Entry> = BTreeMap::new();
        for e in current_entries(&self.store)? {
            all.insert(e.0.clone(), e);
        }
        for e in fresh {
            all.insert(e.0.clone(), e);
        }
        let rebuilt =
            LiveIndex::build(spec, self.config.hnsw.clone(), all.into_values().collect())?;
        *write(&self.live) = rebuilt;
        Ok(())
    }

    /// Objects whose lists may change when `moved` objects moved: themselves, whoever listed
    /// them, and their new nearest neighbours.
    fn affected_by(&self, moved: &[String]) -> Vec<String> {
        let mut out: HashSet<String> = moved.iter().cloned().collect();
        {
            let listed_by = lock(&self.listed_by);
            for id in moved {
                if let Some(who) = listed_by.get(id) {
                    out.extend(who.iter().cloned());
                }
            }
        }
        let live = read(&self.live);
        let near: Vec<String> = moved
            .par_iter()
            .flat_map_iter(|id| {
                live.current(id)
                    .map(|c| live.search(&c.vector, GRAPH_K, Some(id)))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(n, _)| n.to_string())
            })
            .collect();
        out.extend(near);
        let mut out: Vec<String> = out.into_iter().collect();
        out.sort();
        out
    }

    /// Fresh neighbour lists for `ids`, by index search.
    fn lists_for(&self, ids: &[String]) -> Vec<(String, Vec<Neighbour>)> {
        let live = read(&self.live);
        ids.par_iter()
            .filter_map(|id| {
                let c = live.current(id)?;
                let list = live
                    .search(&c.vector, GRAPH_K, Some(id))
                    .into_iter()
                    .map(|(n, d)| Neighbour {
                        object_id: n.to_string(),
                        distance: d,
                    })
                    .collect();
                Some((id.clone(), list))
            })
            .collect()
    }

    /// Updates the reverse graph after neighbour lists were written.
    fn note_lists(&self, lists: &[(String, Vec<Neighbour>)]) {
        if lists.is_empty() {
            return;
        }
        let mut listed_by = lock(&self.listed_by);
        let rewritten: HashSet<&str> = lists.iter().map(|(id, _)| id.as_str()).collect();
        for who in listed_by.values_mut() {
            who.retain(|w| !rewritten.contains(w.as_str()));
        }
        for (id, list) in lists {
            for n in list {
                listed_by
                    .entry(n.object_id.clone())
                    .or_default()
                    .insert(id.clone());
            }
        }
    }

    /// Starts a background rebuild when tombstones pass the threshold; the new graph is swapped
    /// in atomically, with the vectors that arrived meanwhile added first.
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

    /// Writes the index to `<db>/index/` and records what it covers, so the next open loads it
    /// instead of rebuilding. Older dumps are removed.
    pub fn checkpoint(&self) -> Result<()> {
        let _guard = lock(&self.writer);
        self.wait_for_rebuild();
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
        let mut rows = Array2::<f64>::zeros((current.len(), dim));
        for (i, e) in current.iter().enumerate() {
            for (j, x) in e.3.iter().enumerate() {
                rows[[i, j]] = f64::from(*x);
            }
        }
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
        *lock(&self.listed_by) = HashMap::new();
        self.note_lists(&batch.neighbours);
        Ok(ReindexReport {
            objects: records.len(),
            versions,
            dim,
        })
    }

    /// The `k` objects most similar to `object_id`, nearest first, the object itself excluded.
    /// With `as_of`, the embeddings every object had at that MJD are searched exactly.
    pub fn similar(&self, object_id: &str, k: usize, as_of: Option<f64>) -> Result<Vec<Neighbour>> {
        if k == 0 || k > MAX_K {
            return Err(EngineError::InvalidArgument {
                field: "k",
                reason: format!("{k} is not in 1..={MAX_K}"),
            });
        }
        if self.spec_outdated {
            return Err(EngineError::SpecOutdated);
        }
        if let Some(t) = as_of {
            return self.similar_as_of(object_id, k, t);
        }
        let live = read(&self.live);
        let Some(c) = live.current(object_id) else {
            self.object(object_id)?;
            return Err(EngineError::NoEmbedding {
                object_id: object_id.to_string(),
                as_of: None,
            });
        };
        Ok(live
            .search(&c.vector, k, Some(object_id))
            .into_iter()
            .map(|(id, d)| Neighbour {
                object_id: id.to_string(),
                distance: d,
            })
            .collect())
    }

    fn similar_as_of(&self, object_id: &str, k: usize, t: f64) -> Result<Vec<Neighbour>> {
        self.object(object_id)?;
        let spec = self.spec();
        // Each object's latest version that was valid at `t`.
        let mut at: BTreeMap<String, VectorVersion> = BTreeMap::new();
        self.store.for_each_vector(|id, _, v| {
            if v.from_mjd <= t {
                at.insert(id.to_string(), v);
            }
        })?;
        let query = at.get(object_id).ok_or_else(|| EngineError::NoEmbedding {
            object_id: object_id.to_string(),
            as_of: Some(t),
        })?;
        let query = scale(&spec, &query.raw);
        let ids: Vec<&String> = at.keys().collect();
        let points: Vec<(PointId, Vec<f32>)> = at
            .values()
            .enumerate()
            .map(|(i, v)| (i as PointId, scale(&spec, &v.raw)))
            .collect();
        let own = ids.iter().position(|id| id.as_str() == object_id);
        let hits = exact_knn(points.par_iter(), &query, k, &|p| Some(p as usize) != own);
        Ok(hits
            .into_iter()
            .map(|h| Neighbour {
                object_id: ids[h.point as usize].clone(),
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

    /// The stored neighbour list of an object (the kNN graph).
    pub fn neighbours(&self, object_id: &str) -> Result<Vec<Neighbour>> {
        match self.store.neighbours(object_id)? {
            Some(list) => Ok(list),
            None => {
                self.object(object_id)?;
                Ok(Vec::new())
            }
        }
    }

    /// Every current vector, in object-id order: ids, surveys and an n × dim matrix.
    pub fn matrix(&self) -> Result<(Vec<String>, Array2<f64>)> {
        let live = read(&self.live);
        let mut rows: Vec<(&Arc<str>, &Vec<f32>)> =
            live.objects().map(|(id, c)| (id, &c.vector)).collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        let dim = self.embedder.dim();
        let mut m = Array2::<f64>::zeros((rows.len(), dim));
        for (i, (_, v)) in rows.iter().enumerate() {
            for (j, x) in v.iter().enumerate() {
                m[[i, j]] = f64::from(*x);
            }
        }
        Ok((rows.iter().map(|(id, _)| id.to_string()).collect(), m))
    }

    /// Connected components of the kNN graph and KMeans clusters of the embeddings.
    pub fn clusters(&self, k: Option<usize>, seed: u64) -> Result<ClusterReport> {
        let mut lists = BTreeMap::new();
        self.store.for_each_neighbours(|id, list| {
            lists.insert(id.to_string(), list);
        })?;
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

fn index_dir(db: &Path) -> PathBuf {
    db.join("index")
}

/// Every object's latest stored vector version, as index entries.
fn current_entries(store: &Store) -> Result<Vec<Entry>> {
    let mut latest: BTreeMap<String, (u32, VectorVersion)> = BTreeMap::new();
    store.for_each_vector(|id, seq, v| {
        latest.insert(id.to_string(), (seq, v));
    })?;
    Ok(latest
        .into_iter()
        .map(|(id, (seq, v))| (id, seq, v.point, v.raw))
        .collect())
}

/// What one atomic batch did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub new_objects: Vec<String>,
    pub changed_objects: Vec<String>,
    pub alerts_duplicate: u64,
    pub detections_added: u64,
}

/// An ingest in progress; see [`Engine::session`].
pub struct IngestSession<'a> {
    engine: &'a Engine,
    report: IngestReport,
    new_objects: HashSet<String>,
    changed: HashSet<String>,
}

impl IngestSession<'_> {
    /// Stores one input's alerts and records its rejects.
    pub fn add(&mut self, decoded: Decoded) -> Result<()> {
        self.report.alerts_rejected += decoded.rejects.len() as u64;
        self.report
            .rejects
            .extend(decoded.rejects.into_iter().map(|r| RejectReport {
                source: r.source,
                reason: r.error.to_string(),
            }));
        for chunk in decoded.alerts.chunks(self.engine.config.batch_size) {
            let outcome = self.engine.apply(chunk)?;
            self.report.alerts_read += chunk.len() as u64;
            self.report.alerts_duplicate += outcome.alerts_duplicate;
            self.report.detections_added += outcome.detections_added;
            self.new_objects.extend(outcome.new_objects);
            self.changed.extend(outcome.changed_objects);
        }
        Ok(())
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
