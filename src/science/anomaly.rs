//! Anomaly scores: the mean of two percentile ranks in [0, 1]: the local outlier factor over
//! the kNN graph (an object far from its neighbours compared with how close they are to
//! theirs) and an isolation-forest score over the embeddings (an object that few random
//! axis-aligned cuts isolate). High means unusual by both views. Pure; imports `model`.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Neighbour lists of objects numbered 0..n, laid out flat (no per-object allocation, so a
/// pass over a million objects' lists costs ~8 bytes per link): object `i`'s neighbours are
/// `to[offsets[i]..offsets[i + 1]]` at `distance[..]` (same range), nearest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexedLists {
    /// `offsets[i]..offsets[i + 1]` for the objects up to the last one set; later ones have
    /// no list.
    offsets: Vec<usize>,
    /// A neighbour's number, or [`IndexedLists::OUTSIDE`] for one that is not among the objects.
    to: Vec<u32>,
    distance: Vec<f32>,
    /// Whether object `i` has a stored list (an empty one included).
    listed: Vec<bool>,
}

impl IndexedLists {
    /// The number of a neighbour that is not one of the objects.
    pub const OUTSIDE: u32 = u32::MAX;

    /// Lists for `n` objects, none stored yet.
    pub fn new(n: usize) -> IndexedLists {
        IndexedLists {
            offsets: vec![0],
            to: Vec::new(),
            distance: Vec::new(),
            listed: vec![false; n],
        }
    }

    /// Sets object `i`'s list; lists must be set in increasing `i` (each at most once).
    pub fn set(&mut self, i: usize, list: impl IntoIterator<Item = (u32, f32)>) {
        debug_assert!(i + 1 >= self.offsets.len(), "lists set in order, once");
        // Objects skipped since the last list set have none.
        self.offsets.resize(i + 1, self.to.len());
        for (to, d) in list {
            self.to.push(to);
            self.distance.push(d);
        }
        self.listed[i] = true;
        self.offsets.push(self.to.len());
    }

    fn range(&self, i: usize) -> std::ops::Range<usize> {
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => a..b,
            _ => 0..0,
        }
    }

    pub fn len(&self) -> usize {
        self.listed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// Object `i`'s list: (neighbour number, distance), nearest first.
    pub fn list(&self, i: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let r = self.range(i);
        self.to[r.clone()]
            .iter()
            .copied()
            .zip(self.distance[r].iter().copied())
    }

    fn list_len(&self, i: usize) -> usize {
        self.range(i).len()
    }

    /// The distance of each listed object's nearest neighbour.
    pub fn nearest_distances(&self) -> Vec<f32> {
        (0..self.len())
            .filter(|&i| self.list_len(i) > 0)
            .map(|i| self.distance[self.range(i).start])
            .collect()
    }
}

/// Local outlier factor of every object (1.0 for one without a list or with an empty one).
/// A neighbour outside the objects counts with a k-distance of 0 and no density of its own;
/// neither does a neighbour without a list.
pub fn local_outlier_factor(lists: &IndexedLists) -> Vec<f64> {
    let n = lists.len();
    let k_distance: Vec<f64> = (0..n)
        .map(|i| lists.list(i).last().map_or(0.0, |(_, d)| f64::from(d)))
        .collect();
    let kd = |j: u32| k_distance.get(j as usize).copied().unwrap_or(0.0);
    let lrd: Vec<Option<f64>> = (0..n)
        .map(|i| {
            lists.listed[i].then(|| {
                let reach: f64 = lists
                    .list(i)
                    .map(|(j, d)| kd(j).max(f64::from(d)))
                    .sum::<f64>()
                    / lists.list_len(i).max(1) as f64;
                1.0 / reach.max(1e-9)
            })
        })
        .collect();
    (0..n)
        .map(|i| match lrd[i] {
            Some(own) if lists.list_len(i) > 0 => {
                let mean: f64 = lists
                    .list(i)
                    .filter_map(|(j, _)| lrd.get(j as usize).copied().flatten())
                    .sum::<f64>()
                    / lists.list_len(i) as f64;
                mean / own
            }
            _ => 1.0,
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
        let rows = Rows {
            n: data.nrows(),
            dim: data.ncols(),
            value: &|r, f| data[[r, f]],
        };
        IsolationForest::fit_rows(&rows, trees, sample, seed)
    }

    /// [`IsolationForest::fit`] over `n` rows of `dim` values that `value(row, feature)` reads
    /// (only the sampled rows are read: a caller need not make a matrix of them all).
    pub fn fit_with(
        n: usize,
        dim: usize,
        value: &dyn Fn(usize, usize) -> f64,
        trees: usize,
        sample: usize,
        seed: u64,
    ) -> IsolationForest {
        IsolationForest::fit_rows(&Rows { n, dim, value }, trees, sample, seed)
    }

    fn fit_rows(data: &Rows<'_>, trees: usize, sample: usize, seed: u64) -> IsolationForest {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let n = data.n;
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
    pub fn score<T: Copy + Into<f64>>(&self, x: &[T]) -> f64 {
        let mean: f64 =
            self.trees.iter().map(|t| path(t, x, 0)).sum::<f64>() / self.trees.len().max(1) as f64;
        2f64.powf(-mean / c(self.sample).max(1e-9))
    }
}

/// Rows a forest is fitted on.
struct Rows<'a> {
    n: usize,
    dim: usize,
    value: &'a dyn Fn(usize, usize) -> f64,
}

fn build(
    data: &Rows<'_>,
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
        let feature = rng.gen_range(0..data.dim);
        let (lo, hi) = rows.iter().fold((f64::MAX, f64::MIN), |(a, b), &r| {
            let v = (data.value)(r, feature);
            (a.min(v), b.max(v))
        });
        if hi > lo {
            let threshold = rng.gen_range(lo..hi);
            let (l, r): (Vec<usize>, Vec<usize>) = rows
                .iter()
                .partition(|&&r| (data.value)(r, feature) < threshold);
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

fn path<T: Copy + Into<f64>>(node: &Node, x: &[T], depth: usize) -> f64 {
    match node {
        Node::Leaf { size } => depth as f64 + c(*size),
        Node::Split {
            feature,
            threshold,
            left,
            right,
        } => {
            if x[*feature].into() < *threshold {
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

    /// Three close points and one far away, whose neighbours are the three: the far one's LOF
    /// is well above 1, the others' near 1; an unlisted object scores 1.
    #[test]
    fn lof_flags_the_isolated_object() {
        // 0, 1, 2 at mutual distance 1; 3 at distance 10 from each; 4 has no list.
        let mut lists = IndexedLists::new(5);
        lists.set(0, [(1, 1.0), (2, 1.0)]);
        lists.set(1, [(0, 1.0), (2, 1.0)]);
        lists.set(2, [(0, 1.0), (1, 1.0)]);
        lists.set(3, [(0, 10.0), (IndexedLists::OUTSIDE, 10.0)]);
        let lof = local_outlier_factor(&lists);
        assert!((lof[0] - 1.0).abs() < 1e-9, "{lof:?}");
        assert!(lof[3] > 4.0, "{lof:?}");
        assert_eq!(lof[4], 1.0);
        assert_eq!(lists.nearest_distances(), vec![1.0, 1.0, 1.0, 10.0]);
    }

    #[test]
    fn a_forest_fitted_from_a_closure_equals_one_fitted_on_the_matrix() {
        let rows: Vec<f64> = (0..300).map(|i| f64::from(i * 37 % 101)).collect();
        let m = Array2::from_shape_vec((100, 3), rows).unwrap();
        let a = IsolationForest::fit(&m, 20, 64, 9);
        let b = IsolationForest::fit_with(100, 3, &|r, f| m[[r, f]], 20, 64, 9);
        for r in m.rows() {
            let x = r.as_slice().unwrap();
            assert_eq!(a.score(x), b.score(x));
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            assert_eq!(a.score(x), a.score(&x32));
        }
    }

    #[test]
    fn ranks_handle_ties() {
        assert_eq!(percentile_ranks(&[3.0, 1.0, 3.0]), vec![0.5, 0.0, 0.5]);
    }
}
