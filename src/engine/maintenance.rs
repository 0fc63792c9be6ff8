//! Maintenance of the index and the store: tombstone rebuilds in the background, checkpoints
//! (the index dump) and `reindex` (every object re-embedded with the current feature list).
//! Imports `embed`, `index`, `model`, `store`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use super::{index_dir, lock, raw_matrix, read, write, ChangeEvent, Engine};
use super::{refit, Result};
use crate::embed::{group_weights, EmbeddingSpec};
use crate::index::live::{Entry, Facts, LiveIndex};
use crate::index::{IndexConfig, PointId, VectorInsert};
use crate::model::{ObjectRecord, VectorVersion};
use crate::store::{Batch, NewVersion};

/// Objects `reindex` reads and embeds at a time (a few in unit tests, so that they cross
/// chunks).
pub(super) const REINDEX_CHUNK: usize = if cfg!(test) { 7 } else { 20_000 };

impl Engine {
    /// Starts a background rebuild when tombstones (with USearch, points removed since the
    /// graph was built: `LiveIndex::worn`) pass the threshold (on a thread pool of its
    /// own); the new graph is swapped in atomically, with the vectors that arrived meanwhile
    /// added first.
    pub(super) fn maybe_rebuild_in_background(&self) {
        let (tomb, live_n) = {
            let live = read(&self.live);
            (live.worn(), live.len())
        };
        let threshold = (live_n as f64 * self.config.rebuild_tombstone_ratio).max(1000.0);
        if (tomb as f64) < threshold || self.rebuilding.swap(true, Ordering::SeqCst) {
            return;
        }
        let live = Arc::clone(&self.live);
        let flag = Arc::clone(&self.rebuilding);
        let handle = std::thread::spawn(move || {
            let pool = refit::background_pool();
            let run = || {
                let (snapshot, spec_version, result) = {
                    let l = read(&live);
                    let snapshot = l.snapshot();
                    let graph = l.empty_graph(snapshot.len());
                    (snapshot, l.spec.version, graph)
                };
                let built: HashSet<PointId> = snapshot.iter().map(|(p, _)| *p).collect();
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

    /// Waits until the engine can write without a pause: the reverse graph, read from the
    /// stored lists in the background after open (seconds at 1M objects), is loaded. The first
    /// write waits for it anyway; a caller that times writes waits here first.
    pub fn wait_until_writable(&self) -> Result<()> {
        drop(self.listed_by.get(&self.store)?);
        Ok(())
    }

    /// Points in the index that no object owns any more.
    pub fn tombstones(&self) -> usize {
        read(&self.live).tombstones()
    }

    /// Writes the index to `<db>/index/` and records what it covers, so the next open loads it
    /// instead of rebuilding. Older dumps are removed. A refit running beside the engine is
    /// waited for and installed first (on a large store, minutes), so the dump has its spec.
    pub fn checkpoint(&self) -> Result<()> {
        let _guard = lock(&self.writer);
        self.install_refit(true)?;
        self.wait_for_rebuild();
        self.dump_index()
    }

    /// Writes the index dump and records it; the caller holds the writer lock.
    pub(super) fn dump_index(&self) -> Result<()> {
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
    /// the scaler on all objects and rebuilds the index and the kNN graph. The records are
    /// read and embedded [`REINDEX_CHUNK`] at a time, in parallel; the new versions, the index
    /// and every list are then written in one atomic batch (memory: every version's raw
    /// features and every list, not the lightcurves).
    pub fn reindex(&self, options: &ReindexOptions) -> Result<ReindexReport> {
        if let Some(w) = options.context_weight {
            if !(w.is_finite() && w >= 0.0) {
                return Err(super::similar::invalid(
                    "context_weight",
                    format!("{w} is not a finite weight >= 0"),
                ));
            }
        }
        let _guard = lock(&self.writer);
        // Read under the writer lock, which a reindex holds until it has recorded its own.
        let recorded = read(&self.live).config().clone();
        let index = match options.build_expansion {
            Some(n) => recorded.with_build_expansion(n)?,
            None => recorded.clone(),
        };
        // Its spec is about to be replaced: stop a refit running beside the engine.
        drop(lock(&self.refit).take());
        let mut batch = Batch::default();
        let mut next_point = self.store.next_point()?;
        let mut current: Vec<Entry> = Vec::new();
        // The records are read and re-embedded a chunk at a time, in parallel: what is kept
        // of each is its versions' raw features, not its lightcurve.
        self.for_each_object_chunk(REINDEX_CHUNK, |records| {
            self.reembed(records, &mut next_point, &mut batch, &mut current)
        })?;
        let versions = batch.vectors.len();
        batch.next_point = Some(next_point);
        let dim = self.embedder.dim();
        let rows = raw_matrix(&current, dim);
        let base = read(&self.live).spec.clone();
        let mut spec = EmbeddingSpec::initial(&self.embedder);
        spec.version = base.version;
        let context_weight = options
            .context_weight
            .unwrap_or(if base.matches(&self.embedder) {
                base.metric.context_weight
            } else {
                spec.metric.context_weight
            });
        spec.weights = group_weights(&spec.feature_names, context_weight);
        spec.metric.context_weight = context_weight;
        let spec = if current.is_empty() {
            spec
        } else {
            spec.refit(&rows)
        };
        let objects = current.len();
        self.install_spec(spec, current, batch, index.clone())?;
        // Recorded once the graph is built with it: later rebuilds and refits use it too.
        if index != recorded {
            self.store.set_index_settings(&index.settings()?)?;
        }
        let metric = if options.learn_metric {
            Some(self.learn_metric_locked()?)
        } else {
            None
        };
        Ok(ReindexReport {
            objects,
            versions,
            dim,
            context_weight,
            build_expansion: index.build_expansion(),
            metric,
        })
    }

    /// Calls `f` on every stored object's record, `size` records at a time in object-id order
    /// (the last chunk shorter, possibly empty), until its first error, which is returned.
    pub(super) fn for_each_object_chunk(
        &self,
        size: usize,
        mut f: impl FnMut(Vec<ObjectRecord>) -> Result<()>,
    ) -> Result<()> {
        let mut chunk = Vec::with_capacity(size);
        let mut failed = None;
        self.store.for_each_object(|r| {
            chunk.push(r);
            if chunk.len() == size {
                if let Err(e) = f(std::mem::take(&mut chunk)) {
                    failed = Some(e);
                    return false;
                }
            }
            true
        })?;
        match failed {
            Some(e) => Err(e),
            None => f(chunk),
        }
    }

    /// `reindex` of a chunk of records: every stored vector version of each object embedded
    /// again (in parallel) as it was then, numbered from `next_point` in record order, into
    /// `batch`; each object's current version into `current`.
    fn reembed(
        &self,
        records: Vec<ObjectRecord>,
        next_point: &mut u64,
        batch: &mut Batch,
        current: &mut Vec<Entry>,
    ) -> Result<()> {
        let embedded: Vec<Result<Vec<(u32, VectorVersion)>>> = records
            .par_iter()
            .map(|r| {
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
                Ok(stored
                    .into_iter()
                    .enumerate()
                    .map(|(i, (seq, v))| {
                        let as_of = if i == last { None } else { Some(v.from_mjd) };
                        let raw = self.embedder.raw_features(r, as_of);
                        (seq, VectorVersion { raw, ..v })
                    })
                    .collect())
            })
            .collect();
        for (r, versions) in records.into_iter().zip(embedded) {
            let versions = versions?;
            let last = versions.len() - 1;
            for (i, (seq, mut version)) in versions.into_iter().enumerate() {
                version.point = *next_point;
                if i == last {
                    current.push(Entry {
                        object_id: r.object_id.clone(),
                        seq,
                        point: *next_point,
                        facts: Facts::from(&version),
                        raw: version.raw.clone(),
                    });
                }
                batch.vectors.push(NewVersion {
                    object_id: r.object_id.clone(),
                    seq,
                    version,
                });
                *next_point += 1;
            }
        }
        Ok(())
    }

    /// Makes `spec` the store's: builds the index of `current` (every object's current
    /// vector) with it, relists every object and writes `batch` with the spec and the lists.
    /// The caller holds the writer lock.
    pub(super) fn install_spec(
        &self,
        spec: EmbeddingSpec,
        current: Vec<Entry>,
        mut batch: Batch,
        index: IndexConfig,
    ) -> Result<()> {
        batch.spec = Some(spec.clone());
        self.wait_for_rebuild();
        let ids: Vec<String> = current.iter().map(|e| e.object_id.clone()).collect();
        *write(&self.live) = LiveIndex::build(spec, index, current)?;
        batch.neighbours = self.lists_for(&ids);
        self.write_all_lists(&mut batch)?;
        self.note_lists(None, &batch.neighbours)?;
        self.notify(ChangeEvent {
            changed_objects: ids,
            relisted: batch.neighbours.iter().map(|(id, _)| id.clone()).collect(),
            ..ChangeEvent::default()
        });
        Ok(())
    }
}

/// How `reindex` weighs the feature groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReindexOptions {
    /// Weight of the context group (default: the store's, or the default for a new feature
    /// list).
    pub context_weight: Option<f64>,
    /// Then fit a metric on the stored labels (see `Engine::learn_metric`).
    pub learn_metric: bool,
    /// Candidates kept while building the graph (USearch's `expansion_add`, hnsw_rs's
    /// `ef_construction`), recorded in the store for every later build; default: the
    /// store's.
    pub build_expansion: Option<usize>,
}

/// What `reindex` did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReindexReport {
    pub objects: usize,
    pub versions: usize,
    pub dim: usize,
    pub context_weight: f64,
    /// Candidates kept while building the graph ([`ReindexOptions::build_expansion`]).
    pub build_expansion: usize,
    /// The learned metric fitted after the rebuild, when asked for.
    pub metric: Option<super::metric::MetricReport>,
}
