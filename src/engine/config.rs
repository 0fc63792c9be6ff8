//! Engine settings and the limits of its queries.

use super::{EngineError, Result};
use crate::index::HnswParams;
use crate::store::StoreConfig;

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
/// Alerts per atomic write unless configured otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// The scaler is first fitted at this many embedded objects, then refitted each time their
/// number doubles (so O(log n) refits over a store's life, each re-scaling every vector).
pub const MIN_OBJECTS_TO_FIT: u64 = 32;
/// Largest `k` a similarity query may ask for.
pub const MAX_K: usize = 1000;
