//! Refitting the scaler beside the engine, on a large store.
//!
//! When the store has doubled, the scaler is refitted on every object's raw features and every
//! vector re-scaled: the index is rebuilt and every neighbour list searched again. On a large
//! store that takes minutes (BENCHMARKS.md, "Refits beside the engine"), too long to hold the
//! writer. So [`PendingRefit`] takes a snapshot of the current entries under
//! the writer lock, fits the spec, builds the index and the lists and their reverse graph on a
//! thread of its own, while batches go on under the old spec; each batch's entries are logged.
//! Once built, the thread replays the logged entries into the new index and patches the lists
//! they touch (as a batch patches them), round after round until a round is short (or no
//! shorter than the one before). The engine
//! installs the result under the writer lock: it replays what was logged after the last round
//! (about one batch), writes the spec and every list in one batch and swaps the new index in.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::{
    current_entries, lock, raw_matrix, read, write, ChangeEvent, Engine, Result, MIN_OBJECTS_TO_FIT,
};
use crate::embed::EmbeddingSpec;
use crate::graph::lists;
use crate::graph::reverse::ReverseGraph;
use crate::index::live::{Entry, LiveIndex};
use crate::index::IndexConfig;
use crate::model::Neighbour;
use crate::store::Batch;

/// A thread pool of its own for work beside the engine (half the cores), so that the batches'
/// parallel work on rayon's global pool does not queue behind it; `None` if none can be made.
pub(super) fn background_pool() -> Option<rayon::ThreadPool> {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    rayon::ThreadPoolBuilder::new()
        .num_threads((cores / 2).max(1))
        .thread_name(|i| format!("beside-{i}"))
        .build()
        .map_err(|e| tracing::warn!("no thread pool for work beside the engine: {e}"))
        .ok()
}

/// The thread stops replaying the log once a round replays fewer entries than this (about
/// one batch's worth arrives while it does); the install replays the rest.
const SHORT_ROUND: usize = 2000;

/// What a refit built: the index under the new spec, every object's list in it, and who
/// lists whom.
pub(super) struct Refitted {
    pub live: LiveIndex,
    pub lists: HashMap<String, Vec<Neighbour>>,
    pub reverse: ReverseGraph,
}

impl Refitted {
    /// Puts `log` (entries in the order they were made) into the index and patches the lists
    /// they touch. Returns how many objects moved.
    pub fn replay(&mut self, log: Vec<Entry>) -> Result<usize> {
        let mut moved: Vec<String> = log.iter().map(|e| e.object_id.clone()).collect();
        moved.sort_unstable();
        moved.dedup();
        self.live.upsert(log);
        let (patched, mut replaced) = lists::relink(&self.live, &self.reverse, &moved, |keys| {
            Ok(keys.iter().map(|k| self.lists.get(*k).cloned()).collect())
        })?;
        self.reverse.update(&mut replaced, &patched);
        self.lists.extend(patched);
        Ok(moved.len())
    }
}

/// A refit running beside the engine; see the module doc. Dropping it stops the refit at
/// its next step and waits for the thread.
pub(super) struct PendingRefit {
    handle: Option<JoinHandle<Option<Refitted>>>,
    cancel: Arc<AtomicBool>,
    /// The spec version the refit replaces: if a reindex replaced it meanwhile, the result
    /// is stale.
    pub from_version: u64,
    /// Entries upserted into the engine's index since the snapshot and not replayed yet, in
    /// order.
    log: Arc<Mutex<Vec<Entry>>>,
}

impl PendingRefit {
    /// Starts refitting `old` on `entries` (every object's current raw features).
    pub fn start(entries: Vec<Entry>, old: EmbeddingSpec, index: IndexConfig) -> PendingRefit {
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&cancel);
        let log: Arc<Mutex<Vec<Entry>>> = Arc::default();
        let logged = Arc::clone(&log);
        let from_version = old.version;
        let run = move || -> Option<Refitted> {
            let started = std::time::Instant::now();
            let rows = super::raw_matrix(&entries, old.feature_names.len());
            let spec = old.refit(&rows);
            let objects = entries.len();
            let live = LiveIndex::build(spec, index, entries)
                .map_err(|e| tracing::warn!("refit: index build failed: {e}"))
                .ok()?;
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let ids: Vec<String> = live.objects().map(|(id, _)| id.to_string()).collect();
            let lists: HashMap<String, Vec<Neighbour>> =
                lists::search(&live, &ids).into_iter().collect();
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let mut reverse = ReverseGraph::default();
            for (id, list) in &lists {
                reverse.add_list(id, list);
            }
            tracing::info!(
                objects,
                version = live.spec.version,
                seconds = started.elapsed().as_secs_f64(),
                "refit built beside the engine"
            );
            let mut done = Refitted {
                live,
                lists,
                reverse,
            };
            // Stop once a round is short, or no shorter than the last (ingest outpaces the
            // replay): the install replays what remains.
            let mut last = usize::MAX;
            loop {
                let round = std::mem::take(&mut *lock(&logged));
                let n = round.len();
                if n > 0 {
                    done.replay(round)
                        .map_err(|e| tracing::warn!("refit: replay failed: {e}"))
                        .ok()?;
                }
                if n < SHORT_ROUND || n >= last || stop.load(Ordering::Relaxed) {
                    break;
                }
                last = n;
            }
            Some(done)
        };
        let handle = std::thread::Builder::new()
            .name("refit".into())
            .spawn(|| match background_pool() {
                Some(pool) => pool.install(run),
                None => run(),
            })
            .map_err(|e| tracing::warn!("refit: no thread: {e}"))
            .ok();
        PendingRefit {
            handle,
            cancel,
            from_version,
            log,
        }
    }

    /// Logs entries just upserted into the engine's index.
    pub fn log(&self, entries: &[Entry]) {
        lock(&self.log).extend(entries.iter().cloned());
    }

    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the refit; `None` if it failed. Returns the entries it has not replayed.
    pub fn join(mut self) -> (Option<Refitted>, Vec<Entry>) {
        let done = self.handle.take().and_then(|h| h.join().ok().flatten());
        (done, std::mem::take(&mut *lock(&self.log)))
    }
}

impl Drop for PendingRefit {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.cancel.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
    }
}

impl Engine {
    /// Whether the store has doubled since the scaler was fitted: `Some(true)` when the refit
    /// is to run beside the engine, `Some(false)` inside the batch.
    pub(super) fn refit_due(&self, total_objects: u64) -> Option<bool> {
        let fitted_on = read(&self.live).spec.fitted_on;
        (total_objects >= MIN_OBJECTS_TO_FIT && total_objects >= 2 * fitted_on.max(1))
            .then_some(total_objects >= self.config.background_refit_from)
    }

    /// Starts a refit beside the engine on every object's current vector (the writer lock is
    /// held, and the store holds the last batch).
    pub(super) fn start_refit(&self) -> Result<()> {
        let entries = current_entries(&self.store)?;
        let (spec, index) = {
            let live = read(&self.live);
            (EmbeddingSpec::clone(&live.spec), live.config().clone())
        };
        tracing::info!(
            objects = entries.len(),
            "refitting the scaler beside the engine"
        );
        *lock(&self.refit) = Some(PendingRefit::start(entries, spec, index));
        Ok(())
    }

    /// Installs a refit that ran beside the engine, once it is done (with `wait`, waits for
    /// it): replays the entries logged since its last round into its index, patches the lists
    /// they touch, writes the spec and every list in one batch and swaps the index in. The
    /// writer lock is held.
    pub(super) fn install_refit(&self, wait: bool) -> Result<()> {
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
        let mut batch = Batch {
            spec: Some(EmbeddingSpec::clone(&done.live.spec)),
            neighbours: done.lists.into_iter().collect(),
            ..Batch::default()
        };
        // Every list is rewritten, those of objects waiting for a deferred relink too.
        self.write_all_lists(&mut batch)?;
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
    pub(super) fn refit_and_rebuild(&self, fresh: Vec<Entry>, batch: &mut Batch) -> Result<()> {
        let mut all: BTreeMap<String, Entry> = BTreeMap::new();
        for e in current_entries(&self.store)?.into_iter().chain(fresh) {
            all.insert(e.object_id.clone(), e);
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
        let index = read(&self.live).config().clone();
        let rebuilt = LiveIndex::build(spec, index, entries)?;
        *write(&self.live) = rebuilt;
        Ok(())
    }
}
