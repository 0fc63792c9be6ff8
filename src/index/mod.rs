//! Approximate nearest-neighbour search over embeddings, behind a read and a write trait.
//!
//! [`HnswIndex`] wraps `hnsw_rs`, which can neither delete nor update: every re-embedding is a
//! new [`PointId`], searches take a liveness filter (the tombstones are the points no object
//! owns any more), and the engine rebuilds the index when tombstones pass a threshold. The
//! index can be dumped to files and reloaded, so a restart does not rebuild from scratch.
//! [`UsearchIndex`] (`usearch.rs`) wraps USearch, which can delete, filter inside the graph
//! walk, store f16 or i8 vectors and memory-map its dump. [`ExactIndex`] is brute force: the
//! oracle for recall and the path for small or historical (`as_of`) queries. All three pass
//! one conformance suite. [`AnyIndex`] (`backend.rs`) is the index of a store: one of the two
//! approximate backends, as the store recorded ([`IndexBackend`]). Imports `embed` (the
//! metric) and `store` (the records of the backend and of the dump).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use hnsw_rs::prelude::{AnnT, DistL2, Hnsw, HnswIo};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::embed::l2;

pub mod backend;
pub mod live;
pub mod order;
pub mod usearch;

pub use self::backend::{AnyIndex, IndexConfig, MAX_BUILD_EXPANSION};
pub use self::usearch::{Quantization, UsearchIndex, UsearchParams, BULK_EXPANSION_ADD};
pub use crate::store::IndexBackend;

/// Identifies one vector (one version of one object's embedding).
pub type PointId = u64;

/// A search hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub point: PointId,
    pub distance: f32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IndexError {
    #[error("invalid index parameter {field}: {reason}")]
    InvalidParams { field: &'static str, reason: String },
    #[error("index dump {path}: {detail}")]
    Dump { path: PathBuf, detail: String },
    #[error("index backend, {op}: {detail}")]
    Backend { op: &'static str, detail: String },
}

pub type Result<T> = std::result::Result<T, IndexError>;

/// Reading side: k nearest live points.
pub trait VectorSearch: Send + Sync {
    /// The `k` nearest points for which `live` is true, nearest first.
    fn search(&self, query: &[f32], k: usize, live: &(dyn Fn(PointId) -> bool + Sync)) -> Vec<Hit>;
    /// Points inserted, live or not.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writing side: add points. (Removal is not part of the trait, as hnsw_rs cannot remove: see
/// [`AnyIndex::remove`].)
pub trait VectorInsert: Send + Sync {
    fn insert(&self, points: &[(PointId, Vec<f32>)]);
}

/// HNSW parameters. Defaults chosen by `cargo bench --bench index` (BENCHMARKS.md): M = 16 and
/// ef_construction = 200 as hnswlib's reference runs, ef_search = 64 for recall@10 ≥ 0.95.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node and layer.
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    pub max_layer: usize,
    /// Expected number of points (an allocation hint).
    pub capacity: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            max_layer: 16,
            capacity: 100_000,
        }
    }
}

impl HnswParams {
    pub fn validate(&self) -> Result<()> {
        // hnsw_rs exits the process above 256 links; refuse earlier.
        if self.m == 0 || self.m > 256 {
            return Err(IndexError::InvalidParams {
                field: "m",
                reason: format!("{} is not in 1..=256", self.m),
            });
        }
        if self.ef_construction < self.m || self.ef_search == 0 {
            return Err(IndexError::InvalidParams {
                field: "ef",
                reason: "ef_construction must be >= m and ef_search > 0".into(),
            });
        }
        if self.max_layer == 0 || self.max_layer > 16 {
            return Err(IndexError::InvalidParams {
                field: "max_layer",
                reason: format!("{} is not in 1..=16", self.max_layer),
            });
        }
        Ok(())
    }
}

/// `hnsw_rs` behind the traits.
pub struct HnswIndex {
    hnsw: Hnsw<'static, f32, DistL2>,
    params: HnswParams,
    count: AtomicUsize,
}

impl HnswIndex {
    pub fn new(params: HnswParams) -> Result<HnswIndex> {
        params.validate()?;
        let hnsw = Hnsw::new(
            params.m,
            params.capacity.max(1024),
            params.max_layer,
            params.ef_construction,
            DistL2 {},
        );
        Ok(HnswIndex {
            hnsw,
            params,
            count: AtomicUsize::new(0),
        })
    }

    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Writes the graph and vectors to `dir` under a fresh basename, returned.
    pub fn dump(&self, dir: &Path, basename: &str) -> Result<String> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Dump {
            path: dir.to_path_buf(),
            detail: e.to_string(),
        })?;
        self.hnsw
            .file_dump(dir, basename)
            .map_err(|e| IndexError::Dump {
                path: dir.join(basename),
                detail: e.to_string(),
            })
    }

    /// Loads a dump written by [`HnswIndex::dump`].
    pub fn load(dir: &Path, basename: &str, params: HnswParams) -> Result<HnswIndex> {
        params.validate()?;
        let graph = dir.join(format!("{basename}.hnsw.graph"));
        if !graph.exists() {
            return Err(IndexError::Dump {
                path: graph,
                detail: "missing".into(),
            });
        }
        // The loaded index borrows its loader for its whole life; the loader is small and a
        // dump is loaded once per process start, so it is leaked on purpose.
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, basename)));
        let hnsw: Hnsw<'static, f32, DistL2> = io.load_hnsw().map_err(|e| IndexError::Dump {
            path: dir.join(basename),
            detail: e.to_string(),
        })?;
        let count = hnsw.get_nb_point();
        Ok(HnswIndex {
            hnsw,
            params,
            count: AtomicUsize::new(count),
        })
    }
}

impl HnswIndex {
    /// [`VectorSearch::search`] with an explicit `ef_search` (for parameter sweeps).
    pub fn search_with_ef(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        live: &(dyn Fn(PointId) -> bool + Sync),
    ) -> Vec<Hit> {
        if k == 0 {
            return Vec::new();
        }
        let filter = |id: &usize| live(*id as PointId);
        let mut ef = ef.max(k);
        loop {
            let found = self.hnsw.search_filter(query, k, ef, Some(&filter));
            // With many tombstones a filtered search can come back short; widen and retry.
            if found.len() >= k || ef >= self.len().max(k) || ef >= 4096 {
                return found
                    .into_iter()
                    .map(|n| Hit {
                        point: n.d_id as PointId,
                        distance: n.distance,
                    })
                    .collect();
            }
            ef *= 4;
        }
    }
}

impl VectorSearch for HnswIndex {
    fn search(&self, query: &[f32], k: usize, live: &(dyn Fn(PointId) -> bool + Sync)) -> Vec<Hit> {
        self.search_with_ef(query, k, self.params.ef_search, live)
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl VectorInsert for HnswIndex {
    fn insert(&self, points: &[(PointId, Vec<f32>)]) {
        let data: Vec<(&Vec<f32>, usize)> =
            points.iter().map(|(id, v)| (v, *id as usize)).collect();
        if data.len() > 64 {
            self.hnsw.parallel_insert(&data);
        } else {
            for (v, id) in data {
                self.hnsw.insert((v.as_slice(), id));
            }
        }
        self.count.fetch_add(points.len(), Ordering::Relaxed);
    }
}

/// Exact search by scanning every point.
#[derive(Default)]
pub struct ExactIndex {
    points: RwLock<Vec<(PointId, Vec<f32>)>>,
}

impl ExactIndex {
    pub fn new() -> ExactIndex {
        ExactIndex::default()
    }
}

/// Vectors numbered as points `0..n` in their order (for exact search over a matrix).
pub fn numbered(vectors: Vec<Vec<f32>>) -> Vec<(PointId, Vec<f32>)> {
    vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as PointId, v))
        .collect()
}

/// Exact k nearest of `points` to `query` among those `live` accepts, nearest first (ties by
/// point number). The k are selected, not the whole list sorted, and the answer holds k hits'
/// memory, not one per point: 200 answers over 10M points kept 32 GB before.
pub fn exact_knn<'a>(
    points: impl IntoParallelIterator<Item = &'a (PointId, Vec<f32>)>,
    query: &[f32],
    k: usize,
    live: &(dyn Fn(PointId) -> bool + Sync),
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = points
        .into_par_iter()
        .filter(|(id, _)| live(*id))
        .map(|(id, v)| Hit {
            point: *id,
            distance: l2(query, v),
        })
        .collect();
    let order = |a: &Hit, b: &Hit| {
        a.distance
            .total_cmp(&b.distance)
            .then(a.point.cmp(&b.point))
    };
    if k < hits.len() {
        hits.select_nth_unstable_by(k, order);
        hits.truncate(k);
    }
    hits.sort_by(order);
    hits.shrink_to_fit();
    hits
}

impl VectorSearch for ExactIndex {
    fn search(&self, query: &[f32], k: usize, live: &(dyn Fn(PointId) -> bool + Sync)) -> Vec<Hit> {
        let points = self.points.read().unwrap_or_else(|e| e.into_inner());
        exact_knn(points.par_iter(), query, k, live)
    }

    fn len(&self) -> usize {
        self.points.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl VectorInsert for ExactIndex {
    fn insert(&self, points: &[(PointId, Vec<f32>)]) {
        self.points
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(points);
    }
}

/// Recall@k of `approx` against `exact` result lists.
pub fn recall(approx: &[Vec<Hit>], exact: &[Vec<Hit>]) -> f64 {
    let (mut found, mut total) = (0usize, 0usize);
    for (a, e) in approx.iter().zip(exact) {
        let truth: std::collections::HashSet<PointId> = e.iter().map(|h| h.point).collect();
        found += a.iter().filter(|h| truth.contains(&h.point)).count();
        total += e.len();
    }
    if total == 0 {
        1.0
    } else {
        found as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_points(n: usize, dim: usize, seed: u64) -> Vec<(PointId, Vec<f32>)> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                (
                    i as PointId,
                    (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect(),
                )
            })
            .collect()
    }

    /// One conformance suite for every implementation of the traits.
    fn conformance(index: &(impl VectorSearch + VectorInsert)) {
        let pts = random_points(500, 8, 7);
        index.insert(&pts);
        assert_eq!(index.len(), 500);
        // A point is its own nearest neighbour at distance 0.
        let hits = index.search(&pts[42].1, 3, &|_| true);
        assert_eq!(hits[0].point, 42);
        assert!(hits[0].distance.abs() < 1e-6);
        assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
        // Dead points are never returned.
        let hits = index.search(&pts[42].1, 10, &|id| id % 2 == 1);
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| h.point % 2 == 1));
        assert!(index.search(&pts[0].1, 0, &|_| true).is_empty());
    }

    #[test]
    fn exact_knn_selects_the_k_nearest_in_order_and_keeps_only_them() {
        // Points on a line, two at each distance from the query: ties go by point number.
        let pts: Vec<(PointId, Vec<f32>)> = (0..1000)
            .map(|i| (i as PointId, vec![(i / 2) as f32]))
            .collect();
        let hits = exact_knn(pts.par_iter(), &[100.0], 5, &|p| p != 200);
        let got: Vec<(PointId, f32)> = hits.iter().map(|h| (h.point, h.distance)).collect();
        assert_eq!(
            got,
            vec![(201, 0.0), (198, 1.0), (199, 1.0), (202, 1.0), (203, 1.0)]
        );
        // The answer holds its k hits, not the 1000 it ranked.
        assert!(hits.capacity() < 10, "{}", hits.capacity());
        // Fewer points than k: all of them, sorted; k = 0: none.
        let all = exact_knn(pts[..3].par_iter(), &[0.0], 10, &|_| true);
        assert_eq!(
            all.iter().map(|h| h.point).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(exact_knn(pts.par_iter(), &[0.0], 0, &|_| true).is_empty());
    }

    /// Recall@10 against exact search over clustered points (as embeddings are), the query's
    /// own point excluded, as `similar` asks.
    fn recall_at_10(index: &(impl VectorSearch + VectorInsert)) -> f64 {
        let centres = random_points(40, 16, 11);
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(5);
        let pts: Vec<(PointId, Vec<f32>)> = (0..3000)
            .map(|i| {
                let c = &centres[i % centres.len()].1;
                let v = c
                    .iter()
                    .map(|x| 2.0 * x + rng.gen_range(-0.5..0.5))
                    .collect();
                (i as PointId, v)
            })
            .collect();
        index.insert(&pts);
        let (approx, exact): (Vec<Vec<Hit>>, Vec<Vec<Hit>>) = (0..3000)
            .step_by(30)
            .map(|q| {
                let own = q as PointId;
                let live = |p: PointId| p != own;
                (
                    index.search(&pts[q].1, 10, &live),
                    exact_knn(pts.par_iter(), &pts[q].1, 10, &live),
                )
            })
            .unzip();
        recall(&approx, &exact)
    }

    fn usearch(quantization: Quantization) -> UsearchIndex {
        UsearchIndex::new(UsearchParams {
            quantization,
            ..UsearchParams::default()
        })
        .unwrap()
    }

    #[test]
    fn exact_index_conforms() {
        conformance(&ExactIndex::new());
        assert_eq!(recall_at_10(&ExactIndex::new()), 1.0);
    }

    #[test]
    fn hnsw_index_conforms() {
        conformance(&HnswIndex::new(HnswParams::default()).unwrap());
        let r = recall_at_10(&HnswIndex::new(HnswParams::default()).unwrap());
        assert!(r >= 0.95, "recall@10 {r}");
    }

    #[test]
    fn usearch_index_conforms() {
        conformance(&usearch(Quantization::F32));
        let r = recall_at_10(&usearch(Quantization::F32));
        assert!(r >= 0.95, "recall@10 {r}");
    }

    #[test]
    fn any_index_conforms_with_either_backend() {
        for backend in IndexBackend::ALL {
            let config = IndexConfig {
                backend,
                ..IndexConfig::default()
            };
            conformance(&AnyIndex::new(&config).unwrap());
            let r = recall_at_10(&AnyIndex::new(&config).unwrap());
            assert!(r >= 0.95, "{backend}: recall@10 {r}");
        }
    }

    #[test]
    fn the_search_expansion_changes_on_a_usearch_graph_only() {
        for backend in IndexBackend::ALL {
            let config = IndexConfig {
                backend,
                ..IndexConfig::default()
            };
            let index = AnyIndex::new(&config).unwrap();
            let recorded = index.ef_search();
            // Set before the graph exists: the graph made at the first insert takes it.
            let took = index.set_ef_search(128);
            assert_eq!(took, backend == IndexBackend::Usearch, "{backend}");
            assert_eq!(index.ef_search(), if took { 128 } else { recorded });
            let r = recall_at_10(&index);
            assert!(r >= 0.95, "{backend}: recall@10 {r}");
            // At least one candidate; a search still answers k.
            index.set_ef_search(0);
            assert_eq!(index.ef_search(), if took { 1 } else { recorded });
            let hits = index.search(&[0.0; 16], 10, &|_| true);
            assert_eq!(hits.len(), 10, "{backend}");
        }
    }

    /// f16 and i8 distances are approximate: the conformance suite less its exact-distance
    /// checks, and recall@10 before any re-rank (the live index re-ranks with f32 vectors).
    #[test]
    fn quantized_usearch_finds_the_neighbours() {
        for (q, min_recall) in [(Quantization::F16, 0.95), (Quantization::I8, 0.85)] {
            let index = usearch(q);
            let pts = random_points(500, 8, 7);
            index.insert(&pts);
            assert_eq!(index.len(), 500);
            let hits = index.search(&pts[42].1, 3, &|_| true);
            assert_eq!(hits[0].point, 42, "{q:?}");
            assert!(
                hits[1].distance > 0.0 && hits[1].distance < 2.0,
                "{q:?} {hits:?}"
            );
            let hits = index.search(&pts[42].1, 10, &|id| id % 2 == 1);
            assert!(hits.len() == 10 && hits.iter().all(|h| h.point % 2 == 1));
            let r = recall_at_10(&usearch(q));
            assert!(r >= min_recall, "{q:?}: recall@10 {r}");
        }
    }

    #[test]
    fn rounded_vectors_are_recognised_without_a_copy() {
        let mut v = vec![0.1_f32, -3.3, 1.0, 2.5e-3];
        assert!(!Quantization::F16.is_rounded(&v));
        assert!(Quantization::F32.is_rounded(&v) && Quantization::I8.is_rounded(&v));
        Quantization::F16.round(&mut v);
        assert!(Quantization::F16.is_rounded(&v));
        assert_eq!(v[2], 1.0);
        assert_ne!(v[0], 0.1);
        v[3] = f32::NAN;
        for q in [Quantization::F16, Quantization::F32, Quantization::I8] {
            assert!(!q.is_rounded(&v), "{q:?}");
        }
    }

    #[test]
    fn usearch_removes_points_and_reuses_their_slots() {
        let index = usearch(Quantization::F32);
        let pts = random_points(300, 8, 9);
        index.insert(&pts);
        assert!(index.remove(42).unwrap());
        assert!(!index.remove(42).unwrap());
        assert_eq!(index.len(), 299);
        let hits = index.search(&pts[42].1, 5, &|_| true);
        assert!(hits.iter().all(|h| h.point != 42), "{hits:?}");
        // A new point (a re-embedding) goes in; the removed one stays gone.
        index.insert(&[(1000, pts[42].1.clone())]);
        assert_eq!(index.len(), 300);
        let hits = index.search(&pts[42].1, 2, &|_| true);
        assert_eq!(hits[0].point, 1000);
        assert!(hits.iter().all(|h| h.point != 42));
        // Growing past the reserved capacity (1024) keeps every point.
        let more: Vec<(PointId, Vec<f32>)> = random_points(3000, 8, 10)
            .into_iter()
            .map(|(p, v)| (p + 2000, v))
            .collect();
        index.try_insert(&more).unwrap();
        assert_eq!(index.len(), 3300);
        assert_eq!(index.search(&more[2500].1, 1, &|_| true)[0].point, 4500);
        // A point id already present is refused, not duplicated.
        assert!(index.try_insert(&[(1000, pts[0].1.clone())]).is_err());
        assert_eq!(index.len(), 3300);
    }

    #[test]
    fn usearch_distances_are_euclidean() {
        let index = usearch(Quantization::F32);
        let pts = random_points(50, 5, 4);
        index.insert(&pts);
        let hits = index.search(&pts[3].1, 50, &|_| true);
        assert_eq!(hits.len(), 50);
        for h in hits {
            let d = l2(&pts[3].1, &pts[h.point as usize].1);
            assert!((h.distance - d).abs() < 1e-4, "{} vs {d}", h.distance);
        }
    }

    #[test]
    fn usearch_dump_loads_and_maps() {
        let dir = tempfile::tempdir().unwrap();
        let index = usearch(Quantization::F32);
        let pts = random_points(300, 6, 3);
        index.insert(&pts);
        let name = index.dump(dir.path(), "idx").unwrap();
        let f32 = UsearchParams {
            quantization: Quantization::F32,
            ..UsearchParams::default()
        };
        let loaded = UsearchIndex::load(dir.path(), &name, f32.clone()).unwrap();
        assert_eq!(loaded.len(), 300);
        assert_eq!(loaded.search(&pts[5].1, 1, &|_| true)[0].point, 5);
        // A loaded dump can grow; a memory-mapped one answers but is read-only.
        loaded.try_insert(&[(300, vec![0.0; 6])]).unwrap();
        let mapped = UsearchIndex::view(dir.path(), &name, f32.clone()).unwrap();
        assert_eq!(mapped.search(&pts[7].1, 1, &|p| p != 5)[0].point, 7);
        assert!(mapped.try_insert(&[(301, vec![0.0; 6])]).is_err());
        // A dump of other parameters is refused (the caller rebuilds).
        for other in [Quantization::I8, Quantization::F16] {
            let params = UsearchParams {
                quantization: other,
                ..UsearchParams::default()
            };
            assert!(matches!(
                UsearchIndex::load(dir.path(), &name, params),
                Err(IndexError::Dump { .. })
            ));
        }
        assert!(UsearchIndex::load(dir.path(), "nothing", f32).is_err());
    }

    #[test]
    fn recorded_settings_round_trip_and_keep_the_capacity_hint() {
        let config = IndexConfig {
            backend: IndexBackend::Usearch,
            usearch: UsearchParams {
                connectivity: 24,
                quantization: Quantization::F16,
                ..UsearchParams::default()
            },
            ..IndexConfig::default()
        };
        let settings = config.settings().unwrap();
        let asked = IndexConfig::default().with_capacity(5000);
        let back = asked.recorded(&settings).unwrap();
        assert_eq!(back.backend, IndexBackend::Usearch);
        assert_eq!(back.usearch.connectivity, 24);
        assert_eq!(back.usearch.quantization, Quantization::F16);
        assert_eq!(back.usearch.capacity, 5000);
    }

    /// A store recorded before the live insertions had their own expansion gets the default.
    #[test]
    fn settings_recorded_without_the_live_expansion_take_the_default() {
        let old = r#"{"connectivity":16,"expansion_add":200,"expansion_search":64,"quantization":"F32","capacity":1024}"#;
        let p: UsearchParams = serde_json::from_str(old).unwrap();
        assert_eq!(p.expansion_add, 200);
        assert_eq!(p.expansion_add_live, usearch::LIVE_EXPANSION_ADD);
        assert_eq!(p.quantization, Quantization::F32);
    }

    #[test]
    fn bad_params_are_refused() {
        let p = UsearchParams {
            connectivity: 1,
            ..UsearchParams::default()
        };
        assert!(matches!(
            UsearchIndex::new(p),
            Err(IndexError::InvalidParams {
                field: "connectivity",
                ..
            })
        ));
        let p = HnswParams {
            m: 300,
            ..HnswParams::default()
        };
        assert!(matches!(
            HnswIndex::new(p),
            Err(IndexError::InvalidParams { field: "m", .. })
        ));
    }

    #[test]
    fn dump_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let index = HnswIndex::new(HnswParams::default()).unwrap();
        let pts = random_points(300, 6, 3);
        index.insert(&pts);
        let name = index.dump(dir.path(), "idx").unwrap();
        let loaded = HnswIndex::load(dir.path(), &name, HnswParams::default()).unwrap();
        assert_eq!(loaded.len(), 300);
        assert_eq!(loaded.search(&pts[5].1, 1, &|_| true)[0].point, 5);
    }
}
