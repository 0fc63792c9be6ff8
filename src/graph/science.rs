//! The science on the graph, as pure functions over neighbour lists and vectors:
//! neighbour votes, label spreading, local outlier factor, an isolation forest, evaluation
//! metrics and distance explanations. The engine feeds them from the store and the index.
//!
//! - **Vote**: each labelled neighbour votes with weight 1/(d + d0), d0 = 0.05 (distances are in
//!   scaled-feature units, typical neighbour distances 1-5). Probabilities are the weighted
//!   vote shares shrunk toward uniform over the classes present by a Dirichlet prior of
//!   α = 0.5 pseudo-votes per class (Jeffreys): one close voter gives a confident but not
//!   certain answer, many agreeing voters approach 1. This is a shrinkage calibration with a
//!   fixed prior, not a fitted one: the labelled sets we have are too small to fit isotonic
//!   or Platt scaling honestly.
//! - **Packet scores** (`rf_snia_vs_nonia`, `snn_snia_vs_nonia`: the brokers' SN Ia
//!   probabilities): averaged into s and pooled log-linearly, p'(c) ∝ p(c) · q(c)^β with
//!   q(SN Ia) = s, q(other) = (1 − s)/(C − 1), β = 0.5 — the vote stays the main evidence.
//! - **Label spreading** (Zhou et al. 2004) over the symmetrised kNN graph with weights
//!   exp(−d²/σ²), σ the median edge length, α = 0.9, 30 iterations: for objects with no
//!   labelled neighbour among their nearest.
//! - **Anomaly score**: the mean of two percentile ranks in [0, 1]: the local outlier factor
//!   over the kNN graph (an object far from its neighbours compared with how close they are to
//!   theirs) and an isolation-forest score over the embeddings (an object that few random
//!   axis-aligned cuts isolate). High means unusual by both views.

use std::collections::{BTreeMap, HashMap};

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use crate::model::Neighbour;

/// Distance offset of the vote weights.
pub const VOTE_D0: f64 = 0.05;
/// Dirichlet pseudo-votes per class.
pub const VOTE_ALPHA: f64 = 0.5;
/// Exponent of the packet-score pooling.
pub const SCORE_BETA: f64 = 0.5;

/// Class probabilities from labelled voters (class, distance).
pub fn vote(voters: &[(String, f32)]) -> BTreeMap<String, f64> {
    let mut weights: BTreeMap<String, f64> = BTreeMap::new();
    for (class, d) in voters {
        *weights.entry(class.clone()).or_default() += 1.0 / (f64::from(*d) + VOTE_D0);
    }
    let total: f64 = weights.values().sum();
    let c = weights.len() as f64;
    weights
        .into_iter()
        .map(|(k, w)| (k, (w + VOTE_ALPHA) / (total + VOTE_ALPHA * c)))
        .collect()
}

/// Pools vote probabilities with a packet's SN Ia probability `s` (see the module doc).
pub fn pool_snia_score(probs: &mut BTreeMap<String, f64>, s: f64) {
    let c = probs.len();
    if c < 2 || !probs.contains_key("SN Ia") || !(0.0..=1.0).contains(&s) {
        return;
    }
    let s = s.clamp(1e-3, 1.0 - 1e-3);
    let other = (1.0 - s) / (c as f64 - 1.0);
    for (class, p) in probs.iter_mut() {
        let q = if class == "SN Ia" { s } else { other };
        *p *= q.powf(SCORE_BETA);
    }
    let total: f64 = probs.values().sum();
    if total > 0.0 {
        for p in probs.values_mut() {
            *p /= total;
        }
    }
}

/// Label spreading over a graph of `n` nodes. `edges` are (i, j, distance), treated as
/// undirected; `seeds` (node, class index). Returns per-node class scores (rows sum to 1
/// where any label reached the node, else all zero).
pub fn spread_labels(
    n: usize,
    edges: &[(usize, usize, f32)],
    seeds: &[(usize, usize)],
    n_classes: usize,
) -> Vec<Vec<f64>> {
    let mut lengths: Vec<f32> = edges.iter().map(|e| e.2).collect();
    lengths.sort_by(f32::total_cmp);
    let sigma = f64::from(lengths.get(lengths.len() / 2).copied().unwrap_or(1.0)).max(1e-6);
    let mut adj: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for &(i, j, d) in edges {
        let w = (-(f64::from(d) / sigma).powi(2)).exp();
        adj[i].push((j, w));
        adj[j].push((i, w));
    }
    let degree: Vec<f64> = adj
        .iter()
        .map(|a| a.iter().map(|(_, w)| w).sum::<f64>().max(1e-12))
        .collect();
    let mut y = vec![vec![0.0; n_classes]; n];
    for &(i, c) in seeds {
        y[i][c] = 1.0;
    }
    let alpha = 0.9;
    let mut f = y.clone();
    for _ in 0..30 {
        let mut next = vec![vec![0.0; n_classes]; n];
        for i in 0..n {
            for &(j, w) in &adj[i] {
                let s = w / (degree[i] * degree[j]).sqrt();
                for c in 0..n_classes {
                    next[i][c] += alpha * s * f[j][c];
                }
            }
            for c in 0..n_classes {
                next[i][c] += (1.0 - alpha) * y[i][c];
            }
        }
        f = next;
    }
    for row in &mut f {
        let total: f64 = row.iter().sum();
        if total > 0.0 {
            for x in row.iter_mut() {
                *x /= total;
            }
        }
    }
    f
}

/// Local outlier factor of every object that has a neighbour list.
pub fn local_outlier_factor(lists: &BTreeMap<String, Vec<Neighbour>>) -> HashMap<String, f64> {
    let k_distance: HashMap<&str, f64> = lists
        .iter()
        .map(|(id, l)| (id.as_str(), l.last().map_or(0.0, |n| f64::from(n.distance))))
        .collect();
    let lrd: HashMap<&str, f64> = lists
        .iter()
        .map(|(id, l)| {
            let reach: f64 = l
                .iter()
                .map(|n| {
                    let kd = k_distance.get(n.object_id.as_str()).copied().unwrap_or(0.0);
                    kd.max(f64::from(n.distance))
                })
                .sum::<f64>()
                / l.len().max(1) as f64;
            (id.as_str(), 1.0 / reach.max(1e-9))
        })
        .collect();
    lists
        .iter()
        .map(|(id, l)| {
            let own = lrd[id.as_str()];
            let mean: f64 = l
                .iter()
                .filter_map(|n| lrd.get(n.object_id.as_str()))
                .sum::<f64>()
                / l.len().max(1) as f64;
            (id.clone(), if l.is_empty() { 1.0 } else { mean / own })
        })
        .collect()
}

enum Node {
    Leaf {
        size: usize,
    },
    Split {
        feature: usize,
        threshold: f64,
        left: Box<Node>,
        right: Box<Node>,
    },
}

/// An isolation forest (Liu, Ting & Zhou 2008) over rows of a matrix, any dimension.
pub struct IsolationForest {
    trees: Vec<Node>,
    sample: usize,
}

/// Average path length of an unsuccessful search in a binary search tree of n points.
fn c(n: usize) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let n = n as f64;
    2.0 * ((n - 1.0).ln() + 0.577_215_664_9) - 2.0 * (n - 1.0) / n
}

impl IsolationForest {
    pub fn fit(data: &Array2<f64>, trees: usize, sample: usize, seed: u64) -> IsolationForest {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let n = data.nrows();
        let sample = sample.min(n).max(1);
        let max_depth = (sample as f64).log2().ceil() as usize;
        let trees = (0..trees)
            .map(|_| {
                let rows: Vec<usize> = (0..sample).map(|_| rng.gen_range(0..n.max(1))).collect();
                build(data, rows, 0, max_depth, &mut rng)
            })
            .collect();
        IsolationForest { trees, sample }
    }

    /// Anomaly score in (0, 1]; about 0.5 for ordinary points, near 1 for isolated ones.
    pub fn score(&self, x: &[f64]) -> f64 {
        let mean: f64 =
            self.trees.iter().map(|t| path(t, x, 0)).sum::<f64>() / self.trees.len().max(1) as f64;
        2f64.powf(-mean / c(self.sample).max(1e-9))
    }
}

fn build(
    data: &Array2<f64>,
    rows: Vec<usize>,
    depth: usize,
    max_depth: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Node {
    if rows.len() <= 1 || depth >= max_depth {
        return Node::Leaf { size: rows.len() };
    }
    // Pick a feature that varies among these rows (a few tries), then a uniform cut.
    for _ in 0..8 {
        let feature = rng.gen_range(0..data.ncols());
        let (lo, hi) = rows.iter().fold((f64::MAX, f64::MIN), |(a, b), &r| {
            let v = data[[r, feature]];
            (a.min(v), b.max(v))
        });
        if hi > lo {
            let threshold = rng.gen_range(lo..hi);
            let (l, r): (Vec<usize>, Vec<usize>) =
                rows.iter().partition(|&&r| data[[r, feature]] < threshold);
            return Node::Split {
                feature,
                threshold,
                left: Box::new(build(data, l, depth + 1, max_depth, rng)),
                right: Box::new(build(data, r, depth + 1, max_depth, rng)),
            };
        }
    }
    Node::Leaf { size: rows.len() }
}

fn path(node: &Node, x: &[f64], depth: usize) -> f64 {
    match node {
        Node::Leaf { size } => depth as f64 + c(*size),
        Node::Split {
            feature,
            threshold,
            left,
            right,
        } => {
            if x[*feature] < *threshold {
                path(left, x, depth + 1)
            } else {
                path(right, x, depth + 1)
            }
        }
    }
}

/// Percentile rank of each value among all (ties share the lower rank), in [0, 1].
pub fn percentile_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let denom = (values.len().max(2) - 1) as f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        for &o in &order[i..=j] {
            out[o] = i as f64 / denom;
        }
        i = j + 1;
    }
    out
}

/// Classification figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evaluation {
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: BTreeMap<String, ClassFigures>,
    /// confusion[true][predicted] = count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    pub baseline_class: String,
    pub baseline_accuracy: f64,
    pub baseline_macro_f1: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassFigures {
    pub support: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

fn figures(truth: &[String], pred: &[String]) -> (f64, f64, BTreeMap<String, ClassFigures>) {
    let classes: std::collections::BTreeSet<&String> = truth.iter().collect();
    let mut per = BTreeMap::new();
    for c in &classes {
        let tp = truth
            .iter()
            .zip(pred)
            .filter(|(t, p)| t == c && p == c)
            .count() as f64;
        let pp = pred.iter().filter(|p| p == c).count() as f64;
        let support = truth.iter().filter(|t| t == c).count();
        let precision = if pp > 0.0 { tp / pp } else { 0.0 };
        let recall = tp / support as f64;
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        per.insert(
            (*c).clone(),
            ClassFigures {
                support,
                precision,
                recall,
                f1,
            },
        );
    }
    let correct = truth.iter().zip(pred).filter(|(t, p)| t == p).count() as f64;
    let accuracy = correct / truth.len().max(1) as f64;
    let macro_f1 = per.values().map(|f| f.f1).sum::<f64>() / per.len().max(1) as f64;
    (accuracy, macro_f1, per)
}

/// Accuracy, macro-F1, per-class figures and confusion of `pred` against `truth`, and the same
/// for always predicting the most frequent true class.
pub fn evaluate(truth: &[String], pred: &[String]) -> Evaluation {
    let (accuracy, macro_f1, per_class) = figures(truth, pred);
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (t, p) in truth.iter().zip(pred) {
        *confusion
            .entry(t.clone())
            .or_default()
            .entry(p.clone())
            .or_default() += 1;
    }
    let mut freq: BTreeMap<&String, usize> = BTreeMap::new();
    for t in truth {
        *freq.entry(t).or_default() += 1;
    }
    let baseline_class = freq
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(c, _)| (*c).clone())
        .unwrap_or_default();
    let baseline: Vec<String> = vec![baseline_class.clone(); truth.len()];
    let (baseline_accuracy, baseline_macro_f1, _) = figures(truth, &baseline);
    Evaluation {
        n: truth.len(),
        accuracy,
        macro_f1,
        per_class,
        confusion,
        baseline_class,
        baseline_accuracy,
        baseline_macro_f1,
    }
}

/// One feature's share of the distance between two objects.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Contribution {
    pub feature: String,
    pub a: f32,
    pub b: f32,
    /// (a − b)², its part of the squared distance.
    pub contribution: f32,
    /// Its fraction of the squared distance.
    pub share: f32,
}

/// Why two objects are close or apart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explanation {
    pub distance: f32,
    /// Features both objects have, with the smallest contributions: what makes them alike.
    pub closest: Vec<Contribution>,
    /// Features with the largest contributions: what sets them apart.
    pub apart: Vec<Contribution>,
    /// Share of the squared distance per band (`g`, `r`) and for the cross-band features.
    pub by_band: BTreeMap<String, f32>,
}

/// Explains the distance between scaled vectors `a` and `b` (masks: undefined features).
pub fn explain(
    names: &[String],
    a: &[f32],
    b: &[f32],
    mask_a: &[bool],
    mask_b: &[bool],
    top: usize,
) -> Explanation {
    let contributions: Vec<Contribution> = names
        .iter()
        .enumerate()
        .map(|(j, name)| (j, name, (a[j] - b[j]) * (a[j] - b[j])))
        .map(|(j, name, c)| Contribution {
            feature: name.clone(),
            a: a[j],
            b: b[j],
            contribution: c,
            share: 0.0,
        })
        .collect();
    let total: f32 = contributions.iter().map(|c| c.contribution).sum();
    let with_share: Vec<Contribution> = contributions
        .into_iter()
        .map(|c| Contribution {
            share: if total > 0.0 {
                c.contribution / total
            } else {
                0.0
            },
            ..c
        })
        .collect();
    let mut closest: Vec<Contribution> = with_share
        .iter()
        .enumerate()
        .filter(|(j, _)| !mask_a[*j] && !mask_b[*j])
        .map(|(_, c)| c.clone())
        .collect();
    closest.sort_by(|x, y| x.contribution.total_cmp(&y.contribution));
    closest.truncate(top);
    let mut apart = with_share.clone();
    apart.sort_by(|x, y| y.contribution.total_cmp(&x.contribution));
    apart.truncate(top);
    let mut by_band: BTreeMap<String, f32> = BTreeMap::new();
    for c in &with_share {
        let band = match c.feature.split_once('_') {
            Some((b, _)) if b.len() == 1 => b.to_string(),
            _ => "cross-band".to_string(),
        };
        *by_band.entry(band).or_default() += c.share;
    }
    Explanation {
        distance: total.sqrt(),
        closest,
        apart,
        by_band,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_are_shrunk_probabilities() {
        let p = vote(&[
            ("SN Ia".into(), 1.0),
            ("SN Ia".into(), 1.2),
            ("RR Lyr".into(), 3.0),
        ]);
        let total: f64 = p.values().sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!(p["SN Ia"] > 0.6 && p["SN Ia"] < 1.0);
        let mut q = p.clone();
        pool_snia_score(&mut q, 0.05);
        assert!(
            q["SN Ia"] < p["SN Ia"],
            "a low packet SN Ia score lowers SN Ia"
        );
    }

    #[test]
    fn isolation_forest_finds_the_outlier() {
        let mut rows = Vec::new();
        for i in 0..200 {
            rows.extend([f64::from(i % 10) * 0.01, f64::from(i % 7) * 0.01]);
        }
        rows.extend([5.0, 5.0]);
        let m = Array2::from_shape_vec((201, 2), rows).unwrap();
        let f = IsolationForest::fit(&m, 100, 128, 3);
        assert!(f.score(&[5.0, 5.0]) > f.score(&[0.05, 0.03]) + 0.2);
    }

    #[test]
    fn spreading_reaches_unlabelled_nodes() {
        // 0 - 1 - 2   3 - 4 ; seeds: 0 is class 0, 4 is class 1.
        let edges = [(0, 1, 1.0), (1, 2, 1.0), (3, 4, 1.0)];
        let f = spread_labels(5, &edges, &[(0, 0), (4, 1)], 2);
        assert!(f[2][0] > 0.99);
        assert!(f[3][1] > 0.99);
    }

    #[test]
    fn metrics_and_baseline() {
        let t: Vec<String> = ["a", "a", "a", "b"].iter().map(|s| s.to_string()).collect();
        let p: Vec<String> = ["a", "a", "b", "b"].iter().map(|s| s.to_string()).collect();
        let e = evaluate(&t, &p);
        assert_eq!(e.accuracy, 0.75);
        assert_eq!(e.baseline_class, "a");
        assert_eq!(e.baseline_accuracy, 0.75);
        assert!(e.macro_f1 > e.baseline_macro_f1);
        assert_eq!(e.confusion["a"]["b"], 1);
    }

    #[test]
    fn ranks_handle_ties() {
        assert_eq!(percentile_ranks(&[3.0, 1.0, 3.0]), vec![0.5, 0.0, 0.5]);
    }
}
