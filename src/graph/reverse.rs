//! The reverse kNN graph: for each object, the objects whose stored neighbour lists name it.
//! A write needs it to find the lists a re-embedded object sits in; reads never do.
//!
//! Object ids are numbered once ([`ReverseGraph`] interns them), so an edge costs 4 bytes
//! instead of a `String`: at 1M objects with 16 stored neighbours each, 16M edges. The graph is
//! read from the stored lists in the background when the engine opens ([`LazyReverse`]), so
//! queries are answered while it loads; the first write waits for it. Imports `store`, `model`.

#[cfg(test)]
use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::{Replaced, GRAPH_K};
use crate::model::Neighbour;
use crate::store::{Store, StoreError};

/// See the module doc.
#[derive(Default)]
pub struct ReverseGraph {
    /// Object numbers, found by hashing `names[number]` (4 bytes a bucket, the names not
    /// repeated as keys).
    number: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    names: Vec<Arc<str>>,
    /// By object number: the numbers of the objects listing it (no repeats, unordered).
    listed_by: Vec<Vec<u32>>,
    /// By object number: the distance within which an object enters its stored list (the
    /// last one's, as a patch keeps what lies within it; infinite while the list holds fewer
    /// than [`GRAPH_K`], as in a small index, or is not read yet).
    radius: Vec<f32>,
}

impl ReverseGraph {
    fn number_of(&self, id: &str) -> Option<u32> {
        let names = &self.names;
        self.number
            .find(self.hasher.hash_one(id), |&n| &*names[n as usize] == id)
            .copied()
    }

    fn intern(&mut self, id: &str) -> u32 {
        if let Some(n) = self.number_of(id) {
            return n;
        }
        self.push_name(Arc::from(id))
    }

    /// Numbers a name not numbered yet.
    fn push_name(&mut self, name: Arc<str>) -> u32 {
        let n = self.names.len() as u32;
        let hash = self.hasher.hash_one(&*name);
        self.names.push(name);
        let (names, hasher) = (&self.names, &self.hasher);
        self.number
            .insert_unique(hash, n, |&m| hasher.hash_one(&*names[m as usize]));
        self.listed_by.push(Vec::new());
        self.radius.push(f32::INFINITY);
        n
    }

    /// Notes the list `by` now has: the distance a newcomer must beat to enter it.
    fn set_radius(&mut self, by: &str, list: &[Neighbour]) {
        let b = self.intern(by);
        self.set_radius_of(b, list);
    }

    fn set_radius_of(&mut self, b: u32, list: &[Neighbour]) {
        self.radius[b as usize] = match list.last() {
            Some(last) if list.len() >= GRAPH_K => last.distance,
            _ => f32::INFINITY,
        };
    }

    /// `id`'s number, if it is numbered.
    pub fn number(&self, id: &str) -> Option<u32> {
        self.number_of(id)
    }

    /// The object numbered `n`.
    pub fn name(&self, n: u32) -> &str {
        &self.names[n as usize]
    }

    /// The numbers of the objects whose lists name the object numbered `n`.
    pub fn listed_by_number(&self, n: u32) -> &[u32] {
        &self.listed_by[n as usize]
    }

    /// The distance within which an object enters the stored list of the object numbered
    /// `n` (see the `radius` field).
    pub fn radius_of(&self, n: u32) -> f32 {
        self.radius[n as usize]
    }

    /// Notes that `by`'s list names `listed`.
    pub fn add(&mut self, listed: &str, by: &str) {
        let (l, b) = (self.intern(listed), self.intern(by));
        self.link(l, b);
    }

    /// Notes that the list of the object numbered `b` names the one numbered `l`.
    fn link(&mut self, l: u32, b: u32) {
        let who = &mut self.listed_by[l as usize];
        if !who.contains(&b) {
            who.push(b);
        }
    }

    /// Notes that `by`'s list no longer names `listed`.
    pub fn remove(&mut self, listed: &str, by: &str) {
        let (Some(l), Some(b)) = (self.number_of(listed), self.number_of(by)) else {
            return;
        };
        let who = &mut self.listed_by[l as usize];
        if let Some(i) = who.iter().position(|x| *x == b) {
            who.swap_remove(i);
        }
    }

    /// The objects whose lists name `id`.
    pub fn listed_by(&self, id: &str) -> impl Iterator<Item = &str> {
        self.number_of(id)
            .map(|n| self.listed_by[n as usize].as_slice())
            .unwrap_or_default()
            .iter()
            .map(|b| &*self.names[*b as usize])
    }

    /// Adds the edges of `by`'s list.
    pub fn add_list(&mut self, by: &str, list: &[Neighbour]) {
        // `by` is looked up once per list, not once per edge: the lookups (a cache miss each
        // at 1M) were three quarters of the load at open (perf, 954k objects).
        let b = self.intern(by);
        for n in list {
            let l = self.intern(&n.object_id);
            self.link(l, b);
        }
        self.set_radius_of(b, list);
    }

    /// Adds every edge of `lists` (each object's list).
    pub fn add_lists(&mut self, lists: &[(String, Vec<Neighbour>)]) {
        for (id, list) in lists {
            self.add_list(id, list);
        }
    }

    /// Follows `lists` written over `replaced` (the old lists by object, taken from it): only
    /// the members that changed are touched, as most of a patched list stays.
    pub fn update(&mut self, replaced: &mut Replaced, lists: &[(String, Vec<Neighbour>)]) {
        // Members are compared by name within the two short lists (cache-friendly), and only
        // the few that changed are looked up in the numbering (a cache miss each at 1M).
        for (id, list) in lists {
            let old = replaced.remove(id).unwrap_or_default();
            let has = |l: &[Neighbour], who: &str| l.iter().any(|n| n.object_id == who);
            for n in old.iter().filter(|n| !has(list, &n.object_id)) {
                self.remove(&n.object_id, id);
            }
            for n in list.iter().filter(|n| !has(&old, &n.object_id)) {
                self.add(&n.object_id, id);
            }
            self.set_radius(id, list);
        }
    }

    /// Drops every edge (the numbering stays).
    pub fn clear(&mut self) {
        self.listed_by.iter_mut().for_each(Vec::clear);
        self.radius.iter_mut().for_each(|r| *r = f32::INFINITY);
    }

    /// Reads the graph from every stored list; stops early (with what it has) once `cancel`
    /// is set.
    pub fn from_store(store: &Store, cancel: &AtomicBool) -> Result<ReverseGraph, StoreError> {
        ReverseGraph::from_store_named(store, Vec::new(), cancel)
    }

    /// [`ReverseGraph::from_store`], numbering `names` first: ids the caller already holds
    /// (the live index's), shared instead of copied (~40 bytes per object at 1M).
    pub fn from_store_named(
        store: &Store,
        names: Vec<Arc<str>>,
        cancel: &AtomicBool,
    ) -> Result<ReverseGraph, StoreError> {
        let mut graph = ReverseGraph::default();
        for name in names {
            if graph.number_of(&name).is_none() {
                graph.push_name(name);
            }
        }
        store.for_each_neighbours(|id, list| {
            graph.add_list(id, &list);
            !cancel.load(Ordering::Relaxed)
        })?;
        // Lists grew by doubling; as loaded they are mostly read (a write patches a few).
        graph.listed_by.iter_mut().for_each(Vec::shrink_to_fit);
        graph.names.shrink_to_fit();
        graph.listed_by.shrink_to_fit();
        graph.radius.shrink_to_fit();
        crate::memory::release_free_memory();
        Ok(graph)
    }

    /// Each object with the objects listing it, sorted: for comparing graphs.
    #[cfg(test)]
    pub fn to_map(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.listed_by
            .iter()
            .enumerate()
            .filter(|(_, who)| !who.is_empty())
            .map(|(l, who)| {
                (
                    self.names[l].to_string(),
                    who.iter()
                        .map(|b| self.names[*b as usize].to_string())
                        .collect(),
                )
            })
            .collect()
    }
}

/// The reverse graph while it may still be loading; see the module doc.
pub struct LazyReverse {
    graph: Mutex<Loaded>,
    loader: Mutex<Option<JoinHandle<Result<ReverseGraph, StoreError>>>>,
    cancel: Arc<AtomicBool>,
}

/// The graph and whether it holds the stored lists yet.
#[derive(Default)]
pub struct Loaded {
    ready: bool,
    graph: ReverseGraph,
}

impl std::ops::Deref for Loaded {
    type Target = ReverseGraph;
    fn deref(&self) -> &ReverseGraph {
        &self.graph
    }
}

impl std::ops::DerefMut for Loaded {
    fn deref_mut(&mut self) -> &mut ReverseGraph {
        &mut self.graph
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked; the data is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LazyReverse {
    /// Starts reading the graph from `store` on a thread of its own, numbering `names` (ids
    /// held elsewhere, shared) first.
    pub fn load_in_background(store: Arc<Store>, names: Vec<Arc<str>>) -> LazyReverse {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let loader = std::thread::Builder::new()
            .name("reverse-graph".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let graph = ReverseGraph::from_store_named(&store, names, &flag);
                tracing::info!(
                    seconds = started.elapsed().as_secs_f64(),
                    "reverse graph loaded"
                );
                graph
            })
            .map_err(|e| {
                tracing::warn!("no thread for the reverse graph, loading on first write: {e}")
            })
            .ok();
        LazyReverse {
            graph: Mutex::new(Loaded::default()),
            loader: Mutex::new(loader),
            cancel,
        }
    }

    /// The graph, waiting for the background load if it still runs (or loading it here if
    /// that failed).
    pub fn get(&self, store: &Store) -> Result<MutexGuard<'_, Loaded>, StoreError> {
        let mut graph = lock(&self.graph);
        if !graph.ready {
            let loaded = match lock(&self.loader).take().map(JoinHandle::join) {
                Some(Ok(Ok(g))) => g,
                failed => {
                    if let Some(Ok(Err(e))) = failed {
                        tracing::warn!("reverse graph load failed, reading it again: {e}");
                    }
                    ReverseGraph::from_store(store, &AtomicBool::new(false))?
                }
            };
            *graph = Loaded {
                ready: true,
                graph: loaded,
            };
        }
        Ok(graph)
    }

    /// Replaces the graph by the one of `lists` (every stored list, as after a refit); a load
    /// still running is abandoned.
    pub fn replace(&self, lists: &[(String, Vec<Neighbour>)]) {
        let mut graph = lock(&self.graph);
        self.stop_loader();
        graph.clear();
        graph.add_lists(lists);
        graph.ready = true;
    }

    /// Puts in `graph` (built beside the engine for the lists just written).
    pub fn install(&self, graph: ReverseGraph) {
        let mut loaded = lock(&self.graph);
        self.stop_loader();
        *loaded = Loaded { ready: true, graph };
    }

    fn stop_loader(&self) {
        if let Some(h) = lock(&self.loader).take() {
            self.cancel.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
    }
}

impl Drop for LazyReverse {
    /// The loader holds the store open: stop it before the store closes.
    fn drop(&mut self) {
        self.stop_loader();
    }
}
