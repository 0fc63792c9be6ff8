//! Anomaly scores: LOF over the kNN graph and an isolation forest over the embeddings,
//! computed by a background worker after commits and cached, then personalised per user by
//! their votes. The
//! formulas are in `src/science/anomaly.rs`. Imports `science`, `model`.

use std::collections::BTreeMap;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use serde::Serialize;

use rayon::prelude::*;

use super::{check_count, lock, read, Engine, EngineError, Result};
use crate::graph::GRAPH_K;
use crate::index::live::LiveIndex;
use crate::model::ObjectRecord;
use crate::model::Vote;
use crate::science::{self, IndexedLists, IsolationForest};
use crate::store::Store;

impl Engine {
    /// Objects ranked by anomaly score (see [`science`]), most anomalous first. With `user`,
    /// the ranking is personalised by that user's votes: each object's score moves by
    /// λ·mean over votes of ±exp(−d²/2σ²) (+ for up, − for down; d its distance to the voted
    /// object, σ the median neighbour distance, λ = 0.5), so objects like what the user found
    /// interesting rise and objects like what they dismissed sink; voted objects are left out.
    ///
    /// The scores are computed in the background after commits (at most every
    /// [`ANOMALY_MAX_AGE`] while they keep coming), so a call never waits for that pass once
    /// scores exist: an object ingested meanwhile may be missing for that long. A call walks
    /// the objects in the order of their unpersonalised score and stops once no object further
    /// down can enter the top even with the largest lift the user's up-votes allow: O(top)
    /// without votes or `since`.
    pub fn anomalies(&self, query: &AnomalyQuery) -> Result<Vec<AnomalyScore>> {
        if self.spec_outdated {
            return Err(EngineError::SpecOutdated);
        }
        check_count("top", query.top)?;
        if query.since.is_some_and(|t| !t.is_finite()) {
            return Err(EngineError::InvalidArgument {
                field: "since",
                reason: "must be a finite MJD".into(),
            });
        }
        let votes = match &query.user {
            Some(u) => self.user_votes(u)?,
            None => BTreeMap::new(),
        };
        let b = self.anomaly_base()?;
        let sigma = b.sigma;
        let voted: Vec<(Vec<f32>, f64)> = votes
            .iter()
            .filter_map(|(id, v)| {
                let sign = if *v == Vote::Up { 1.0 } else { -1.0 };
                read(&self.live)
                    .current(id)
                    .map(|c| (c.vector.clone(), sign))
            })
            .collect();
        // The largest lift a user's votes can give: every up-vote's kernel at 1.
        let ups = voted.iter().filter(|(_, sign)| *sign > 0.0).count();
        let max_lift = if voted.is_empty() {
            0.0
        } else {
            PERSONAL_WEIGHT * ups as f64 / voted.len() as f64
        };
        let personal = |i: usize| -> f64 {
            if voted.is_empty() {
                return 0.0;
            }
            let Some(row) = read(&self.live).current(&b.ids[i]).map(|c| c.vector) else {
                return 0.0;
            };
            PERSONAL_WEIGHT
                * voted
                    .iter()
                    .map(|(v, sign)| {
                        let d = f64::from(crate::embed::l2(&row, v));
                        sign * (-(d * d) / (2.0 * sigma * sigma)).exp()
                    })
                    .sum::<f64>()
                / voted.len() as f64
        };
        let mut out: Vec<AnomalyScore> = Vec::with_capacity(query.top + 1);
        // The score of the last of the `top` kept so far, once `top` are kept.
        let mut floor = f64::NEG_INFINITY;
        for &i in &b.order {
            let i = i as usize;
            if out.len() == query.top && b.base[i] + max_lift < floor {
                break;
            }
            let id = &b.ids[i];
            if votes.contains_key(&**id)
                || query
                    .since
                    .is_some_and(|t| b.last_mjd[i].is_nan() || b.last_mjd[i] < t)
            {
                continue;
            }
            let score = AnomalyScore {
                object_id: id.to_string(),
                score: b.base[i] + personal(i),
                lof: b.lof[i],
                isolation: b.isolation[i],
            };
            let at = out.partition_point(|o| ranked_before(o, &score));
            if at < query.top {
                out.insert(at, score);
                out.truncate(query.top);
                if out.len() == query.top {
                    floor = out[query.top - 1].score;
                }
            }
        }
        Ok(out)
    }

    /// An object's unpersonalised anomaly score; `None` when it has no embedding.
    pub fn anomaly_of(&self, object_id: &str) -> Result<Option<AnomalyScore>> {
        self.anomaly_of_record(&self.object(object_id)?)
    }

    /// [`Engine::anomaly_of`] of a record already read.
    pub fn anomaly_of_record(&self, record: &ObjectRecord) -> Result<Option<AnomalyScore>> {
        let object_id = record.object_id.as_str();
        let b = self.anomaly_base()?;
        Ok(b.index_of(object_id).map(|i| AnomalyScore {
            object_id: object_id.to_string(),
            score: b.base[i],
            lof: b.lof[i],
            isolation: b.isolation[i],
        }))
    }

    /// The anomaly scores. They cost a pass over every object, too much for a request: once
    /// any exist, a caller that finds them stale (a commit since, and older than
    /// [`ANOMALY_MAX_AGE`]) asks the background worker to recompute them and answers from
    /// the stale ones. Only before any exist does a caller compute them (one caller; the
    /// others wait for it).
    pub(super) fn anomaly_base(&self) -> Result<Arc<AnomalyBase>> {
        let generation = self.generation();
        let cached = lock(&self.anomalies.cache).clone();
        match cached {
            Some((g, at, b))
                if g == generation || (at.elapsed() < ANOMALY_MAX_AGE && !b.ids.is_empty()) =>
            {
                Ok(b)
            }
            Some((_, _, stale)) if !stale.ids.is_empty() => {
                self.anomalies.request(generation);
                Ok(stale)
            }
            // None yet, or only those of an empty store: nothing to answer from meanwhile.
            _ => self.anomalies.refresh(generation, &self.store, &self.live),
        }
    }

    /// Computes the anomaly scores of the store as it is now (or waits for the computation
    /// that is running), so that what follows neither waits for them nor shares the cores with
    /// their pass: a bench that times reads on a settled engine after a write (a label
    /// import changes the store's generation, and a server would rescore in the background).
    pub fn refresh_anomalies(&self) -> Result<()> {
        self.anomalies
            .refresh(self.generation(), &self.store, &self.live)
            .map(|_| ())
    }

    /// Asks the background worker to compute the anomaly scores now, if there are objects (a
    /// server does it when it starts, so that the first TopAnomalies does not wait for them).
    pub fn warm_anomalies(&self) {
        if self.indexed() > 0 {
            self.anomalies.request(self.generation());
        }
    }
}

/// Whether `a` ranks before `b`: higher score first, then object id.
fn ranked_before(a: &AnomalyScore, b: &AnomalyScore) -> bool {
    b.score
        .total_cmp(&a.score)
        .then(a.object_id.cmp(&b.object_id))
        .is_lt()
}

/// The cached anomaly scores and the background worker that recomputes them.
pub(super) struct Anomalies {
    /// Scores before personalisation, the generation they were computed at and when.
    cache: Mutex<Option<(u64, Instant, Arc<AnomalyBase>)>>,
    /// Held by the one computation running.
    refresh: Mutex<()>,
    /// Requests to the worker (a generation); `None` once the engine drops.
    requests: Mutex<Option<SyncSender<u64>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Threads at background priority ([`crate::memory::yield_cpu`]) that compute the scores:
    /// a pass over every object (~10 s at 1M) then takes no core from queries and batches.
    /// `None` where the pool could not start (the global one then computes).
    pool: Option<rayon::ThreadPool>,
}

impl Anomalies {
    /// Starts the worker thread, which computes the scores when asked, from `store` and `live`.
    pub(super) fn start(store: Arc<Store>, live: Arc<RwLock<LiveIndex>>) -> Arc<Anomalies> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(1);
        let pool = crate::memory::background_pool("anomaly");
        let anomalies = Arc::new(Anomalies {
            cache: Mutex::new(None),
            refresh: Mutex::new(()),
            requests: Mutex::new(Some(tx)),
            worker: Mutex::new(None),
            pool,
        });
        let state = Arc::clone(&anomalies);
        let spawned = std::thread::Builder::new()
            .name("anomaly-scores".into())
            .spawn(move || {
                while let Ok(generation) = rx.recv() {
                    if let Err(e) = state.refresh(generation, &store, &live) {
                        tracing::warn!("anomaly scores not recomputed: {e}");
                    }
                }
            });
        match spawned {
            Ok(handle) => *lock(&anomalies.worker) = Some(handle),
            // Without the worker, stale scores stay until a restart; the engine still works.
            Err(e) => tracing::warn!("no anomaly worker thread: {e}"),
        }
        anomalies
    }

    /// Asks the worker for scores at least as new as `generation`, unless a request waits.
    fn request(&self, generation: u64) {
        if let Some(tx) = lock(&self.requests).as_ref() {
            let _ = tx.try_send(generation);
        }
    }

    /// Computes the scores unless scores of `generation` (or newer) exist by the time this
    /// caller holds the refresh lock; returns the newest.
    fn refresh(
        &self,
        generation: u64,
        store: &Store,
        live: &RwLock<LiveIndex>,
    ) -> Result<Arc<AnomalyBase>> {
        let _computing = lock(&self.refresh);
        if let Some((g, _, b)) = lock(&self.cache).as_ref() {
            if *g >= generation {
                return Ok(Arc::clone(b));
            }
        }
        let started = Instant::now();
        let b = Arc::new(match &self.pool {
            // On a plain thread of its own, joined: a caller that is a worker of the global
            // pool (the parallel updates of `--publish-topic`) would otherwise, while waiting
            // for the anomaly pool, run other jobs of its own pool, and one of them that asks
            // for the scores would wait forever on the lock this caller holds.
            Some(pool) => std::thread::scope(|s| {
                s.spawn(|| pool.install(|| AnomalyBase::compute(store, live)))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })?,
            None => AnomalyBase::compute(store, live)?,
        });
        crate::memory::release_free_memory();
        tracing::debug!(
            objects = b.ids.len(),
            seconds = started.elapsed().as_secs_f64(),
            "anomaly scores computed"
        );
        *lock(&self.cache) = Some((generation, started, Arc::clone(&b)));
        Ok(b)
    }

    /// Ends the worker (after the computation it is in, if any).
    pub(super) fn stop(&self) {
        lock(&self.requests).take();
        if let Some(handle) = lock(&self.worker).take() {
            let _ = handle.join();
        }
    }
}

/// The unpersonalised anomaly scores of every embedded object: ~60 bytes per object (the ids
/// are the live index's own, shared; vectors are read from the live index when a ranking is
/// personalised).
pub(super) struct AnomalyBase {
    /// Object ids, in id order.
    ids: Vec<Arc<str>>,
    lof: Vec<f64>,
    isolation: Vec<f64>,
    /// Mean of the LOF and isolation percentile ranks.
    base: Vec<f64>,
    /// Indices into `ids`, highest `base` first (then id order).
    order: Vec<u32>,
    /// Last detection time (MJD); NaN for none.
    last_mjd: Vec<f64>,
    /// Median nearest-neighbour distance: the kernel width of personalisation.
    sigma: f64,
}

impl AnomalyBase {
    fn index_of(&self, object_id: &str) -> Option<usize> {
        self.ids.binary_search_by(|id| (**id).cmp(object_id)).ok()
    }

    /// One pass over every object: LOF over the stored lists, an isolation forest over the
    /// current vectors, and each object's last detection time. Its transient memory is a flat
    /// copy of the vectors (taken under the live index's read lock, which is not held for the
    /// pass) and the lists as numbers: one allocation each, handed back whole when it ends.
    fn compute(store: &Store, live: &RwLock<LiveIndex>) -> Result<AnomalyBase> {
        // The last detection of each object comes with its vector (`Facts`): no record is read.
        let (ids, vectors, dim, last_mjd) = {
            let live = read(live);
            let mut all: Vec<&Arc<str>> = live.ids().collect();
            all.sort_unstable();
            let mut ids = Vec::with_capacity(all.len());
            let mut last_mjd = Vec::with_capacity(all.len());
            let mut flat = Vec::new();
            let mut dim = 0;
            for id in all {
                if let Some(c) = live.current(id) {
                    if ids.is_empty() {
                        dim = c.vector.len();
                        flat.reserve_exact(live.len() * dim);
                    }
                    flat.extend_from_slice(&c.vector);
                    ids.push(Arc::clone(id));
                    last_mjd.push(c.facts.last_mjd);
                }
            }
            (ids, flat, dim, last_mjd)
        };
        let numbers: foldhash::HashMap<&str, u32> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (&**id, i as u32))
            .collect();
        let mut lists = IndexedLists::new(ids.len());
        // Lists come in id order, as `ids` are; those of objects without a vector are skipped.
        store.for_each_neighbours(|id, list| {
            if let Some(&i) = numbers.get(id) {
                lists.set(
                    i as usize,
                    list.iter().take(GRAPH_K).map(|n| {
                        let j = numbers.get(n.object_id.as_str());
                        (j.copied().unwrap_or(IndexedLists::OUTSIDE), n.distance)
                    }),
                );
            }
            true
        })?;
        drop(numbers);
        let lof = science::local_outlier_factor(&lists);
        let row = |i: usize| &vectors[i * dim..(i + 1) * dim];
        let isolation: Vec<f64> = if ids.is_empty() {
            Vec::new()
        } else {
            let value = |r: usize, f: usize| f64::from(vectors[r * dim + f]);
            let forest = IsolationForest::fit_with(ids.len(), dim, &value, 100, 256, ANOMALY_SEED);
            (0..ids.len())
                .into_par_iter()
                .map(|i| forest.score(row(i)))
                .collect()
        };
        drop(vectors);
        let (lof_rank, iso_rank) = (
            science::percentile_ranks(&lof),
            science::percentile_ranks(&isolation),
        );
        let base: Vec<f64> = lof_rank
            .iter()
            .zip(&iso_rank)
            .map(|(a, b)| 0.5 * (a + b))
            .collect();
        // `ids` is in id order, so among equal scores the lower index is the lower id.
        let mut order: Vec<u32> = (0..ids.len() as u32).collect();
        order.sort_by(|&a, &b| {
            base[b as usize]
                .total_cmp(&base[a as usize])
                .then(a.cmp(&b))
        });
        let mut nearest = lists.nearest_distances();
        drop(lists);
        nearest.sort_by(f32::total_cmp);
        let sigma = f64::from(nearest.get(nearest.len() / 2).copied().unwrap_or(1.0)).max(1e-3);
        Ok(AnomalyBase {
            ids,
            lof,
            isolation,
            base,
            order,
            last_mjd,
            sigma,
        })
    }
}
/// Weight of a user's votes in their anomaly ranking.
pub const PERSONAL_WEIGHT: f64 = 0.5;
const ANOMALY_SEED: u64 = 7;
/// How stale anomaly scores may be while ingest runs (see [`Engine::anomalies`]).
pub const ANOMALY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);
#[derive(Debug, Clone, Default)]
pub struct AnomalyQuery {
    pub top: usize,
    pub since: Option<f64>,
    pub user: Option<String>,
}
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnomalyScore {
    pub object_id: String,
    pub score: f64,
    pub lof: f64,
    pub isolation: f64,
}
