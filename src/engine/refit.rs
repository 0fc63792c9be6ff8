//! Refitting the scaler beside the engine, on a large store.
//!
//! When the store has doubled, the scaler is refitted on every object's raw features and every
//! vector re-scaled: the index is rebuilt and every neighbour list searched again. On a large
//! store that takes minutes (642 s at 524,288 objects on the 2-core benchmark machine), too
//! long to hold the writer. So [`PendingRefit`] takes a snapshot of the current entries under
//! the writer lock, fits the spec, builds the index and the lists and their reverse graph on a
//! thread of its own, while batches go on under the old spec; each batch's entries are logged.
//! The engine installs the result under the writer lock: the logged entries are replayed
//! into the new index and the lists they touch patched (as a batch patches them), then the
//! spec and every list are written in one batch, and the new index swapped in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::lists;
use super::reverse::ReverseGraph;
use crate::embed::EmbeddingSpec;
use crate::index::live::{Entry, LiveIndex};
use crate::index::HnswParams;
use crate::model::Neighbour;

/// What a refit built: the index under the new spec, every object's list in it, and who
/// lists whom.
pub(super) struct Refitted {
    pub live: LiveIndex,
    pub lists: HashMap<String, Vec<Neighbour>>,
    pub reverse: ReverseGraph,
}

/// A refit running beside the engine; see the module doc. Dropping it stops the refit at
/// its next step and waits for the thread.
pub(super) struct PendingRefit {
    handle: Option<JoinHandle<Option<Refitted>>>,
    cancel: Arc<AtomicBool>,
    /// The spec version the refit replaces: if a reindex replaced it meanwhile, the result
    /// is stale.
    pub from_version: u64,
    /// Entries upserted into the engine's index since the snapshot, in order.
    pub log: Vec<Entry>,
}

impl PendingRefit {
    /// Starts refitting `old` on `entries` (every object's current raw features).
    pub fn start(entries: Vec<Entry>, old: EmbeddingSpec, params: HnswParams) -> PendingRefit {
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&cancel);
        let from_version = old.version;
        let run = move || -> Option<Refitted> {
            let started = std::time::Instant::now();
            let rows = super::raw_matrix(&entries, old.feature_names.len());
            let spec = old.refit(&rows);
            let objects = entries.len();
            let live = LiveIndex::build(spec, params, entries)
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
                for n in list {
                    reverse.add(&n.object_id, id);
                }
            }
            tracing::info!(
                objects,
                version = live.spec.version,
                seconds = started.elapsed().as_secs_f64(),
                "refit built beside the engine"
            );
            Some(Refitted {
                live,
                lists,
                reverse,
            })
        };
        let handle = std::thread::Builder::new()
            .name("refit".into())
            .spawn(run)
            .map_err(|e| tracing::warn!("refit: no thread: {e}"))
            .ok();
        PendingRefit {
            handle,
            cancel,
            from_version,
            log: Vec::new(),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the refit; `None` if it failed. Returns the log with it.
    pub fn join(mut self) -> (Option<Refitted>, Vec<Entry>) {
        let done = self.handle.take().and_then(|h| h.join().ok().flatten());
        (done, std::mem::take(&mut self.log))
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
