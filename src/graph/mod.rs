//! The kNN graph and analytics on it.
//!
//! Every object with an embedding keeps its nearest neighbours (with distances) in the store's
//! `neighbours` column family: up to [`STORED_K`] of them, of which the first [`GRAPH_K`] are
//! served (votes, watches, clusters, label spreading); the rest is slack that absorbs
//! neighbours moving away. Refresh policy, applied by the engine in the same atomic write as the
//! alerts that caused it: when an ingest batch re-embeds a set C of objects, the lists of C are
//! recomputed by index search; the lists of every object that named a member of C (it may have
//! moved away) and of every new neighbour of a member of C (it may have moved close) are
//! patched: the member is taken out and put back at its new distance, and the list keeps only
//! its entries within its old last distance (those are certain). Only a list left with fewer
//! than [`GRAPH_K`] certain entries is searched again; the slack makes that rare (without it,
//! most moves sent the ~10 lists naming the moved object back to the index). About |C| searches
//! plus O(k·|C|) distance computations per batch; a scaler refit recomputes every list.
//!
//! Analytics: connected components of the kNN graph (petgraph's union-find) and KMeans
//! clusters of the embeddings (linfa-clustering). Labels and their taxonomy are in [`labels`];
//! votes, label spreading, anomaly scores and explanations in [`science`]. Imports `model`.

pub mod labels;
pub mod science;

use std::collections::{BTreeMap, HashMap};

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::Array2;
use petgraph::unionfind::UnionFind;
use rand::SeedableRng;
use serde::Serialize;

use crate::model::Neighbour;

/// Neighbours served per object.
pub const GRAPH_K: usize = 10;

/// Neighbours stored per object: [`GRAPH_K`] and the slack that keeps patched lists exact.
pub const STORED_K: usize = GRAPH_K + 6;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error("clustering needs at least {needed} embedded objects, the store has {got}")]
    TooFewObjects { needed: usize, got: usize },
    #[error("KMeans: {detail}")]
    KMeans { detail: String },
}

/// Connected components of the undirected kNN graph, largest first; members sorted.
pub fn components(lists: &BTreeMap<String, Vec<Neighbour>>) -> Vec<Vec<String>> {
    let ids: Vec<&str> = lists.keys().map(String::as_str).collect();
    let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut uf = UnionFind::<usize>::new(ids.len());
    for (a, list) in lists {
        for n in list {
            if let (Some(&x), Some(&y)) = (index.get(a.as_str()), index.get(n.object_id.as_str())) {
                uf.union(x, y);
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        groups
            .entry(uf.find(i))
            .or_default()
            .push((*id).to_string());
    }
    let mut out: Vec<Vec<String>> = groups.into_values().collect();
    out.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    out
}

/// One KMeans cluster.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cluster {
    pub id: usize,
    pub size: usize,
    /// Up to five members closest to the centroid.
    pub examples: Vec<String>,
    /// Members per survey.
    pub surveys: BTreeMap<String, usize>,
}

/// KMeans (seeded, so reproducible) of the rows of `vectors`; `ids[i]` names row i and
/// `survey[i]` its survey. `k` is clamped to the number of rows.
pub fn kmeans(
    ids: &[String],
    surveys: &[String],
    vectors: &Array2<f64>,
    k: usize,
    seed: u64,
) -> Result<Vec<Cluster>, GraphError> {
    let n = vectors.nrows();
    if n < 2 {
        return Err(GraphError::TooFewObjects { needed: 2, got: n });
    }
    let k = k.clamp(1, n);
    let dataset = DatasetBase::from(vectors.clone());
    let rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let model = KMeans::params_with_rng(k, rng)
        .max_n_iterations(200)
        .tolerance(1e-6)
        .fit(&dataset)
        .map_err(|e| GraphError::KMeans {
            detail: e.to_string(),
        })?;
    let assignment = model.predict(&dataset);
    let centroids = model.centroids();
    let mut members: Vec<Vec<(f64, usize)>> = vec![Vec::new(); k];
    for (i, &c) in assignment.iter().enumerate() {
        let d: f64 = vectors
            .row(i)
            .iter()
            .zip(centroids.row(c).iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        members[c].push((d, i));
    }
    let mut out = Vec::new();
    for (c, mut m) in members.into_iter().enumerate() {
        if m.is_empty() {
            continue;
        }
        m.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut per_survey = BTreeMap::new();
        for (_, i) in &m {
            *per_survey.entry(surveys[*i].clone()).or_insert(0) += 1;
        }
        out.push(Cluster {
            id: c,
            size: m.len(),
            examples: m.iter().take(5).map(|(_, i)| ids[*i].clone()).collect(),
            surveys: per_survey,
        });
    }
    out.sort_by(|a, b| b.size.cmp(&a.size).then(a.id.cmp(&b.id)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: &str) -> Neighbour {
        Neighbour {
            object_id: id.into(),
            distance: 1.0,
        }
    }

    #[test]
    fn components_join_both_directions() {
        let mut lists = BTreeMap::new();
        lists.insert("a".to_string(), vec![n("b")]);
        lists.insert("b".to_string(), vec![]);
        lists.insert("c".to_string(), vec![n("b")]);
        lists.insert("d".to_string(), vec![n("e")]);
        lists.insert("e".to_string(), vec![]);
        let c = components(&lists);
        assert_eq!(c, vec![vec!["a", "b", "c"], vec!["d", "e"]]);
    }

    #[test]
    fn kmeans_separates_two_blobs() {
        let mut rows = Vec::new();
        for i in 0..20 {
            let off = if i < 10 { 0.0 } else { 10.0 };
            rows.extend([off + f64::from(i % 3) * 0.1, off]);
        }
        let v = Array2::from_shape_vec((20, 2), rows).unwrap();
        let ids: Vec<String> = (0..20).map(|i| format!("o{i}")).collect();
        let surveys = vec!["ztf".to_string(); 20];
        let c = kmeans(&ids, &surveys, &v, 2, 1).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].size, c[1].size), (10, 10));
    }
}
