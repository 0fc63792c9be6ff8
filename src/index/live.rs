//! The live index: the ANN graph (an [`AnyIndex`]: hnsw_rs or USearch, as the store
//! recorded) plus which point is each object's current vector.
//!
//! A point is live when it is the current vector of some object. With USearch a superseded
//! point is removed from the graph when its successor is committed; hnsw_rs cannot remove, so
//! there it stays as a tombstone, filtered out at search time until a rebuild drops it. (A
//! USearch dump loaded at open may also hold points superseded after it was written: they are
//! tombstones too, until a rebuild.)
//!
//! New vectors go in in two steps, so that searches are not held up by the graph insertion:
//! [`LiveIndex::prepare`] (under a read lock) inserts their points into the graph, where no
//! search returns them yet, as no object owns them; [`LiveIndex::commit`] (under the write
//! lock, a few map updates and removals) makes them current.
//!
//! With f32 or f16 vectors in a USearch graph, the graph's copy is the only one:
//! [`LiveIndex::current`] reads it back (348 bytes per object not held twice at 87 values,
//! f32; 174 with f16). An f16 graph's vectors are the scaled vectors rounded to half precision
//! ([`LiveIndex::scale`]): every distance the engine computes is then exact on the values the
//! graph holds; for a query that is not a kept vector (one a client sends, not an object's
//! own), a search takes [`RERANK`] times more candidates and orders them by their f32
//! distance to the (unrounded) query. With i8 vectors (and with hnsw_rs), each object's
//! exact f32 vector is held here, and an i8 search is re-ranked the same way.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::embed::{l2, EmbeddingSpec};
use crate::model::VectorVersion;
use crate::store::IndexDump;

use super::{
    order, AnyIndex, IndexConfig, IndexError, PointId, Result, VectorInsert, VectorSearch,
};

/// Candidates per wanted neighbour that a quantized search re-ranks with f32 distances.
pub const RERANK: usize = 4;

/// An object's current embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub point: PointId,
    pub seq: u32,
    pub facts: Facts,
    pub vector: Vec<f32>,
}

/// A vector to (re)place in the index.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub object_id: String,
    /// The object's vector version (0, 1, ...).
    pub seq: u32,
    pub point: PointId,
    /// What the version says of its object (`VectorVersion::n_detections`, `from_mjd`).
    pub facts: Facts,
    /// Raw features (unscaled), as stored.
    pub raw: Vec<f32>,
}

/// What an object's current vector version says of it, kept in its slot: what a search hit
/// reports, and what its filters test, without reading the object's record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Facts {
    /// Detections the version was embedded from.
    pub detections: u32,
    /// MJD of the last detection then (NaN without one).
    pub last_mjd: f64,
}

impl From<&VectorVersion> for Facts {
    fn from(v: &VectorVersion) -> Facts {
        Facts {
            detections: v.n_detections,
            last_mjd: v.from_mjd,
        }
    }
}

/// What the live index keeps per object.
struct Slot {
    id: Arc<str>,
    point: PointId,
    seq: u32,
    /// The current version's [`Facts`], kept apart so that the count fills what was padding
    /// after `seq` (8 bytes more per object, not 16).
    detections: u32,
    last_mjd: f64,
    /// The vector, unless the graph holds it ([`AnyIndex::holds_vectors`]).
    vector: Option<Box<[f32]>>,
}

impl Slot {
    fn facts(&self) -> Facts {
        Facts {
            detections: self.detections,
            last_mjd: self.last_mjd,
        }
    }
}

/// The live objects, numbered as they first come (objects are never dropped): one [`Slot`] each
/// in a vector, found by id through a table of their numbers and by point through a vector of
/// numbers. About 95 bytes per object with the id's own allocation, when the graph holds the
/// vectors (a map keyed by id and one keyed by point took ~185).
#[derive(Default)]
struct Objects {
    slots: Vec<Slot>,
    by_id: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    /// By point id: the number of the object it is the current point of, or [`NO_OWNER`].
    owner: Vec<u32>,
}

const NO_OWNER: u32 = u32::MAX;

impl Objects {
    fn hash(&self, id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(id)
    }

    fn get(&self, id: &str) -> Option<&Slot> {
        let slots = &self.slots;
        self.by_id
            .find(self.hash(id), |&n| &*slots[n as usize].id == id)
            .map(|&n| &slots[n as usize])
    }

    /// The object whose current point `point` is.
    fn owner(&self, point: PointId) -> Option<&Slot> {
        match self.owner.get(point as usize) {
            Some(&n) if n != NO_OWNER => Some(&self.slots[n as usize]),
            _ => None,
        }
    }

    /// Makes `slot` its object's current one; returns its number and the point it replaces.
    fn set(&mut self, slot: Slot) -> (u32, Option<PointId>) {
        let Slot {
            id,
            point,
            seq,
            detections,
            last_mjd,
            vector,
        } = slot;
        let hash = self.hash(&id);
        let slots = &self.slots;
        let found = self
            .by_id
            .find(hash, |&n| slots[n as usize].id == id)
            .copied();
        let (n, old) = match found {
            Some(n) => {
                let slot = &mut self.slots[n as usize];
                let old = slot.point;
                (slot.point, slot.seq, slot.vector) = (point, seq, vector);
                (slot.detections, slot.last_mjd) = (detections, last_mjd);
                if let Some(o) = self.owner.get_mut(old as usize) {
                    *o = NO_OWNER;
                }
                (n, Some(old))
            }
            None => {
                let n = self.slots.len() as u32;
                self.slots.push(Slot {
                    id,
                    point,
                    seq,
                    detections,
                    last_mjd,
                    vector,
                });
                let (slots, hasher) = (&self.slots, &self.hasher);
                self.by_id.insert_unique(hash, n, |&m| {
                    use std::hash::BuildHasher;
                    hasher.hash_one(&*slots[m as usize].id)
                });
                (n, None)
            }
        };
        let at = point as usize;
        if at >= self.owner.len() {
            self.owner.resize(at + 1, NO_OWNER);
        }
        self.owner[at] = n;
        (n, old)
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter()
    }
}

/// The features that a query scans over every object (the flux group:
/// [`EmbeddingSpec::scanned_dims`]), copied out of each object's current vector into one table,
/// a row per object in the order of their numbers. A scan reads 44 bytes per object here
/// instead of reading every vector back from the graph (435 ns per object with f16 vectors).
struct Scanned {
    /// Positions in a vector of the scanned features.
    dims: Vec<usize>,
    /// Row n: object n's values at `dims`.
    rows: Vec<f32>,
}

impl Scanned {
    fn new(spec: &EmbeddingSpec) -> Scanned {
        Scanned {
            dims: spec.scanned_dims(),
            rows: Vec::new(),
        }
    }

    fn set(&mut self, n: usize, vector: &[f32]) {
        let w = self.dims.len();
        if self.rows.len() < (n + 1) * w {
            self.rows.resize((n + 1) * w, 0.0);
        }
        for (j, &i) in self.dims.iter().enumerate() {
            self.rows[n * w + j] = vector.get(i).copied().unwrap_or(f32::NAN);
        }
    }

    fn row(&self, n: usize) -> &[f32] {
        let w = self.dims.len();
        &self.rows[n * w..(n + 1) * w]
    }
}

/// A scaled [`Entry`], its object id interned.
struct Scaled {
    object_id: Arc<str>,
    seq: u32,
    point: PointId,
    facts: Facts,
    vector: Vec<f32>,
}

pub struct LiveIndex {
    /// Shared, so that a query takes it without copying its names and scales.
    pub spec: Arc<EmbeddingSpec>,
    index: AnyIndex,
    config: IndexConfig,
    /// Which graph `index` is (unique in the process; a swap gives a new one).
    graph_id: u64,
    current: Objects,
    /// The points that are some object's current one, as bits: the search filter's test of
    /// every candidate.
    live_points: LiveBits,
    /// One past the highest point id in the graph.
    watermark: PointId,
    /// Points removed from the graph since it was built (USearch; see [`LiveIndex::worn`]).
    removed: usize,
    /// The scanned features of every object.
    scanned: Scanned,
}

/// A loaded dump being given its objects; see [`LiveIndex::load`].
pub struct Loader {
    live: LiveIndex,
    /// Entries whose points the dump does not hold.
    replay: Vec<Entry>,
}

impl Loader {
    /// Adds an object's current entry.
    pub fn add(&mut self, entry: Entry) {
        let live = &mut self.live;
        if entry.point >= live.watermark {
            self.replay.push(entry);
            return;
        }
        let vector = live.scale(&entry.raw);
        let version = (entry.point, entry.seq, entry.facts);
        live.make_current(Arc::from(entry.object_id), version, vector);
    }

    /// The index, once the entries newer than the dump are inserted; and how many there were.
    pub fn finish(self) -> (LiveIndex, usize) {
        let Loader { mut live, replay } = self;
        let replayed = replay.len();
        live.upsert(replay);
        (live, replayed)
    }
}

/// Scaled entries whose points are in the graph but not live yet; see the module doc.
pub struct Prepared {
    entries: Vec<Scaled>,
    graph_id: u64,
}

/// The points of scaled entries, as the graph takes them.
fn points<'a>(entries: impl IntoIterator<Item = &'a Scaled>) -> Vec<(PointId, Vec<f32>)> {
    entries
        .into_iter()
        .map(|e| (e.point, e.vector.clone()))
        .collect()
}

fn next_graph_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A set of point ids as a bitset (point ids are dense: numbered from 0 as vectors are made).
#[derive(Default)]
struct LiveBits(Vec<u64>);

impl LiveBits {
    fn set(&mut self, p: PointId) {
        let word = (p / 64) as usize;
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (p % 64);
    }

    fn clear(&mut self, p: PointId) {
        if let Some(w) = self.0.get_mut((p / 64) as usize) {
            *w &= !(1 << (p % 64));
        }
    }

    fn contains(&self, p: PointId) -> bool {
        self.0
            .get((p / 64) as usize)
            .is_some_and(|w| w & (1 << (p % 64)) != 0)
    }
}

impl LiveIndex {
    /// Builds an index of `config`'s backend over the given current vectors.
    pub fn build(spec: EmbeddingSpec, config: IndexConfig, entries: Vec<Entry>) -> Result<Self> {
        let index = AnyIndex::new(&config.with_capacity(entries.len()))?;
        let scanned = Scanned::new(&spec);
        let mut live = LiveIndex {
            spec: Arc::new(spec),
            index,
            config,
            graph_id: next_graph_id(),
            current: Objects::default(),
            live_points: LiveBits::default(),
            watermark: 0,
            removed: 0,
            scanned,
        };
        let scaled = live.scaled(entries);
        let order = {
            let vectors: Vec<&[f32]> = scaled.iter().map(|e| e.vector.as_slice()).collect();
            order::build_order(&vectors)
        };
        for part in [&order.backbone, &order.rest] {
            live.index.insert(&points(part.iter().map(|&i| &scaled[i])));
        }
        let graph_id = live.graph_id;
        live.commit(Prepared {
            entries: scaled,
            graph_id,
        });
        live.index.built();
        Ok(live)
    }

    /// Loads a dump written by [`LiveIndex::dump`]: objects are then added one at a time
    /// ([`Loader::add`], in any order), so that no list of every object is made; those whose
    /// point is newer than the dump are inserted at [`Loader::finish`] (the replay). A dump
    /// written by another backend than `config`'s is refused (the caller rebuilds).
    pub fn load(
        spec: EmbeddingSpec,
        config: IndexConfig,
        dir: &Path,
        dump: &IndexDump,
    ) -> Result<Loader> {
        if dump.backend != config.backend {
            return Err(IndexError::Dump {
                path: dir.join(&dump.basename),
                detail: format!(
                    "written by {}, the store's index is {}",
                    dump.backend, config.backend
                ),
            });
        }
        let index = AnyIndex::load(&config, dir, &dump.basename)?;
        index.built();
        let scanned = Scanned::new(&spec);
        let live = LiveIndex {
            spec: Arc::new(spec),
            index,
            config,
            graph_id: next_graph_id(),
            current: Objects::default(),
            live_points: LiveBits::default(),
            watermark: dump.watermark,
            removed: 0,
            scanned,
        };
        Ok(Loader {
            live,
            replay: Vec::new(),
        })
    }

    /// Inserts new vectors; each replaces its object's previous one, which is removed (USearch)
    /// or becomes a tombstone (hnsw_rs).
    pub fn upsert(&mut self, entries: Vec<Entry>) {
        let prepared = self.prepare(entries);
        self.commit(prepared);
    }

    /// Scales `entries` and inserts their points into the graph, not live yet: the slow half
    /// of [`LiveIndex::upsert`], which needs only a shared borrow.
    pub fn prepare(&self, entries: Vec<Entry>) -> Prepared {
        let entries = self.scaled(entries);
        self.index.insert(&points(&entries));
        Prepared {
            entries,
            graph_id: self.graph_id,
        }
    }

    /// `entries` with their vectors scaled for this graph ([`LiveIndex::scale`]).
    fn scaled(&self, entries: Vec<Entry>) -> Vec<Scaled> {
        entries
            .into_iter()
            .map(|e| Scaled {
                object_id: Arc::from(e.object_id),
                seq: e.seq,
                point: e.point,
                facts: e.facts,
                vector: self.scale(&e.raw),
            })
            .collect()
    }

    /// Makes prepared entries current (their objects' previous points are removed, or become
    /// tombstones). If the graph was swapped since they were prepared, their points go into
    /// this one first.
    pub fn commit(&mut self, prepared: Prepared) {
        if prepared.graph_id != self.graph_id {
            self.index.insert(&points(&prepared.entries));
        }
        for Scaled {
            object_id: id,
            seq,
            point,
            facts,
            vector,
        } in prepared.entries
        {
            self.watermark = self.watermark.max(point + 1);
            if let Some(old) = self.make_current(id, (point, seq, facts), vector) {
                if self.index.remove(old) {
                    self.removed += 1;
                }
            }
        }
    }

    /// Whether the vectors are kept here (the graph does not hold them).
    fn hold_vectors(&self) -> bool {
        !self.index.holds_vectors()
    }

    /// The vector this index keeps for stored raw features: scaled by the spec, then as the
    /// graph stores it (rounded to half precision in an f16 graph; [`AnyIndex::round`]).
    /// Whoever compares a stored vector with [`LiveIndex::current`] scales it here.
    pub fn scale(&self, raw: &[f32]) -> Vec<f32> {
        let mut v = self.spec.scale(raw).0;
        self.keep(&mut v);
        v
    }

    /// Whether `v` is a vector as this graph keeps it, so that the graph's distances to it are
    /// exact on the kept values: any vector in an f32 graph; in an f16 graph, one whose every
    /// value is a half-precision number (an object's own vector, [`LiveIndex::keep`]), where
    /// an f32 query's candidates are re-ranked.
    fn is_kept(&self, v: &[f32]) -> bool {
        self.index.holds_vectors() && self.index.is_rounded(v)
    }

    /// A scaled vector as this index keeps it (see [`LiveIndex::scale`]).
    pub fn keep(&self, v: &mut [f32]) {
        self.index.round(v);
    }

    /// A slot's vector: held, or read back from the graph.
    fn vector_of(&self, slot: &Slot) -> Option<Vec<f32>> {
        match &slot.vector {
            Some(v) => Some(v.to_vec()),
            None => {
                let v = self.index.vector(slot.point);
                if v.is_none() {
                    tracing::error!(
                        point = slot.point,
                        "a live point's vector is not in the graph"
                    );
                }
                v
            }
        }
    }

    fn current_of(&self, slot: &Slot) -> Option<Current> {
        Some(Current {
            point: slot.point,
            seq: slot.seq,
            facts: slot.facts(),
            vector: self.vector_of(slot)?,
        })
    }

    /// Makes `slot` its object's current one (its point live); returns the point it replaces
    /// (no longer live).
    /// `version` is the point, sequence number and facts of the object's new vector.
    fn make_current(
        &mut self,
        id: Arc<str>,
        version: (PointId, u32, Facts),
        vector: Vec<f32>,
    ) -> Option<PointId> {
        let (point, seq, facts) = version;
        // Held here (moved, not copied) unless the graph holds it.
        let (held, unheld) = if self.hold_vectors() {
            (Some(vector.into_boxed_slice()), None)
        } else {
            (None, Some(vector))
        };
        let (n, old) = self.current.set(Slot {
            id,
            point,
            seq,
            detections: facts.detections,
            last_mjd: facts.last_mjd,
            vector: held,
        });
        let values = match &unheld {
            Some(v) => v.as_slice(),
            None => self.current.slots[n as usize]
                .vector
                .as_deref()
                .unwrap_or_default(),
        };
        self.scanned.set(n as usize, values);
        if let Some(o) = old {
            self.live_points.clear(o);
        }
        self.live_points.set(point);
        old
    }

    /// The `k` nearest live objects to `query`, without `exclude`.
    pub fn search(&self, query: &[f32], k: usize, exclude: Option<&str>) -> Vec<(Arc<str>, f32)> {
        self.search_by(query, k, exclude, |s, d| (s.id.clone(), d))
    }

    /// [`LiveIndex::search`] with each hit's [`Facts`], read from the slot the hit was found
    /// by (FindSimilar's filters and answer need them; looking each id up again cost ~10% of
    /// a query at 1M: BENCHMARKS.md, "Huge pages").
    pub fn search_with_facts(
        &self,
        query: &[f32],
        k: usize,
        exclude: Option<&str>,
    ) -> Vec<(Arc<str>, f32, Facts)> {
        self.search_by(query, k, exclude, |s, d| (s.id.clone(), d, s.facts()))
    }

    fn search_by<T>(
        &self,
        query: &[f32],
        k: usize,
        exclude: Option<&str>,
        hit: impl Fn(&Slot, f32) -> T,
    ) -> Vec<T> {
        let excluded = exclude.and_then(|id| self.current.get(id)).map(|c| c.point);
        let live = |p: PointId| Some(p) != excluded && self.live_points.contains(p);
        if self.index.exact_distances() || self.is_kept(query) {
            return self
                .index
                .search(query, k, &live)
                .into_iter()
                .filter_map(|h| Some(hit(self.current.owner(h.point)?, h.distance)))
                .collect();
        }
        // Quantized vectors: more candidates, ordered by their f32 distance to the query.
        let wanted = k.saturating_mul(RERANK);
        let ef = self.index.ef_search().max(wanted);
        let mut buf = Vec::new();
        let mut hits: Vec<(&Slot, f32)> = self
            .index
            .search_with_ef(query, wanted, ef, &live)
            .into_iter()
            .filter_map(|h| {
                let s = self.current.owner(h.point)?;
                Some((s, self.slot_distance(s, &mut buf, |v| l2(query, v))?))
            })
            .collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
        hits.into_iter().take(k).map(|(s, d)| hit(s, d)).collect()
    }

    /// The [`Facts`] of an object's current vector version, if it has one.
    pub fn facts(&self, object_id: &str) -> Option<Facts> {
        self.current.get(object_id).map(Slot::facts)
    }

    /// An object's current point and exact vector (a copy).
    pub fn current(&self, object_id: &str) -> Option<Current> {
        self.current_of(self.current.get(object_id)?)
    }

    /// The distance from `to` to `object_id`'s current vector, read into `buf` (no allocation
    /// once it has grown, where [`LiveIndex::current`] copies the vector out).
    pub fn distance_to(&self, object_id: &str, to: &[f32], buf: &mut Vec<f32>) -> Option<f32> {
        self.distance_by(object_id, buf, |v| l2(v, to))
    }

    /// `distance` of `object_id`'s current vector, read into `buf` as in
    /// [`LiveIndex::distance_to`].
    pub fn distance_by(
        &self,
        object_id: &str,
        buf: &mut Vec<f32>,
        distance: impl Fn(&[f32]) -> f32,
    ) -> Option<f32> {
        self.with_vector(object_id, buf, distance)
    }

    /// `f` of `object_id`'s current vector, read into `buf` as in [`LiveIndex::distance_to`]
    /// (for several distances from one read).
    pub fn with_vector<R>(
        &self,
        object_id: &str,
        buf: &mut Vec<f32>,
        f: impl FnOnce(&[f32]) -> R,
    ) -> Option<R> {
        self.slot_distance(self.current.get(object_id)?, buf, f)
    }

    /// `f` of a slot's vector: held, or read from the graph into `buf`.
    fn slot_distance<R>(
        &self,
        slot: &Slot,
        buf: &mut Vec<f32>,
        f: impl FnOnce(&[f32]) -> R,
    ) -> Option<R> {
        match &slot.vector {
            Some(v) => Some(f(v)),
            None => self.index.vector_into(slot.point, buf).then(|| f(buf)),
        }
    }

    /// Every live object with its current vector (copied one at a time).
    pub fn objects(&self) -> impl Iterator<Item = (&Arc<str>, Current)> + '_ {
        self.current
            .iter()
            .filter_map(|s| Some((&s.id, self.current_of(s)?)))
    }

    /// Calls `f` with every live object and its values of the scanned features (those at
    /// [`LiveIndex::scanned_dims`], in that order), read from one table.
    pub fn for_each_scanned(&self, mut f: impl FnMut(&Arc<str>, &[f32])) {
        for (n, slot) in self.current.iter().enumerate() {
            f(&slot.id, self.scanned.row(n));
        }
    }

    /// Positions in a vector of the features [`LiveIndex::for_each_scanned`] gives
    /// ([`EmbeddingSpec::scanned_dims`]).
    pub fn scanned_dims(&self) -> &[usize] {
        &self.scanned.dims
    }

    /// Every live object's id.
    pub fn ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.current.iter().map(|s| &s.id)
    }

    /// Candidates kept while inserting into this graph from now on (USearch's ef_construction
    /// for live ingest; a rebuilt graph starts again from the recorded parameters).
    pub fn set_insert_expansion(&self, n: usize) {
        self.index.set_expansion_add(n);
    }

    /// Candidates kept by every search of this graph from now on ([`AnyIndex::set_ef_search`];
    /// a rebuilt graph starts again from the recorded parameters). Returns whether the
    /// backend took it.
    pub fn set_search_expansion(&self, n: usize) -> bool {
        self.index.set_ef_search(n)
    }

    /// Bytes of the graph, where its backend counts them ([`AnyIndex::memory_bytes`]).
    pub fn graph_memory_bytes(&self) -> Option<usize> {
        self.index.memory_bytes()
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// Points in the graph that no object owns.
    pub fn tombstones(&self) -> usize {
        self.index.len().saturating_sub(self.current.len())
    }

    /// What a rebuild would clean: the tombstones, plus the points removed since the graph was
    /// built. USearch reuses a removed point's slot for a later insert, and a graph worn that
    /// way links less well (recall@10 0.951 after every object of 100k was re-embedded three
    /// times, against 0.983 for a fresh graph: BENCHMARKS.md), so removals count as tombstones
    /// towards the rebuild threshold.
    pub fn worn(&self) -> usize {
        self.tombstones() + self.removed
    }

    /// The backend and parameters of the graph.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// An empty graph of this index's backend and parameters, for a rebuild.
    pub fn empty_graph(&self, capacity: usize) -> Result<AnyIndex> {
        AnyIndex::new(&self.config.with_capacity(capacity))
    }

    /// Dumps the graph; the returned record says what the dump covers and which backend
    /// wrote it.
    pub fn dump(&self, dir: &Path) -> Result<IndexDump> {
        let backend = self.index.backend();
        let prefix = match backend {
            crate::store::IndexBackend::HnswRs => "hnsw",
            crate::store::IndexBackend::Usearch => "usearch",
        };
        let name = format!("{prefix}-s{}-p{}", self.spec.version, self.watermark);
        let basename = self.index.dump(dir, &name)?;
        Ok(IndexDump {
            basename,
            spec_version: self.spec.version,
            watermark: self.watermark,
            backend,
        })
    }

    /// The current vectors, for a rebuild off the lock.
    pub fn snapshot(&self) -> Vec<(PointId, Vec<f32>)> {
        self.current
            .iter()
            .filter_map(|s| Some((s.point, self.vector_of(s)?)))
            .collect()
    }

    /// Swaps in a graph built from `snapshot` (whose points are `built`), first adding the
    /// current vectors that arrived after the snapshot was taken.
    pub fn swap_graph(&mut self, graph: AnyIndex, built: &HashSet<PointId>) {
        let missing: Vec<(PointId, Vec<f32>)> = self
            .current
            .iter()
            .filter(|s| !built.contains(&s.point))
            .filter_map(|s| Some((s.point, self.vector_of(s)?)))
            .collect();
        graph.insert(&missing);
        graph.built();
        // Points superseded while the graph was built: removed where the backend can.
        if graph.can_remove() {
            for p in built {
                if !self.live_points.contains(*p) {
                    graph.remove(*p);
                }
            }
        }
        self.index = graph;
        self.graph_id = next_graph_id();
        self.removed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::Embedder;
    use crate::store::IndexBackend;

    fn entry(dim: usize, id: &str, seq: u32, point: PointId, x: f32) -> Entry {
        let mut raw = vec![0.0f32; dim];
        raw[0] = x;
        Entry {
            object_id: id.into(),
            seq,
            point,
            facts: Facts {
                detections: seq + 1,
                last_mjd: 60_000.0 + f64::from(seq),
            },
            raw,
        }
    }

    #[test]
    fn live_bits_set_clear_and_grow() {
        let mut bits = LiveBits::default();
        assert!(!bits.contains(0) && !bits.contains(1_000_000));
        for p in [0, 63, 64, 130, 1_000_000] {
            bits.set(p);
        }
        bits.clear(64);
        bits.clear(5_000_000);
        let live: Vec<PointId> = (0..1_000_001).filter(|&p| bits.contains(p)).collect();
        assert_eq!(live, vec![0, 63, 130, 1_000_000]);
    }

    fn config(backend: IndexBackend) -> IndexConfig {
        IndexConfig {
            backend,
            ..IndexConfig::default()
        }
    }

    /// Tombstones left by one superseded point: hnsw_rs keeps it, USearch removes it.
    fn tombstones_after_one_move(backend: IndexBackend) -> usize {
        match backend {
            IndexBackend::HnswRs => 1,
            IndexBackend::Usearch => 0,
        }
    }

    #[test]
    fn superseded_points_are_not_found() {
        for backend in IndexBackend::ALL {
            let embedder = Embedder::new();
            let dim = embedder.dim();
            let spec = EmbeddingSpec::initial(&embedder);
            let mut live = LiveIndex::build(
                spec,
                config(backend),
                (0..10)
                    .map(|i| entry(dim, &format!("o{i}"), 0, i, i as f32 * 0.1))
                    .collect(),
            )
            .unwrap();
            // o3 moves away: its old point 3 is gone (or a tombstone), its new point 10 live.
            let old = live.current("o3").unwrap().vector.clone();
            live.upsert(vec![entry(dim, "o3", 1, 10, 5.0)]);
            let ids: Vec<String> = live
                .search(&old, 2, None)
                .iter()
                .map(|h| h.0.to_string())
                .collect();
            assert_eq!(ids.len(), 2);
            assert!(!ids.contains(&"o3".to_string()), "{backend}: {ids:?}");
            let new = live.current("o3").unwrap().vector.clone();
            assert_eq!(&*live.search(&new, 1, None)[0].0, "o3");
            assert_eq!(live.tombstones(), tombstones_after_one_move(backend));
            // Removed or tombstoned, the superseded point counts towards a rebuild.
            assert_eq!(live.worn(), 1);
        }
    }

    /// The table of scanned features (the flux group) holds each object's current values,
    /// through a move and a reload of the dump.
    #[test]
    fn the_scanned_table_follows_the_current_vectors() {
        for backend in IndexBackend::ALL {
            let embedder = Embedder::new();
            let dim = embedder.dim();
            let spec = EmbeddingSpec::initial(&embedder);
            let dims = spec.scanned_dims();
            assert_eq!(dims.len(), crate::embed::FLUX_FEATURES.len());
            let raw = |x: f32| -> Vec<f32> { (0..dim).map(|i| x + i as f32 / 8.0).collect() };
            let mut current: Vec<Entry> = (0..30u64)
                .map(|i| Entry {
                    object_id: format!("o{i}"),
                    seq: 0,
                    point: i,
                    facts: Facts {
                        detections: 1,
                        last_mjd: 60_000.0,
                    },
                    raw: raw(i as f32),
                })
                .collect();
            let mut live =
                LiveIndex::build(spec.clone(), config(backend), current.clone()).unwrap();
            let moved = Entry {
                object_id: "o7".into(),
                seq: 1,
                point: 30,
                facts: Facts {
                    detections: 2,
                    last_mjd: 60_010.5,
                },
                raw: raw(-4.0),
            };
            live.upsert(vec![moved.clone()]);
            current[7] = moved;
            let check = |live: &LiveIndex| {
                let mut seen = 0;
                live.for_each_scanned(|id, row| {
                    let n: usize = id[1..].parse().unwrap();
                    let v = live.scale(&current[n].raw);
                    let want: Vec<f32> = dims.iter().map(|&i| v[i]).collect();
                    assert_eq!(row, want.as_slice(), "{backend} {id}");
                    seen += 1;
                });
                assert_eq!(seen, 30, "{backend}");
                // Each slot reports its current version's detections.
                let facts = |id: &str| live.facts(id).map(|f| (f.detections, f.last_mjd));
                assert_eq!(facts("o7"), Some((2, 60_010.5)), "{backend}");
                assert_eq!(facts("o8"), Some((1, 60_000.0)), "{backend}");
                assert_eq!(facts("o30"), None, "{backend}");
            };
            check(&live);
            let dir = tempfile::tempdir().unwrap();
            let dump = live.dump(dir.path()).unwrap();
            let mut loader = LiveIndex::load(spec, config(backend), dir.path(), &dump).unwrap();
            for e in current.iter().rev() {
                loader.add(e.clone());
            }
            let (loaded, replayed) = loader.finish();
            assert_eq!(replayed, 0);
            check(&loaded);
        }
    }

    #[test]
    fn prepared_points_are_found_once_committed_even_across_a_graph_swap() {
        for backend in IndexBackend::ALL {
            let embedder = Embedder::new();
            let dim = embedder.dim();
            let entries: Vec<Entry> = (0..20)
                .map(|i| entry(dim, &format!("o{i}"), 0, i, i as f32 * 0.1))
                .collect();
            let spec = EmbeddingSpec::initial(&embedder);
            let mut live = LiveIndex::build(spec, config(backend), entries).unwrap();
            let moved = entry(dim, "o0", 1, 20, 5.0);
            let query = moved.raw.clone();
            let prepared = live.prepare(vec![moved]);
            // In the graph, but no search returns it before the commit: o0 is still at 0.
            let hits = live.search(&query, 1, None);
            assert_eq!(&*hits[0].0, "o19");
            assert_eq!(live.current("o0").unwrap().point, 0);

            // A rebuild swaps the graph in between: the commit puts the point into the new one.
            let snapshot = live.snapshot();
            let built: HashSet<PointId> = snapshot.iter().map(|p| p.0).collect();
            let graph = live.empty_graph(snapshot.len()).unwrap();
            assert_eq!(graph.backend(), backend);
            graph.insert(&snapshot);
            live.swap_graph(graph, &built);
            live.commit(prepared);
            let hits = live.search(&query, 1, None);
            assert_eq!((&*hits[0].0, hits[0].1), ("o0", 0.0));
            assert_eq!(live.current("o0").unwrap().point, 20);
            assert_eq!(live.tombstones(), tombstones_after_one_move(backend));
        }
    }

    /// With i8 or f16 vectors in the graph, answers are ordered by their f32 distance to the
    /// query (to the exact vector with i8; to the vector as the graph holds it, rounded to
    /// half precision, with f16) and recall@10 against exact f32 search holds (re-rank of
    /// [`RERANK`] x k candidates). An f16 index's current vectors are the rounded ones.
    #[test]
    fn quantized_graphs_are_reranked_to_exact_distances() {
        use crate::index::{exact_knn, recall, Hit, Quantization, UsearchParams};
        use rand::{Rng, SeedableRng};
        use rayon::prelude::*;
        let embedder = Embedder::new();
        let dim = embedder.dim();
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
        // The initial spec with unit weights scales nothing, so raw values are the vectors: clustered, within
        // the scaler's clip as scaled vectors are.
        let centres: Vec<Vec<f32>> = (0..30)
            .map(|_| (0..dim).map(|_| rng.gen_range(-3.0..3.0)).collect())
            .collect();
        let entries: Vec<Entry> = (0..3000u64)
            .map(|i| Entry {
                object_id: format!("o{i}"),
                seq: 0,
                point: i,
                facts: Facts {
                    detections: 1,
                    last_mjd: 60_000.0,
                },
                raw: centres[i as usize % 30]
                    .iter()
                    .map(|c| c + rng.gen_range(-1.0..1.0))
                    .collect(),
            })
            .collect();
        let points: Vec<(PointId, Vec<f32>)> =
            entries.iter().map(|e| (e.point, e.raw.clone())).collect();
        for quantization in [Quantization::F16, Quantization::I8] {
            let config = IndexConfig {
                backend: IndexBackend::Usearch,
                usearch: UsearchParams {
                    quantization,
                    ..UsearchParams::default()
                },
                ..IndexConfig::default()
            };
            let mut spec = EmbeddingSpec::initial(&embedder);
            spec.weights = vec![1.0; dim];
            let live = LiveIndex::build(spec, config, entries.clone()).unwrap();
            // Built in bulk with 400 candidates; live insertions from now on keep fewer.
            match &live.index {
                AnyIndex::Usearch(i) => assert_eq!(i.expansion_add(), 64),
                AnyIndex::Hnsw(_) => unreachable!(),
            }
            // f16: one copy, in the graph; i8: the exact vectors held beside it.
            assert_eq!(live.hold_vectors(), quantization == Quantization::I8);
            let (mut got, mut want) = (Vec::new(), Vec::new());
            for q in (0..3000).step_by(25) {
                let id = format!("o{q}");
                let query = &points[q].1;
                let hits = live.search(query, 10, Some(&id));
                for (name, d) in &hits {
                    let p: usize = name[1..].parse().unwrap();
                    let mut kept = points[p].1.clone();
                    quantization.round(&mut kept);
                    assert_eq!(live.current(name).unwrap().vector, kept, "{quantization:?}");
                    assert!((d - l2(query, &kept)).abs() < 1e-5, "{quantization:?}");
                }
                assert!(hits.windows(2).all(|w| w[0].1 <= w[1].1));
                // An object's own (kept) vector as the query: f16 answers straight from the
                // graph, at the distances between kept vectors.
                let own = live.current(&id).unwrap().vector;
                assert_eq!(live.is_kept(&own), quantization == Quantization::F16);
                for (name, d) in live.search(&own, 10, Some(&id)) {
                    let other = live.current(&name).unwrap().vector;
                    assert!((d - l2(&own, &other)).abs() < 1e-5, "{quantization:?}");
                }
                let as_hits = |h: &[(Arc<str>, f32)]| -> Vec<Hit> {
                    h.iter()
                        .map(|(n, d)| Hit {
                            point: n[1..].parse().unwrap(),
                            distance: *d,
                        })
                        .collect()
                };
                got.push(as_hits(&hits));
                want.push(exact_knn(points.par_iter(), query, 10, &|p| {
                    p != q as PointId
                }));
            }
            let r = recall(&got, &want);
            assert!(r >= 0.95, "{quantization:?}: recall@10 {r}");
        }
    }

    /// A graph of more than `order::MIN_POINTS` points is built in cluster order (a backbone,
    /// then the rest by cluster): every object is current and found as exact search finds it.
    #[test]
    fn a_graph_built_in_cluster_order_finds_what_exact_search_finds() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
        for backend in IndexBackend::ALL {
            let embedder = Embedder::new();
            let dim = embedder.dim();
            let n = order::MIN_POINTS + 2_000;
            let centres: Vec<Vec<f32>> = (0..30)
                .map(|_| (0..dim).map(|_| rng.gen_range(-3.0f32..3.0)).collect())
                .collect();
            let entries: Vec<Entry> = (0..n as u64)
                .map(|i| {
                    let c = &centres[i as usize % centres.len()];
                    let mut e = entry(dim, &format!("o{i}"), 0, i, 0.0);
                    e.raw = c.iter().map(|x| x + rng.gen_range(-1.0f32..1.0)).collect();
                    e
                })
                .collect();
            let spec = EmbeddingSpec::initial(&embedder)
                .refit(&ndarray::Array2::from_shape_fn((n, dim), |(r, c)| {
                    f64::from(entries[r].raw[c])
                }));
            let live = LiveIndex::build(spec, config(backend), entries).unwrap();
            assert_eq!(live.len(), n, "{backend}");
            let vectors: Vec<Vec<f32>> = (0..n)
                .map(|i| live.current(&format!("o{i}")).unwrap().vector.clone())
                .collect();
            let mut found = 0usize;
            let queries: Vec<usize> = (0..n).step_by(n / 100).collect();
            for &q in &queries {
                let mut exact: Vec<(f32, usize)> = (0..n)
                    .filter(|&i| i != q)
                    .map(|i| (l2(&vectors[q], &vectors[i]), i))
                    .collect();
                exact.sort_by(|a, b| a.0.total_cmp(&b.0));
                let want: HashSet<String> =
                    exact[..10].iter().map(|(_, i)| format!("o{i}")).collect();
                let own = format!("o{q}");
                let got = live.search(&vectors[q], 10, Some(&own));
                assert_eq!(got.len(), 10, "{backend}");
                found += got.iter().filter(|(id, _)| want.contains(&**id)).count();
            }
            let recall = found as f64 / (queries.len() * 10) as f64;
            assert!(recall >= 0.95, "{backend}: recall@10 {recall}");
        }
    }
}
