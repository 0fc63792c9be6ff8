//! KMeans clusters of the embeddings (linfa-clustering), seeded so they are reproducible,
//! each with its size, its members nearest the centroid and its members per survey.

use std::collections::BTreeMap;

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand::SeedableRng;
use serde::Serialize;

use super::GraphError;

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
