//! The live index: the HNSW graph plus which point is each object's current vector.
//!
//! A point is live when it is the current vector of some object; every other point in the
//! HNSW graph is a tombstone, filtered out at search time until a rebuild drops it.
//!
//! New vectors go in in two steps, so that searches are not held up by the HNSW insertion:
//! [`LiveIndex::prepare`] (under a read lock) inserts their points into the graph, where no
//! search returns them yet, as no object owns them; [`LiveIndex::commit`] (under the write
//! lock, a few map updates) makes them current.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::embed::EmbeddingSpec;
use crate::store::IndexDump;

use super::{HnswIndex, HnswParams, PointId, Result, VectorInsert, VectorSearch};

/// An object's current embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub point: PointId,
    pub seq: u32,
    pub vector: Vec<f32>,
}

/// A vector to (re)place in the index.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub object_id: String,
    /// The object's vector version (0, 1, ...).
    pub seq: u32,
    pub point: PointId,
    /// Raw features (unscaled), as stored.
    pub raw: Vec<f32>,
}

/// A scaled [`Entry`], its object id interned.
struct Scaled {
    object_id: Arc<str>,
    seq: u32,
    point: PointId,
    vector: Vec<f32>,
}

pub struct LiveIndex {
    pub spec: EmbeddingSpec,
    hnsw: HnswIndex,
    /// Which graph `hnsw` is (unique in the process; a swap gives a new one).
    graph_id: u64,
    current: foldhash::HashMap<Arc<str>, Current>,
    owner: foldhash::HashMap<PointId, Arc<str>>,
    /// The keys of `owner`, as bits: the search filter's test of every candidate.
    live_points: LiveBits,
    /// One past the highest point id in the graph.
    watermark: PointId,
}

/// Scaled entries whose points are in the graph but not live yet; see the module doc.
pub struct Prepared {
    entries: Vec<Scaled>,
    graph_id: u64,
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
    /// Builds an index over the given current vectors.
    pub fn build(spec: EmbeddingSpec, params: HnswParams, entries: Vec<Entry>) -> Result<Self> {
        let hnsw = HnswIndex::new(HnswParams {
            capacity: params.capacity.max(entries.len()),
            ..params
        })?;
        let mut live = LiveIndex {
            spec,
            hnsw,
            graph_id: next_graph_id(),
            current: Default::default(),
            owner: Default::default(),
            live_points: LiveBits::default(),
            watermark: 0,
        };
        live.upsert(entries);
        Ok(live)
    }

    /// Loads a dump and inserts the current vectors it does not hold (the replay). Returns the
    /// index and the number of vectors replayed.
    pub fn load(
        spec: EmbeddingSpec,
        params: HnswParams,
        dir: &Path,
        dump: &IndexDump,
        entries: &[Entry],
    ) -> Result<(Self, usize)> {
        let hnsw = HnswIndex::load(dir, &dump.basename, params)?;
        let mut live = LiveIndex {
            spec,
            hnsw,
            graph_id: next_graph_id(),
            current: Default::default(),
            owner: Default::default(),
            live_points: LiveBits::default(),
            watermark: dump.watermark,
        };
        live.current.reserve(entries.len());
        live.owner.reserve(entries.len());
        let mut new = Vec::new();
        for e in entries {
            let Entry {
                object_id: id,
                seq,
                point,
                raw,
            } = e;
            if *point >= dump.watermark {
                new.push(e.clone());
                continue;
            }
            let id: Arc<str> = Arc::from(id.as_str());
            let vector = live.spec.scale(raw).0;
            live.own(*point, id.clone());
            live.current.insert(
                id,
                Current {
                    point: *point,
                    seq: *seq,
                    vector,
                },
            );
        }
        let replayed = new.len();
        live.upsert(new);
        Ok((live, replayed))
    }

    /// Inserts new vectors; each replaces its object's previous one, which becomes a tombstone.
    pub fn upsert(&mut self, entries: Vec<Entry>) {
        let prepared = self.prepare(entries);
        self.commit(prepared);
    }

    /// Scales `entries` and inserts their points into the graph, not live yet: the slow half
    /// of [`LiveIndex::upsert`], which needs only a shared borrow.
    pub fn prepare(&self, entries: Vec<Entry>) -> Prepared {
        let entries: Vec<Scaled> = entries
            .into_iter()
            .map(|e| Scaled {
                object_id: Arc::from(e.object_id),
                seq: e.seq,
                point: e.point,
                vector: self.spec.scale(&e.raw).0,
            })
            .collect();
        let points: Vec<(PointId, Vec<f32>)> = entries
            .iter()
            .map(|e| (e.point, e.vector.clone()))
            .collect();
        self.hnsw.insert(&points);
        Prepared {
            entries,
            graph_id: self.graph_id,
        }
    }

    /// Makes prepared entries current (their objects' previous points become tombstones). If
    /// the graph was swapped since they were prepared, their points go into this one first.
    pub fn commit(&mut self, prepared: Prepared) {
        if prepared.graph_id != self.graph_id {
            let points: Vec<(PointId, Vec<f32>)> = prepared
                .entries
                .iter()
                .map(|e| (e.point, e.vector.clone()))
                .collect();
            self.hnsw.insert(&points);
        }
        for Scaled {
            object_id: id,
            seq,
            point,
            vector,
        } in prepared.entries
        {
            self.own(point, id.clone());
            self.watermark = self.watermark.max(point + 1);
            if let Some(old) = self.current.insert(id, Current { point, seq, vector }) {
                self.owner.remove(&old.point);
                self.live_points.clear(old.point);
            }
        }
    }

    /// Records that `point` is `id`'s live point.
    fn own(&mut self, point: PointId, id: Arc<str>) {
        self.owner.insert(point, id);
        self.live_points.set(point);
    }

    /// The `k` nearest live objects to `query`, without `exclude`.
    pub fn search(&self, query: &[f32], k: usize, exclude: Option<&str>) -> Vec<(Arc<str>, f32)> {
        let excluded = exclude.and_then(|id| self.current.get(id)).map(|c| c.point);
        let live = |p: PointId| Some(p) != excluded && self.live_points.contains(p);
        self.hnsw
            .search(query, k, &live)
            .into_iter()
            .filter_map(|h| self.owner.get(&h.point).map(|id| (id.clone(), h.distance)))
            .collect()
    }

    pub fn current(&self, object_id: &str) -> Option<&Current> {
        self.current.get(object_id)
    }

    pub fn objects(&self) -> impl Iterator<Item = (&Arc<str>, &Current)> {
        self.current.iter()
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
        self.hnsw.len().saturating_sub(self.current.len())
    }

    pub fn params(&self) -> &HnswParams {
        self.hnsw.params()
    }

    /// Dumps the graph; the returned record says what the dump covers.
    pub fn dump(&self, dir: &Path) -> Result<IndexDump> {
        let name = format!("hnsw-s{}-p{}", self.spec.version, self.watermark);
        let basename = self.hnsw.dump(dir, &name)?;
        Ok(IndexDump {
            basename,
            spec_version: self.spec.version,
            watermark: self.watermark,
        })
    }

    /// The current vectors, for a rebuild off the lock.
    pub fn snapshot(&self) -> Vec<(PointId, Vec<f32>)> {
        self.current
            .values()
            .map(|c| (c.point, c.vector.clone()))
            .collect()
    }

    /// Swaps in a graph built from `snapshot` (whose points are `built`), first adding the
    /// current vectors that arrived after the snapshot was taken.
    pub fn swap_graph(&mut self, graph: HnswIndex, built: &HashSet<PointId>) {
        let missing: Vec<(PointId, Vec<f32>)> = self
            .current
            .values()
            .filter(|c| !built.contains(&c.point))
            .map(|c| (c.point, c.vector.clone()))
            .collect();
        graph.insert(&missing);
        self.hnsw = graph;
        self.graph_id = next_graph_id();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::Embedder;

    fn entry(dim: usize, id: &str, seq: u32, point: PointId, x: f32) -> Entry {
        let mut raw = vec![0.0f32; dim];
        raw[0] = x;
        Entry {
            object_id: id.into(),
            seq,
            point,
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

    #[test]
    fn superseded_points_are_not_found() {
        let embedder = Embedder::new();
        let dim = embedder.dim();
        let spec = EmbeddingSpec::initial(&embedder);
        let mut live = LiveIndex::build(
            spec,
            HnswParams::default(),
            (0..10)
                .map(|i| entry(dim, &format!("o{i}"), 0, i, i as f32 * 0.1))
                .collect(),
        )
        .unwrap();
        // o3 moves away: its old point 3 is a tombstone, its new point 10 is live.
        let old = live.current("o3").unwrap().vector.clone();
        live.upsert(vec![entry(dim, "o3", 1, 10, 5.0)]);
        let ids: Vec<String> = live
            .search(&old, 2, None)
            .iter()
            .map(|h| h.0.to_string())
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(!ids.contains(&"o3".to_string()), "{ids:?}");
        let new = live.current("o3").unwrap().vector.clone();
        assert_eq!(&*live.search(&new, 1, None)[0].0, "o3");
        assert_eq!(live.tombstones(), 1);
    }

    #[test]
    fn prepared_points_are_found_once_committed_even_across_a_graph_swap() {
        let embedder = Embedder::new();
        let dim = embedder.dim();
        let entries: Vec<Entry> = (0..20)
            .map(|i| entry(dim, &format!("o{i}"), 0, i, i as f32 * 0.1))
            .collect();
        let spec = EmbeddingSpec::initial(&embedder);
        let mut live = LiveIndex::build(spec, HnswParams::default(), entries).unwrap();
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
        let graph = HnswIndex::new(HnswParams::default()).unwrap();
        graph.insert(&snapshot);
        live.swap_graph(graph, &built);
        live.commit(prepared);
        let hits = live.search(&query, 1, None);
        assert_eq!((&*hits[0].0, hits[0].1), ("o0", 0.0));
        assert_eq!(live.current("o0").unwrap().point, 20);
        assert_eq!(live.tombstones(), 1);
    }
}
