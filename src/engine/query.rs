//! Reads of the graph and the embeddings: an object's neighbours (stored list or index
//! search), its vector, every current vector, and the components and clusters of the graph.
//! `similar.rs` has the filtered, dated similarity search. Imports `graph`, `model`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ndarray::Array2;
use serde::Serialize;

use super::{matrix_of, read, Engine, EngineError, Result, SimilarQuery, Target};
use crate::graph::{self, GRAPH_K};
use crate::index::live::LiveIndex;
use crate::model::Neighbour;
use crate::store::Store;

impl Engine {
    /// The `k` objects most similar to `object_id`, nearest first, the object itself excluded;
    /// with `as_of`, among the embeddings every object had at that MJD (see [`similar`]).
    pub fn similar(&self, object_id: &str, k: usize, as_of: Option<f64>) -> Result<Vec<Neighbour>> {
        let mut q = SimilarQuery::new(Target::Object(object_id.to_string()), k);
        q.as_of = as_of;
        Ok(self
            .find_similar(&q)?
            .into_iter()
            .map(|h| Neighbour {
                object_id: h.object_id,
                distance: h.distance,
            })
            .collect())
    }

    /// An object's current scaled vector, as the index keeps it (rounded to half precision
    /// in an f16 store), and its mask of undefined features.
    pub fn vector(&self, object_id: &str) -> Result<(Vec<f32>, Vec<bool>)> {
        let versions = self.store.vector_versions(object_id)?;
        let Some((_, v)) = versions.last() else {
            self.object(object_id)?;
            return Err(EngineError::NoEmbedding {
                object_id: object_id.to_string(),
                as_of: None,
            });
        };
        let raw: Vec<f64> = v.raw.iter().map(|&x| f64::from(x)).collect();
        let live = read(&self.live);
        let (mut vector, mask) = live.spec.transform(&raw);
        live.keep(&mut vector);
        Ok((vector, mask))
    }

    /// The neighbour list of an object in the kNN graph: its [`GRAPH_K`] nearest.
    pub fn neighbours(&self, object_id: &str) -> Result<Vec<Neighbour>> {
        if self.is_unlinked(object_id) {
            // Its stored list waits for a deferred relink: the index answers as it will.
            if let Some((_, mut list)) = self.lists_for(&[object_id.to_string()]).pop() {
                list.truncate(GRAPH_K);
                return Ok(list);
            }
        }
        match self.store.neighbours(object_id)? {
            Some(mut list) => {
                list.truncate(GRAPH_K);
                Ok(list)
            }
            None => {
                self.object(object_id)?;
                Ok(Vec::new())
            }
        }
    }

    /// Every object's [`GRAPH_K`] nearest neighbours: the kNN graph the analytics use.
    pub(super) fn graph_lists(&self) -> Result<BTreeMap<String, Vec<Neighbour>>> {
        graph_lists(&self.store)
    }

    /// Every current scaled vector, in object-id order.
    pub fn vectors(&self) -> (Vec<String>, Vec<Vec<f32>>) {
        vectors_of(&read(&self.live))
    }

    /// Every current vector, in object-id order: ids and an n × dim matrix.
    pub fn matrix(&self) -> Result<(Vec<String>, Array2<f64>)> {
        let (ids, vectors) = self.vectors();
        Ok((ids, matrix_of(vectors.iter(), self.embedder.dim())))
    }

    /// Connected components of the kNN graph and KMeans clusters of the embeddings.
    pub fn clusters(&self, k: Option<usize>, seed: u64) -> Result<ClusterReport> {
        let lists = self.graph_lists()?;
        let components = graph::components(&lists);
        let (ids, m) = self.matrix()?;
        let records = self
            .store
            .get_objects(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
        let surveys: Vec<String> = records
            .iter()
            .map(|r| r.as_ref().map_or("?".into(), |r| r.survey.to_string()))
            .collect();
        let k =
            k.unwrap_or_else(|| ((ids.len() as f64 / 2.0).sqrt().round() as usize).clamp(2, 20));
        let clusters = graph::kmeans(&ids, &surveys, &m, k, seed)?;
        Ok(ClusterReport {
            objects: ids.len(),
            component_sizes: components.iter().map(Vec::len).collect(),
            k: clusters.len(),
            clusters,
        })
    }

    pub(super) fn current_vector(&self, object_id: &str) -> Result<Vec<f32>> {
        if self.spec_outdated {
            return Err(EngineError::SpecOutdated);
        }
        if let Some(c) = read(&self.live).current(object_id) {
            return Ok(c.vector.clone());
        }
        self.object(object_id)?;
        Err(EngineError::NoEmbedding {
            object_id: object_id.to_string(),
            as_of: None,
        })
    }
}

/// Components of the kNN graph and KMeans clusters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterReport {
    pub objects: usize,
    /// Sizes of the connected components of the kNN graph, largest first.
    pub component_sizes: Vec<usize>,
    pub k: usize,
    pub clusters: Vec<graph::Cluster>,
}

/// Every stored neighbour list, cut to [`GRAPH_K`].
pub(super) fn graph_lists(store: &Store) -> Result<BTreeMap<String, Vec<Neighbour>>> {
    let mut lists = BTreeMap::new();
    store.for_each_neighbours(|id, mut list| {
        list.truncate(GRAPH_K);
        lists.insert(id.to_string(), list);
        true
    })?;
    Ok(lists)
}

/// Every current scaled vector of `live`, in object-id order.
pub(super) fn vectors_of(live: &LiveIndex) -> (Vec<String>, Vec<Vec<f32>>) {
    let mut rows: Vec<(&Arc<str>, Vec<f32>)> =
        live.objects().map(|(id, c)| (id, c.vector)).collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    rows.into_iter().map(|(id, v)| (id.to_string(), v)).unzip()
}
