//! [`AnyIndex`]: the index of a store, one of the backends ([`IndexBackend`]: `hnsw_rs` or
//! USearch), chosen by an [`IndexConfig`]. An enum rather than a trait object: the live index
//! calls it on every search and insert, and a `match` on two variants costs nothing; it also
//! carries what differs between the backends (removal, exact distances, the dump's files).
//! Imports `store` (the backend's name, recorded there).

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use super::usearch::{UsearchIndex, UsearchParams};
use super::{Hit, HnswIndex, HnswParams, IndexError, PointId, Result, VectorInsert, VectorSearch};
use crate::store::{IndexBackend, IndexSettings};

/// Which backend a new index is, and the parameters of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexConfig {
    pub backend: IndexBackend,
    pub hnsw: HnswParams,
    pub usearch: UsearchParams,
}

impl IndexConfig {
    /// Checks the parameters of the chosen backend.
    pub fn validate(&self) -> Result<()> {
        match self.backend {
            IndexBackend::HnswRs => self.hnsw.validate(),
            IndexBackend::Usearch => self.usearch.validate(),
        }
    }

    /// This configuration with room reserved for `n` points.
    pub fn with_capacity(&self, n: usize) -> IndexConfig {
        let mut c = self.clone();
        c.hnsw.capacity = c.hnsw.capacity.max(n);
        c.usearch.capacity = c.usearch.capacity.max(n);
        c
    }

    /// Candidates kept while building a graph in bulk: USearch's `expansion_add`, hnsw_rs's
    /// `ef_construction`.
    pub fn build_expansion(&self) -> usize {
        match self.backend {
            IndexBackend::HnswRs => self.hnsw.ef_construction,
            IndexBackend::Usearch => self.usearch.expansion_add,
        }
    }

    /// This configuration with `n` candidates kept while building a graph in bulk
    /// ([`IndexConfig::build_expansion`]), validated: `n` from the connectivity up to
    /// [`MAX_BUILD_EXPANSION`].
    pub fn with_build_expansion(&self, n: usize) -> Result<IndexConfig> {
        if n > MAX_BUILD_EXPANSION {
            return Err(IndexError::InvalidParams {
                field: "build_expansion",
                reason: format!("{n} is over {MAX_BUILD_EXPANSION}"),
            });
        }
        let mut c = self.clone();
        match c.backend {
            IndexBackend::HnswRs => c.hnsw.ef_construction = n,
            IndexBackend::Usearch => c.usearch.expansion_add = n,
        }
        c.validate()?;
        Ok(c)
    }

    /// The record of the backend and its parameters a store keeps.
    pub fn settings(&self) -> Result<IndexSettings> {
        let params_json = match self.backend {
            IndexBackend::HnswRs => to_json(&self.hnsw)?,
            IndexBackend::Usearch => to_json(&self.usearch)?,
        };
        Ok(IndexSettings {
            backend: self.backend,
            params_json,
        })
    }

    /// This configuration with the backend and parameters a store recorded (the capacity hint
    /// stays this one's: it is not a property of the store).
    pub fn recorded(&self, settings: &IndexSettings) -> Result<IndexConfig> {
        let mut c = self.clone();
        c.backend = settings.backend;
        match settings.backend {
            IndexBackend::HnswRs => {
                c.hnsw = HnswParams {
                    capacity: self.hnsw.capacity,
                    ..from_json(&settings.params_json)?
                }
            }
            IndexBackend::Usearch => {
                c.usearch = UsearchParams {
                    capacity: self.usearch.capacity,
                    ..from_json(&settings.params_json)?
                }
            }
        }
        c.validate()?;
        Ok(c)
    }
}

fn to_json<T: Serialize>(params: &T) -> Result<String> {
    serde_json::to_string(params).map_err(|e| IndexError::InvalidParams {
        field: "params",
        reason: e.to_string(),
    })
}

fn from_json<T: DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| IndexError::InvalidParams {
        field: "params",
        reason: format!("recorded parameters {json}: {e}"),
    })
}

/// The most candidates [`IndexConfig::with_build_expansion`] accepts (a build at 4,096 takes
/// ~20x the default's time).
pub const MAX_BUILD_EXPANSION: usize = 4096;

/// The index of one backend.
pub enum AnyIndex {
    Hnsw(HnswIndex),
    Usearch(UsearchIndex),
}

impl AnyIndex {
    /// An empty index as `config` says.
    pub fn new(config: &IndexConfig) -> Result<AnyIndex> {
        Ok(match config.backend {
            IndexBackend::HnswRs => AnyIndex::Hnsw(HnswIndex::new(config.hnsw.clone())?),
            IndexBackend::Usearch => AnyIndex::Usearch(UsearchIndex::new(config.usearch.clone())?),
        })
    }

    pub fn backend(&self) -> IndexBackend {
        match self {
            AnyIndex::Hnsw(_) => IndexBackend::HnswRs,
            AnyIndex::Usearch(_) => IndexBackend::Usearch,
        }
    }

    /// Loads a dump written by [`AnyIndex::dump`] of `config`'s backend.
    pub fn load(config: &IndexConfig, dir: &Path, basename: &str) -> Result<AnyIndex> {
        Ok(match config.backend {
            IndexBackend::HnswRs => {
                AnyIndex::Hnsw(HnswIndex::load(dir, basename, config.hnsw.clone())?)
            }
            IndexBackend::Usearch => {
                AnyIndex::Usearch(UsearchIndex::load(dir, basename, config.usearch.clone())?)
            }
        })
    }

    /// Writes the index under `dir`; returns the basename its files start with.
    pub fn dump(&self, dir: &Path, basename: &str) -> Result<String> {
        match self {
            AnyIndex::Hnsw(i) => i.dump(dir, basename),
            AnyIndex::Usearch(i) => i.dump(dir, basename),
        }
    }

    /// Whether [`AnyIndex::remove`] deletes (USearch) or does nothing (hnsw_rs: tombstones).
    pub fn can_remove(&self) -> bool {
        matches!(self, AnyIndex::Usearch(_))
    }

    /// Deletes a point where the backend can; returns whether it did.
    pub fn remove(&self, point: PointId) -> bool {
        match self {
            AnyIndex::Hnsw(_) => false,
            AnyIndex::Usearch(i) => i.remove(point).unwrap_or_else(|e| {
                tracing::error!("usearch remove of point {point} failed: {e}");
                false
            }),
        }
    }

    /// Bytes the graph holds where the backend counts them (USearch's C++ allocations, its
    /// reserved capacity included); `None` for hnsw_rs.
    pub fn memory_bytes(&self) -> Option<usize> {
        match self {
            AnyIndex::Hnsw(_) => None,
            AnyIndex::Usearch(i) => Some(i.memory_bytes()),
        }
    }

    /// Whether the graph holds every point's vector as the engine keeps it
    /// ([`AnyIndex::vector`]), so that the live index need not keep a copy: USearch with f32
    /// or f16 storage ([`super::Quantization::holds_vectors`]). (hnsw_rs keeps them too, but does not
    /// hand them back by point.)
    pub fn holds_vectors(&self) -> bool {
        match self {
            AnyIndex::Hnsw(_) => false,
            AnyIndex::Usearch(i) => i.params().quantization.holds_vectors(),
        }
    }

    /// `v` as this graph stores it, where [`AnyIndex::holds_vectors`]; see
    /// [`super::Quantization::round`].
    pub fn round(&self, v: &mut [f32]) {
        if let AnyIndex::Usearch(i) = self {
            i.params().quantization.round(v);
        }
    }

    /// Whether `v` is as [`AnyIndex::round`] leaves it ([`super::Quantization::is_rounded`]).
    pub fn is_rounded(&self, v: &[f32]) -> bool {
        match self {
            // hnsw_rs keeps f32 vectors.
            AnyIndex::Hnsw(_) => super::Quantization::F32.is_rounded(v),
            AnyIndex::Usearch(i) => i.params().quantization.is_rounded(v),
        }
    }

    /// The vector of `point` where [`AnyIndex::holds_vectors`].
    pub fn vector(&self, point: PointId) -> Option<Vec<f32>> {
        match self {
            AnyIndex::Hnsw(_) => None,
            AnyIndex::Usearch(i) => i.vector(point),
        }
    }

    /// [`AnyIndex::vector`] into `out`, reusing its allocation; whether it was read.
    pub fn vector_into(&self, point: PointId, out: &mut Vec<f32>) -> bool {
        match self {
            AnyIndex::Hnsw(_) => false,
            AnyIndex::Usearch(i) => i.vector_into(point, out),
        }
    }

    /// Whether the distances of hits are exact (else the caller re-ranks with f32 vectors).
    pub fn exact_distances(&self) -> bool {
        match self {
            AnyIndex::Hnsw(_) => true,
            AnyIndex::Usearch(i) => i.params().quantization.is_exact(),
        }
    }

    /// Candidates kept by later insertions (USearch; hnsw_rs fixes them when it is built).
    pub fn set_expansion_add(&self, n: usize) {
        if let AnyIndex::Usearch(i) = self {
            i.set_expansion_add(n);
        }
    }

    /// Marks the graph built: later insertions are live ingest's, with USearch's
    /// [`UsearchParams::expansion_add_live`] candidates.
    pub fn built(&self) {
        if let AnyIndex::Usearch(i) = self {
            i.set_expansion_add(i.params().expansion_add_live);
        }
    }

    /// The ef_search in force.
    pub fn ef_search(&self) -> usize {
        match self {
            AnyIndex::Hnsw(i) => i.params().ef_search,
            AnyIndex::Usearch(i) => i.expansion_search(),
        }
    }

    /// Sets the ef_search of every later search (USearch; hnsw_rs keeps its recorded one).
    /// Returns whether the backend took it.
    pub fn set_ef_search(&self, n: usize) -> bool {
        match self {
            AnyIndex::Hnsw(_) => false,
            AnyIndex::Usearch(i) => {
                i.set_expansion_search(n);
                true
            }
        }
    }

    /// A search with an explicit ef (parameter sweeps, re-ranked searches).
    pub fn search_with_ef(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        live: &(dyn Fn(PointId) -> bool + Sync),
    ) -> Vec<Hit> {
        match self {
            AnyIndex::Hnsw(i) => i.search_with_ef(query, k, ef, live),
            AnyIndex::Usearch(i) => i.search_with_ef(query, k, ef, live),
        }
    }
}

impl VectorSearch for AnyIndex {
    fn search(&self, query: &[f32], k: usize, live: &(dyn Fn(PointId) -> bool + Sync)) -> Vec<Hit> {
        match self {
            AnyIndex::Hnsw(i) => i.search(query, k, live),
            AnyIndex::Usearch(i) => i.search(query, k, live),
        }
    }

    fn len(&self) -> usize {
        match self {
            AnyIndex::Hnsw(i) => i.len(),
            AnyIndex::Usearch(i) => i.len(),
        }
    }
}

impl VectorInsert for AnyIndex {
    fn insert(&self, points: &[(PointId, Vec<f32>)]) {
        match self {
            AnyIndex::Hnsw(i) => i.insert(points),
            AnyIndex::Usearch(i) => i.insert(points),
        }
    }
}
