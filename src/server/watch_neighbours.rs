//! `WatchNeighbours`: one event with the current state of each watched object, then one
//! whenever a committed write changes its neighbour list or its class probabilities.
//!
//! The engine calls an observer after every commit; the server fans the events out on a
//! broadcast channel. A watch re-reads an object only when the commit touched it, its
//! neighbours or its voters; a watcher that fell behind re-reads every object it watches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::proto::{neighbour_event::Kind, NeighbourEvent};
use super::{convert, ServerError};
use crate::engine::{ChangeEvent, Classification, Engine, EngineError};
use crate::model::Neighbour;

/// What a watcher last saw of an object.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    neighbours: Vec<Neighbour>,
    classification: Option<Classification>,
}

impl Seen {
    fn look(engine: &Engine, object_id: &str) -> Result<Seen, ServerError> {
        let neighbours = engine.neighbours(object_id)?;
        let classification = match engine.classify(object_id) {
            Ok(c) => Some(c),
            Err(EngineError::NoEmbedding { .. } | EngineError::SpecOutdated) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Seen {
            neighbours,
            classification,
        })
    }

    /// The objects whose change can change this state: neighbours and voters.
    fn involved(&self) -> impl Iterator<Item = &str> {
        let voters = self.classification.iter().flat_map(|c| &c.voters);
        self.neighbours
            .iter()
            .map(|n| n.object_id.as_str())
            .chain(voters.map(|v| v.object_id.as_str()))
    }

    /// Same neighbours and the same class probabilities.
    fn same_as(&self, other: &Seen) -> bool {
        let probabilities = |s: &Seen| {
            s.classification
                .as_ref()
                .map(|c| (c.class.clone(), c.probabilities.clone()))
        };
        self.neighbours == other.neighbours && probabilities(self) == probabilities(other)
    }

    fn event(&self, kind: Kind, object_id: &str, caused_by: Vec<String>) -> NeighbourEvent {
        NeighbourEvent {
            kind: kind as i32,
            object_id: object_id.to_string(),
            neighbours: self.neighbours.iter().map(convert::neighbour).collect(),
            classification: self.classification.as_ref().map(convert::classification),
            caused_by,
        }
    }
}

async fn look_all(
    engine: &Arc<Engine>,
    ids: Vec<String>,
) -> Result<Vec<(String, Seen)>, ServerError> {
    let engine = Arc::clone(engine);
    tokio::task::spawn_blocking(move || {
        ids.into_iter()
            .map(|id| Seen::look(&engine, &id).map(|s| (id, s)))
            .collect()
    })
    .await?
}

/// Starts a watch; the stream ends when the client leaves or the server shuts down.
pub(super) fn start(
    engine: Arc<Engine>,
    events: &broadcast::Sender<Arc<ChangeEvent>>,
    mut closing: watch::Receiver<bool>,
    ids: Vec<String>,
) -> ReceiverStream<Result<NeighbourEvent, Status>> {
    // Subscribed before the first look, so no commit falls between the two.
    let mut rx = events.subscribe();
    let (tx, out) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut seen: HashMap<String, Seen> = match look_all(&engine, ids).await {
            Ok(states) => states.into_iter().collect(),
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        for (id, s) in &seen {
            if tx
                .send(Ok(s.event(Kind::Initial, id, Vec::new())))
                .await
                .is_err()
            {
                return;
            }
        }
        loop {
            let event = tokio::select! {
                e = rx.recv() => e,
                _ = closing.changed() => return,
                _ = tx.closed() => return,
            };
            let event = match event {
                Ok(e) => Some(e),
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let relevant: Vec<String> = seen
                .iter()
                .filter(|(id, s)| event.as_ref().is_none_or(|e| touches(e, id, s)))
                .map(|(id, _)| id.clone())
                .collect();
            if relevant.is_empty() {
                continue;
            }
            let fresh = match look_all(&engine, relevant).await {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            for (id, new) in fresh {
                let Some(old) = seen.get(&id) else { continue };
                if old.same_as(&new) {
                    continue;
                }
                let caused_by = event
                    .as_ref()
                    .map(|e| causes(e, &id, old, &new))
                    .unwrap_or_default();
                let message = new.event(Kind::Changed, &id, caused_by);
                seen.insert(id, new);
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        }
    });
    ReceiverStream::new(out)
}

/// Whether a commit may have changed what a watcher saw of `id`.
fn touches(e: &ChangeEvent, id: &str, seen: &Seen) -> bool {
    let hit = |list: &[String], x: &str| list.iter().any(|y| y == x);
    hit(&e.relisted, id)
        || hit(&e.changed_objects, id)
        || seen
            .involved()
            .any(|x| hit(&e.changed_objects, x) || hit(&e.labelled, x))
}

/// The changed or relabelled objects that explain a change of `id`'s state.
fn causes(e: &ChangeEvent, id: &str, old: &Seen, new: &Seen) -> Vec<String> {
    let involved: HashSet<&str> = old
        .involved()
        .chain(new.involved())
        .chain(std::iter::once(id))
        .collect();
    let mut out: Vec<String> = e
        .changed_objects
        .iter()
        .chain(&e.labelled)
        .filter(|x| involved.contains(x.as_str()))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}
