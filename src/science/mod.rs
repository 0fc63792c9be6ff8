//! The science on the kNN graph, as pure functions over labels, neighbour lists and vectors:
//! the class taxonomy and the mapping of broker labels onto it ([`taxonomy`]), the neighbour
//! vote and its calibration ([`vote`]), label spreading ([`spread`]), anomaly scores
//! ([`anomaly`]), a metric learned from labels ([`metric`]), classification metrics
//! ([`metrics`]), distance explanations ([`explain`]) and how well two lightcurves fit each
//! other ([`curves`]). Each file's doc gives its formulas.
//!
//! Nothing here reads the store or the index: the engine (`src/engine/`) feeds these functions
//! and serves their answers. Imports `model` only, so the science is tested on small hand-made
//! inputs and can be reused outside the engine.

pub mod anomaly;
pub mod curves;
pub mod explain;
pub mod metric;
pub mod metrics;
pub mod spread;
pub mod taxonomy;
pub mod vote;

pub use anomaly::{local_outlier_factor, percentile_ranks, IndexedLists, IsolationForest};
pub use explain::{explain, Contribution, Explanation};
pub use metrics::{evaluate, ClassFigures, Evaluation};
pub use spread::spread_labels;
pub use vote::{best_class, pool_snia_score, snia_score, vote, SCORE_BETA, VOTE_ALPHA, VOTE_D0};
