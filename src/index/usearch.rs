//! [`UsearchIndex`]: USearch (the `usearch` crate, C++ compiled through `cxx`) behind the
//! [`VectorSearch`] / [`VectorInsert`] traits, with what `hnsw_rs` lacks: a real
//! [`UsearchIndex::remove`], a search filtered by a predicate inside the graph walk, vectors
//! stored as f32, f16 or i8 ([`Quantization`]), insertion on every core, and a dump that can be
//! loaded or memory-mapped ([`UsearchIndex::view`]).
//!
//! Distances are Euclidean, as [`crate::embed::l2`] computes them: USearch's `L2sq` metric is
//! squared, so its distances are square-rooted here. i8 vectors are quantized here, not by
//! USearch (whose automatic f32 -> i8 cast normalises each vector to unit length, which loses
//! the L2 geometry): a value x is stored as round(127 · x / range), clamped, with `range` the
//! scaler's clip ([`crate::embed::CLIP`]), and distances are scaled back. f16 and i8 distances
//! are approximate; `index/live.rs` re-ranks the candidates with the exact f32 vectors.
//!
//! USearch serves at most as many concurrent calls as it has reserved thread contexts, and its
//! `reserve` must not overlap any other call. So every call here takes a permit (callers beyond
//! the contexts wait) under a shared lock, and growing the capacity takes that lock exclusively.
//! Imports `embed` (the clip).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, RwLock};

use ::usearch::{Index, IndexOptions, MetricKind, ScalarKind};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Hit, IndexError, PointId, Result, VectorInsert, VectorSearch};
use crate::embed::CLIP;
use crate::memory::{back_with_huge_pages_beside, AnonymousMemory};

/// How the index stores its vectors.
///
/// New stores use f16 ([`Quantization::default`]): the engine then holds each object's
/// vector once, in the graph, at half precision ([`Quantization::round`] is what the engine
/// calls its vector; BENCHMARKS.md measures recall against f32 search). Stores recorded
/// with f32 keep it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quantization {
    /// 4 bytes a value: distances exact.
    F32,
    /// 2 bytes a value (IEEE half precision): ~3 significant digits, a relative rounding of
    /// at most 2^-11, far below the features' own errors.
    #[default]
    F16,
    /// 1 byte a value: 255 levels over ±[`CLIP`].
    I8,
}

impl Quantization {
    fn scalar(self) -> ScalarKind {
        match self {
            Quantization::F32 => ScalarKind::F32,
            Quantization::F16 => ScalarKind::F16,
            Quantization::I8 => ScalarKind::I8,
        }
    }

    /// Whether the graph's distances are exact for any f32 query (no re-rank needed).
    pub fn is_exact(self) -> bool {
        self == Quantization::F32
    }

    /// Whether the graph's copy of a vector can serve as the vector itself (read back with
    /// [`UsearchIndex::vector_into`]), so that the live index keeps no other copy: f32, and
    /// f16 once the vector is [`Quantization::round`]ed. i8 (255 levels) is too coarse: its
    /// exact vectors are held apart for the re-rank.
    pub fn holds_vectors(self) -> bool {
        matches!(self, Quantization::F32 | Quantization::F16)
    }

    /// `v` as the graph stores it, where that is what the engine keeps ([`holds_vectors`]):
    /// f16 values are rounded to half precision (to nearest, ties to even, as USearch
    /// converts), so the vector read back equals the one inserted. f32 and i8 are unchanged.
    ///
    /// [`holds_vectors`]: Quantization::holds_vectors
    pub fn round(self, v: &mut [f32]) {
        if self == Quantization::F16 {
            for x in v {
                *x = half::f16::from_f32(*x).to_f32();
            }
        }
    }

    /// Whether [`Quantization::round`] would leave `v` as it is (value by value, without a
    /// copy; NaN never is).
    pub fn is_rounded(self, v: &[f32]) -> bool {
        match self {
            Quantization::F16 => v.iter().all(|&x| half::f16::from_f32(x).to_f32() == x),
            _ => v.iter().all(|x| !x.is_nan()),
        }
    }
}

/// USearch parameters. Defaults: 16 links and 64 candidates while searching, as
/// [`super::HnswParams`]; 400 candidates while building in bulk, where hnsw_rs keeps 200: on
/// the 954k-object store a graph built with 400 finds at ef 16 what one built with 200 finds at
/// ef 24, and at ef 32 what it finds at 64, for ~10% more time to reindex (BENCHMARKS.md,
/// "A graph built with 400 candidates").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsearchParams {
    /// Links per node and layer (hnsw_rs's `m`).
    pub connectivity: usize,
    /// Candidates kept while building a graph in bulk (ef_construction): the seed, a rebuild,
    /// a refit.
    pub expansion_add: usize,
    /// Candidates kept while inserting the vectors of live ingest into a built graph: fewer
    /// than the bulk build's, as each alert pays one insertion (BENCHMARKS.md, "f16 vectors at
    /// 1M": 64 against 200 streamed 15% more alerts/s at the same recall). Stores recorded
    /// before this setting get [`LIVE_EXPANSION_ADD`].
    #[serde(default = "live_expansion_add")]
    pub expansion_add_live: usize,
    /// Candidates kept while searching (ef_search).
    pub expansion_search: usize,
    pub quantization: Quantization,
    /// Expected number of points (reserved up front; the index grows past it).
    pub capacity: usize,
}

/// [`UsearchParams::expansion_add`] of a new store unless configured otherwise (stores made
/// before it keep the 200 they recorded, until `reindex --build-expansion`).
pub const BULK_EXPANSION_ADD: usize = 400;

/// [`UsearchParams::expansion_add_live`] unless configured otherwise.
pub const LIVE_EXPANSION_ADD: usize = 64;

fn live_expansion_add() -> usize {
    LIVE_EXPANSION_ADD
}

impl Default for UsearchParams {
    fn default() -> Self {
        UsearchParams {
            connectivity: 16,
            expansion_add: BULK_EXPANSION_ADD,
            expansion_add_live: LIVE_EXPANSION_ADD,
            expansion_search: 64,
            quantization: Quantization::default(),
            capacity: 1024,
        }
    }
}

impl UsearchParams {
    pub fn validate(&self) -> Result<()> {
        if self.connectivity < 2 || self.connectivity > 256 {
            return Err(IndexError::InvalidParams {
                field: "connectivity",
                reason: format!("{} is not in 2..=256", self.connectivity),
            });
        }
        if self.expansion_add < self.connectivity
            || self.expansion_add_live < self.connectivity
            || self.expansion_search == 0
        {
            return Err(IndexError::InvalidParams {
                field: "expansion",
                reason: "expansion_add and expansion_add_live must be >= connectivity and \
                         expansion_search > 0"
                    .into(),
            });
        }
        Ok(())
    }
}

/// A counting semaphore: at most `n` holders at once, the others wait.
struct Permits {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Permit<'a>(&'a Permits);

impl Permits {
    fn new(n: usize) -> Permits {
        Permits {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// Graphs that will hold fewer points than this are built sequentially
/// ([`UsearchIndex::try_insert`]); seeds and rebuilds of larger graphs stay parallel.
pub const SEQUENTIAL_BELOW: usize = 10_000;

/// Inserts of at least this many points (a build, a rebuild, a refit) have the memory they
/// allocated moved onto huge pages ([`back_with_huge_pages_beside`]): a search of a large
/// graph then misses the TLB far less often. Live batches are smaller; the arenas they fill
/// were mostly mapped, and advised, by the build before them. A loaded dump is moved by
/// `Engine::open`, with the rest of what the open allocated.
pub const HUGE_PAGES_FROM: usize = 65_536;

/// Thread contexts reserved in every index: concurrent calls beyond them wait for a permit.
fn contexts() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get()) * 2 + 8
}

/// USearch behind the traits; see the module doc.
pub struct UsearchIndex {
    /// Created at the first insert (USearch needs the dimension); `None` while empty.
    inner: RwLock<Option<Index>>,
    params: UsearchParams,
    permits: Permits,
    contexts: usize,
    /// A memory-mapped dump ([`UsearchIndex::view`]): never written to.
    read_only: bool,
    /// Candidates kept while searching: `params.expansion_search` unless an operator or a
    /// parameter sweep changed it ([`UsearchIndex::set_expansion_search`]).
    expansion_search: AtomicUsize,
}

fn usearch_err(op: &'static str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend {
        op,
        detail: e.to_string(),
    }
}

impl UsearchIndex {
    pub fn new(params: UsearchParams) -> Result<UsearchIndex> {
        Self::with_contexts(params, contexts())
    }

    fn with_contexts(params: UsearchParams, contexts: usize) -> Result<UsearchIndex> {
        params.validate()?;
        Ok(UsearchIndex {
            inner: RwLock::new(None),
            permits: Permits::new(contexts),
            expansion_search: AtomicUsize::new(params.expansion_search),
            params,
            contexts,
            read_only: false,
        })
    }

    pub fn params(&self) -> &UsearchParams {
        &self.params
    }

    fn options(&self, dimensions: usize) -> IndexOptions {
        IndexOptions {
            dimensions,
            metric: MetricKind::L2sq,
            quantization: self.params.quantization.scalar(),
            connectivity: self.params.connectivity,
            expansion_add: self.params.expansion_add,
            expansion_search: self.expansion_search(),
            multi: false,
        }
    }

    /// The distance of a USearch `L2sq` result, in the units of the vectors given.
    fn distance(&self, squared: f32) -> f32 {
        let d = squared.max(0.0).sqrt();
        match self.params.quantization {
            Quantization::I8 => d * CLIP / 127.0,
            _ => d,
        }
    }

    /// Candidates kept by the insertions made from now on (ef_construction); a bulk build
    /// uses the parameters' `expansion_add`.
    pub fn set_expansion_add(&self, n: usize) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = inner.as_ref() {
            index.change_expansion_add(n.max(self.params.connectivity));
        }
    }

    /// Candidates kept by every search from now on (ef_search; at least 1): fewer answer
    /// faster and find fewer of the true neighbours. Not recorded: a reopened or rebuilt
    /// graph starts again from `params.expansion_search`.
    pub fn set_expansion_search(&self, n: usize) {
        let n = n.max(1);
        self.expansion_search.store(n, Ordering::Relaxed);
        // USearch keeps max(its own expansion, the results asked for): both change.
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = inner.as_ref() {
            index.change_expansion_search(n);
        }
    }

    /// Candidates a search keeps (see [`UsearchIndex::set_expansion_search`]).
    pub fn expansion_search(&self) -> usize {
        self.expansion_search.load(Ordering::Relaxed)
    }

    /// Candidates the next insertion keeps (see [`UsearchIndex::set_expansion_add`]).
    pub fn expansion_add(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.as_ref().map_or(0, Index::expansion_add)
    }

    /// Bytes USearch holds for the graph and vectors (C++ allocations, not seen by Rust).
    pub fn memory_bytes(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.as_ref().map_or(0, Index::memory_usage)
    }

    fn writable(&self, op: &'static str) -> Result<()> {
        if self.read_only {
            return Err(usearch_err(
                op,
                "the index is a read-only memory-mapped view",
            ));
        }
        Ok(())
    }

    /// Makes room for `extra` more points (exclusive: waits for every running call).
    fn grow_for(&self, extra: usize, dimensions: usize) -> Result<()> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.is_none() {
            let index = Index::new(&self.options(dimensions)).map_err(|e| usearch_err("new", e))?;
            *inner = Some(index);
        }
        let Some(index) = inner.as_ref() else {
            return Ok(());
        };
        // Freed slots are reused first, so live points + new ones is what must fit.
        let need = index.size() + extra;
        if need > index.capacity() {
            let target = need
                .max(index.capacity().saturating_mul(2))
                .max(self.params.capacity);
            index
                .reserve_capacity_and_threads(target, self.contexts)
                .map_err(|e| usearch_err("reserve", e))?;
        }
        Ok(())
    }

    /// Adds points (in parallel when there are many). A point id already present is an error.
    pub fn try_insert(&self, points: &[(PointId, Vec<f32>)]) -> Result<()> {
        let Some(dim) = points.first().map(|(_, v)| v.len()) else {
            return Ok(());
        };
        self.writable("add")?;
        let before = (points.len() >= HUGE_PAGES_FROM).then(AnonymousMemory::now);
        self.grow_for(points.len(), dim)?;
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(index) = inner.as_ref() else {
            return Ok(());
        };
        let add = |(id, v): &(PointId, Vec<f32>)| {
            let _permit = self.permits.acquire();
            let added = match self.params.quantization {
                Quantization::I8 => index.add(*id, quantize_i8(v).as_slice()),
                _ => index.add(*id, v.as_slice()),
            };
            added.map_err(|e| usearch_err("add", e))
        };
        // A small graph is built one point at a time: points inserted at once into a graph
        // of a few dozen can leave one poorly linked, so that searches from most of the others
        // miss it (a refit's rebuild of 80 objects, engine test
        // `the_reverse_graph_follows_the_stored_lists`: 5 runs in 100 with the lists' recall
        // under 0.97 in parallel, none in sequence).
        if points.len() > 64 && index.size() + points.len() >= SEQUENTIAL_BELOW {
            points.par_iter().try_for_each(add)?;
        } else {
            points.iter().try_for_each(add)?;
        }
        if let Some(before) = before {
            back_with_huge_pages_beside(AnonymousMemory::now().added_since(&before));
        }
        Ok(())
    }

    /// The vector of `point` as stored, where that is the vector ([`Quantization::holds_vectors`]:
    /// with f32, exactly the one inserted; with f16, the inserted one [`Quantization::round`]ed);
    /// `None` for i8 storage or a point not in the index.
    pub fn vector(&self, point: PointId) -> Option<Vec<f32>> {
        let mut v = Vec::new();
        self.vector_into(point, &mut v).then_some(v)
    }

    /// [`UsearchIndex::vector`] into `out` (resized to the dimensions), without an
    /// allocation once `out` has grown; whether the point's vector was read.
    pub fn vector_into(&self, point: PointId, out: &mut Vec<f32>) -> bool {
        if !self.params.quantization.holds_vectors() {
            return false;
        }
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(index) = inner.as_ref() else {
            return false;
        };
        out.resize(index.dimensions(), 0.0);
        match index.get(point, out.as_mut_slice()) {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!("usearch get of point {point} failed: {e}");
                false
            }
        }
    }

    /// Removes a point: it is no longer found, and its slot is reused by a later insert.
    /// Returns whether it was there.
    pub fn remove(&self, point: PointId) -> Result<bool> {
        self.writable("remove")?;
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(index) = inner.as_ref() else {
            return Ok(false);
        };
        let _permit = self.permits.acquire();
        index
            .remove(point)
            .map(|n| n > 0)
            .map_err(|e| usearch_err("remove", e))
    }

    /// [`VectorSearch::search`] with an explicit ef (candidates kept while searching): USearch
    /// keeps max(expansion_search, wanted) candidates, so asking for `ef` results and keeping
    /// the first `k` is a search with that ef.
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
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(index) = inner.as_ref() else {
            return Vec::new();
        };
        let quantized = (self.params.quantization == Quantization::I8).then(|| quantize_i8(query));
        let size = index.size();
        let mut wanted = ef.max(k);
        loop {
            let found = {
                let _permit = self.permits.acquire();
                match &quantized {
                    Some(q) => index.filtered_search(q.as_slice(), wanted, live),
                    None => index.filtered_search(query, wanted, live),
                }
            };
            let found = match found {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!("usearch search failed: {e}");
                    return Vec::new();
                }
            };
            // A filter that rejects most candidates can leave the walk short; widen and retry.
            if found.keys.len() >= k || wanted >= size || wanted >= 4096 {
                return found
                    .keys
                    .iter()
                    .zip(&found.distances)
                    .take(k)
                    .map(|(&point, &d)| Hit {
                        point,
                        distance: self.distance(d),
                    })
                    .collect();
            }
            wanted *= 4;
        }
    }

    fn dump_path(dir: &Path, basename: &str) -> PathBuf {
        dir.join(format!("{basename}.usearch"))
    }

    /// Writes the index to `dir/<basename>.usearch`; returns the basename.
    pub fn dump(&self, dir: &Path, basename: &str) -> Result<String> {
        let dump_err = |path: &Path, detail: String| IndexError::Dump {
            path: path.to_path_buf(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| dump_err(dir, e.to_string()))?;
        let path = Self::dump_path(dir, basename);
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(index) = inner.as_ref() else {
            return Err(dump_err(&path, "the index is empty".into()));
        };
        let _permit = self.permits.acquire();
        let name = path
            .to_str()
            .ok_or_else(|| dump_err(&path, "not a UTF-8 path".into()))?;
        index
            .save(name)
            .map_err(|e| dump_err(&path, e.to_string()))?;
        Ok(basename.to_string())
    }

    /// Loads a dump written by [`UsearchIndex::dump`] into memory (it can then grow).
    pub fn load(dir: &Path, basename: &str, params: UsearchParams) -> Result<UsearchIndex> {
        Self::open_dump(dir, basename, params, false)
    }

    /// Memory-maps a dump: answers at once, pages read on demand, but read-only (inserts and
    /// removals fail).
    pub fn view(dir: &Path, basename: &str, params: UsearchParams) -> Result<UsearchIndex> {
        Self::open_dump(dir, basename, params, true)
    }

    fn open_dump(
        dir: &Path,
        basename: &str,
        params: UsearchParams,
        mapped: bool,
    ) -> Result<UsearchIndex> {
        params.validate()?;
        let path = Self::dump_path(dir, basename);
        let dump_err = |detail: String| IndexError::Dump {
            path: path.clone(),
            detail,
        };
        if !path.exists() {
            return Err(dump_err("missing".into()));
        }
        let name = path
            .to_str()
            .ok_or_else(|| dump_err("not a UTF-8 path".into()))?;
        let meta = Index::metadata(name).map_err(|e| dump_err(e.to_string()))?;
        // A view cannot be reserved: it keeps USearch's default contexts, one per core.
        let mut this = if mapped {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            UsearchIndex::with_contexts(params, cores)?
        } else {
            UsearchIndex::new(params)?
        };
        this.read_only = mapped;
        let mut options = this.options(meta.dimensions as usize);
        // The file says how its vectors are stored; a dump of other parameters is refused.
        options.quantization = meta.quantization;
        if this.params.quantization.scalar() != meta.quantization {
            return Err(dump_err(format!(
                "stored as {:?}, the index asks for {:?}",
                meta.quantization, this.params.quantization
            )));
        }
        let index = Index::new(&options).map_err(|e| dump_err(e.to_string()))?;
        let opened = if mapped {
            index.view(name)
        } else {
            index.load(name)
        };
        opened.map_err(|e| dump_err(e.to_string()))?;
        index.change_expansion_add(this.params.expansion_add);
        index.change_expansion_search(this.params.expansion_search);
        if !mapped {
            index
                .reserve_capacity_and_threads(index.size().max(this.params.capacity), this.contexts)
                .map_err(|e| usearch_err("reserve", e))?;
        }
        *this.inner.write().unwrap_or_else(|e| e.into_inner()) = Some(index);
        Ok(this)
    }
}

/// A vector as the index's i8 levels: round(127 · x / [`CLIP`]), clamped to ±127.
fn quantize_i8(v: &[f32]) -> Vec<i8> {
    v.iter()
        .map(|x| (x * 127.0 / CLIP).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

impl VectorSearch for UsearchIndex {
    fn search(&self, query: &[f32], k: usize, live: &(dyn Fn(PointId) -> bool + Sync)) -> Vec<Hit> {
        self.search_with_ef(query, k, self.expansion_search(), live)
    }

    fn len(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.as_ref().map_or(0, Index::size)
    }
}

impl VectorInsert for UsearchIndex {
    fn insert(&self, points: &[(PointId, Vec<f32>)]) {
        // The trait cannot fail (hnsw_rs cannot); a failure here is a bug or out of memory.
        if let Err(e) = self.try_insert(points) {
            tracing::error!("usearch insert failed: {e}");
        }
    }
}
