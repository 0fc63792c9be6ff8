//! Anomaly scores: LOF over the kNN graph and an isolation forest over the embeddings,
//! computed once per generation and cached, then personalised per user by their votes. The
//! formulas are in `src/science/anomaly.rs`. Imports `science`, `model`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::{check_count, lock, matrix_of, read, Engine, EngineError, Result};
use crate::model::Vote;
use crate::science::{self, IsolationForest};

impl Engine {
    /// Objects ranked by anomaly score (see [`science`]), most anomalous first. With `user`,
    /// the ranking is personalised by that user's votes: each object's score moves by
    /// λ·mean over votes of ±exp(−d²/2σ²) (+ for up, − for down; d its distance to the voted
    /// object, σ the median neighbour distance, λ = 0.5), so objects like what the user found
    /// interesting rise and objects like what they dismissed sink; voted objects are left out.
    /// The scores are recomputed after a commit, but at most every [`ANOMALY_MAX_AGE`] while
    /// commits keep coming: an object ingested meanwhile may be missing for that long.
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
        let mut out: Vec<AnomalyScore> = b
            .ids
            .iter()
            .enumerate()
            .filter(|(_, id)| !votes.contains_key(*id))
            .filter(|(i, _)| {
                query
                    .since
                    .is_none_or(|t| b.last_mjd[*i].is_some_and(|l| l >= t))
            })
            .map(|(i, id)| {
                let row = &b.vectors[i];
                let personal = if voted.is_empty() {
                    0.0
                } else {
                    PERSONAL_WEIGHT
                        * voted
                            .iter()
                            .map(|(v, sign)| {
                                let d = f64::from(crate::embed::l2(row, v));
                                sign * (-(d * d) / (2.0 * sigma * sigma)).exp()
                            })
                            .sum::<f64>()
                        / voted.len() as f64
                };
                AnomalyScore {
                    object_id: id.clone(),
                    score: b.base[i] + personal,
                    lof: b.lof[i],
                    isolation: b.isolation[i],
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.object_id.cmp(&b.object_id))
        });
        out.truncate(query.top);
        Ok(out)
    }

    /// An object's unpersonalised anomaly score; `None` when it has no embedding.
    pub fn anomaly_of(&self, object_id: &str) -> Result<Option<AnomalyScore>> {
        self.object(object_id)?;
        let b = self.anomaly_base()?;
        Ok(b.ids
            .binary_search_by(|id| id.as_str().cmp(object_id))
            .ok()
            .map(|i| AnomalyScore {
                object_id: object_id.to_string(),
                score: b.base[i],
                lof: b.lof[i],
                isolation: b.isolation[i],
            }))
    }

    /// The anomaly scores, computed at most once per generation and, while commits keep
    /// coming, at most once per [`ANOMALY_MAX_AGE`]: they cost a pass over every object, too
    /// much to repeat after each batch of a running ingest.
    ///
    /// One caller at a time computes them: while stale scores exist, the others answer from
    /// those meanwhile (a burst of concurrent GetObject calls once cost one full pass each);
    /// before any exist, they wait for the one computation.
    pub(super) fn anomaly_base(&self) -> Result<Arc<AnomalyBase>> {
        let generation = self.generation();
        let cached = lock(&self.anomaly_cache).clone();
        let _computing = match cached {
            Some((g, at, b)) if g == generation || at.elapsed() < ANOMALY_MAX_AGE => return Ok(b),
            Some((_, _, stale)) => match self.anomaly_refresh.try_lock() {
                Ok(guard) => guard,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Ok(stale),
            },
            None => {
                let guard = lock(&self.anomaly_refresh);
                if let Some((_, _, b)) = lock(&self.anomaly_cache).as_ref() {
                    return Ok(Arc::clone(b));
                }
                guard
            }
        };
        let started = std::time::Instant::now();
        let lists = self.graph_lists()?;
        let (ids, vectors) = self.vectors();
        let rows = matrix_of(vectors.iter(), self.embedder.dim());
        let lof_scores = science::local_outlier_factor(&lists);
        let lof: Vec<f64> = ids
            .iter()
            .map(|id| lof_scores.get(id).copied().unwrap_or(1.0))
            .collect();
        let isolation: Vec<f64> = if ids.is_empty() {
            Vec::new()
        } else {
            let forest = IsolationForest::fit(&rows, 100, 256, ANOMALY_SEED);
            rows.rows()
                .into_iter()
                .map(|r| forest.score(r.as_slice().unwrap_or(&[])))
                .collect()
        };
        let (lof_rank, iso_rank) = (
            science::percentile_ranks(&lof),
            science::percentile_ranks(&isolation),
        );
        let base = lof_rank
            .iter()
            .zip(&iso_rank)
            .map(|(a, b)| 0.5 * (a + b))
            .collect();
        let mut nearest: Vec<f32> = lists
            .values()
            .filter_map(|l| l.first())
            .map(|n| n.distance)
            .collect();
        nearest.sort_by(f32::total_cmp);
        let sigma = f64::from(nearest.get(nearest.len() / 2).copied().unwrap_or(1.0)).max(1e-3);
        let records = self
            .store
            .get_objects(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
        let last_mjd = records
            .iter()
            .map(|r| r.as_ref().and_then(|r| r.meta.last_mjd))
            .collect();
        let b = Arc::new(AnomalyBase {
            ids,
            vectors,
            lof,
            isolation,
            base,
            last_mjd,
            sigma,
        });
        *lock(&self.anomaly_cache) = Some((generation, started, Arc::clone(&b)));
        Ok(b)
    }
}

/// The unpersonalised anomaly scores of every embedded object.
pub(super) struct AnomalyBase {
    ids: Vec<String>,
    /// Current scaled vectors, one per id.
    vectors: Vec<Vec<f32>>,
    lof: Vec<f64>,
    isolation: Vec<f64>,
    /// Mean of the LOF and isolation percentile ranks.
    base: Vec<f64>,
    last_mjd: Vec<Option<f64>>,
    /// Median nearest-neighbour distance: the kernel width of personalisation.
    sigma: f64,
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
