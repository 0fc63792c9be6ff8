//! Anomaly scores: the mean of two percentile ranks in [0, 1]: the local outlier factor over
//! the kNN graph (an object far from its neighbours compared with how close they are to
//! theirs) and an isolation-forest score over the embeddings (an object that few random
//! axis-aligned cuts isolate). High means unusual by both views. Pure; imports `model`.

use std::collections::{BTreeMap, HashMap};

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::model::Neighbour;

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

#[cfg(test)]
mod tests {
    use super::*;
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
    fn ranks_handle_ties() {
        assert_eq!(percentile_ranks(&[3.0, 1.0, 3.0]), vec![0.5, 0.0, 0.5]);
    }
}
