//! The kNN graph: every object with an embedding keeps its nearest neighbours (with
//! distances) in the store's `neighbours` column family: up to [`STORED_K`] of them, of which
//! the first [`GRAPH_K`] are served (votes, watches, clusters, label spreading); the rest is
//! slack that absorbs neighbours moving away.
//!
//! Refresh policy ([`lists`]), applied by the engine in the same atomic write as the alerts
//! that caused it: when an ingest batch re-embeds a set C of objects, the lists of C are
//! recomputed by index search; the lists of every object that named a member of C (it may have
//! moved away), of every new neighbour of a member of C (it may have moved close), and of every
//! object whose list a member now enters though neither names the other (k-NN is not
//! symmetric: a hub belongs in lists whose owners lie far down its own ranking; found among
//! the owners of the lists naming its new neighbours, by each list's radius) are patched: the
//! member is taken out and put back at its new distance, and the list keeps only its entries
//! within its old last distance (those are certain). Only a list left with fewer
//! than [`GRAPH_K`] certain entries is searched again; the slack makes that rare (without it,
//! most moves sent the ~10 lists naming the moved object back to the index). About |C| searches
//! plus O(k²·|C|) distance computations per batch; a scaler refit recomputes every list. "The
//! objects that named a member of C" come from the reverse graph ([`reverse`]).
//!
//! Analytics on the graph: connected components ([`components`], petgraph) and KMeans clusters
//! of the embeddings ([`clusters`], linfa-clustering). The science that reads the graph (votes,
//! anomalies, ...) is in `src/science/`.
//!
//! Files: `lists` (search and patch) imports `reverse`; `reverse` imports nothing of this
//! module but the list types below; no cycle. Imports `model`, `store`, `index`.

pub mod clusters;
pub mod components;
pub mod lists;
pub mod reverse;

use std::collections::HashMap;

use crate::model::Neighbour;
use crate::store::StoreError;

pub use clusters::{kmeans, Cluster};
pub use components::components;

/// Neighbours served per object.
pub const GRAPH_K: usize = 10;

/// Neighbours stored per object: [`GRAPH_K`] and the slack that keeps patched lists exact.
pub const STORED_K: usize = GRAPH_K + 6;

/// Neighbour lists to write, by object.
pub type Lists = Vec<(String, Vec<Neighbour>)>;

/// Stored neighbour lists by object, as they were before a batch replaced them.
pub type Replaced = HashMap<String, Vec<Neighbour>>;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("clustering needs at least {needed} embedded objects, the store has {got}")]
    TooFewObjects { needed: usize, got: usize },
    #[error("KMeans: {detail}")]
    KMeans { detail: String },
}

pub type Result<T> = std::result::Result<T, GraphError>;
