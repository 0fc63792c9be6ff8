//! Engine settings and the limits of its queries.

use super::{EngineError, Result};
use crate::index::{HnswParams, IndexBackend, IndexConfig, UsearchParams};
use crate::store::StoreConfig;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub store: StoreConfig,
    /// Alerts per atomic write.
    pub batch_size: usize,
    /// The index backend of a store this opens: `None` takes the one the store recorded
    /// ([`EngineConfig::new_store_index`] for a new store); `Some` for a new store records it,
    /// and on a store recorded with another backend is an error. The parameters below are
    /// those a new store records; an existing store's recorded ones win.
    pub index: Option<IndexBackend>,
    /// The backend of a new store when `index` is `None`: [`IndexBackend::default`] (USearch),
    /// or the one the environment variable [`INDEX_ENV`] names (see [`index_from_env`]).
    pub new_store_index: IndexBackend,
    pub hnsw: HnswParams,
    pub usearch: UsearchParams,
    /// Rebuild the index in the background when tombstones exceed this multiple of live points.
    pub rebuild_tombstone_ratio: f64,
    /// From this many objects, a refit of the scaler runs beside the engine (see
    /// `engine/refit.rs`) instead of inside the batch that triggers it.
    pub background_refit_from: u64,
    /// Defer each batch's relink (the re-embedded objects' lists and the lists they enter or
    /// leave) by this many batches: an object is relinked by the batch `relink_delay` after
    /// the one that first re-embedded it, once whatever the batches between re-embedded it
    /// again (0: every batch relinks its own; default [`DEFAULT_RELINK_DELAY`]). Only from
    /// [`EngineConfig::background_refit_from`] objects. Waiting objects are marked in the
    /// store; see `Engine::apply_marked`.
    pub relink_delay: u64,
}
impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: StoreConfig::default(),
            batch_size: DEFAULT_BATCH_SIZE,
            index: None,
            new_store_index: index_from_env().ok().flatten().unwrap_or_default(),
            hnsw: HnswParams::default(),
            usearch: UsearchParams::default(),
            rebuild_tombstone_ratio: 1.0,
            background_refit_from: 16_384,
            relink_delay: DEFAULT_RELINK_DELAY,
        }
    }
}
impl EngineConfig {
    pub fn validate(&self) -> Result<()> {
        self.hnsw.validate()?;
        self.usearch.validate()?;
        if self.batch_size == 0 {
            return Err(EngineError::InvalidConfig {
                field: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}
impl EngineConfig {
    /// The index configuration for `backend`, with these parameters.
    pub fn index_config(&self, backend: IndexBackend) -> IndexConfig {
        IndexConfig {
            backend,
            hnsw: self.hnsw.clone(),
            usearch: self.usearch.clone(),
        }
    }
}
/// The environment variable naming the index backend of new stores (`usearch` or `hnsw_rs`);
/// the test suite runs once with each.
pub const INDEX_ENV: &str = "ASTERISM_INDEX";

/// The backend [`INDEX_ENV`] names (`Ok(None)` when unset or empty); a name that is not a
/// backend is an error ([`EngineConfig::default`] then falls back to USearch, and the CLI
/// refuses to start).
pub fn index_from_env() -> Result<Option<IndexBackend>> {
    match std::env::var(INDEX_ENV) {
        Ok(name) if name.is_empty() => Ok(None),
        Ok(name) => {
            IndexBackend::from_name(&name)
                .map(Some)
                .ok_or_else(|| EngineError::InvalidConfig {
                    field: "index",
                    reason: format!(
                        "{INDEX_ENV}={name} is not an index backend (usearch or hnsw_rs)"
                    ),
                })
        }
        Err(_) => Ok(None),
    }
}

/// Batches a re-embedded object waits for its relink unless configured otherwise; chosen by
/// BENCHMARKS.md, "Deferred relinks".
pub const DEFAULT_RELINK_DELAY: u64 = 16;
/// Alerts per atomic write unless configured otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// The scaler is first fitted at this many embedded objects, then refitted each time their
/// number doubles (so O(log n) refits over a store's life, each re-scaling every vector).
pub const MIN_OBJECTS_TO_FIT: u64 = 32;
/// Largest `k` a similarity query may ask for.
pub const MAX_K: usize = 1000;
