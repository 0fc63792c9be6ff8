//! Neighbour lists from the live index: fresh ones by search, and the patch of the lists a
//! batch of re-embedded objects touches. Free functions over a [`LiveIndex`] and a
//! [`ReverseGraph`], so that a refit running beside the engine computes lists the same way.
//! Imports `index` (the live index), `model` and the reverse graph.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;

use super::reverse::ReverseGraph;
use super::{Lists, Replaced, Result, GRAPH_K, STORED_K};
use crate::index::live::LiveIndex;
use crate::model::Neighbour;

/// A set of object ids (or numbers) hashed with foldhash (randomly seeded per process),
/// faster than SipHash on these short keys; the relink builds thousands per batch.
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The lists each moved object now enters though neither names the other: k-NN is not
/// symmetric, and an object near many (a hub) belongs in lists whose owners lie far down its
/// own ranking. Such an owner lists objects near the moved one, so the candidates are the
/// owners of the lists naming its new neighbours, kept where it lies within the list's
/// radius ([`ReverseGraph::radius_of`]). An owner the search did not return lies beyond the
/// moved object's last found neighbour, so one whose radius is shorter than that is passed
/// over without reading its vector.
fn entered(
    live: &LiveIndex,
    reverse: &ReverseGraph,
    own: &Lists,
    moved: &FastSet<&str>,
    moved_vectors: &FastMap<&str, Vec<f32>>,
) -> Vec<(String, Vec<String>)> {
    own.par_iter()
        .map_init(Vec::new, |buf, (x, list)| {
            let xv = moved_vectors.get(x.as_str())?;
            let floor = match list.last() {
                Some(last) if list.len() >= STORED_K => last.distance,
                _ => 0.0,
            };
            let numbers: Vec<u32> = list
                .iter()
                .filter_map(|n| reverse.number(&n.object_id))
                .collect();
            let mut seen: FastSet<u32> = numbers.iter().copied().collect();
            seen.extend(reverse.number(x));
            let mut ys = Vec::new();
            for &w in &numbers {
                for &y in reverse.listed_by_number(w) {
                    let radius = reverse.radius_of(y);
                    if radius < floor || !seen.insert(y) {
                        continue;
                    }
                    let name = reverse.name(y);
                    if moved.contains(name) {
                        continue;
                    }
                    if live.distance_to(name, xv, buf).is_some_and(|d| d <= radius) {
                        ys.push(name.to_string());
                    }
                }
            }
            Some((x.clone(), ys))
        })
        .flatten()
        .collect()
}

/// Fresh neighbour lists for `ids`, by index search.
pub fn search(live: &LiveIndex, ids: &[String]) -> Lists {
    ids.par_iter()
        .filter_map(|id| {
            let c = live.current(id)?;
            let list = live
                .search(&c.vector, STORED_K, Some(id))
                .into_iter()
                .map(|(n, d)| Neighbour {
                    object_id: n.to_string(),
                    distance: d,
                })
                .collect();
            Some((id.clone(), list))
        })
        .collect()
}

/// New neighbour lists after the `moved` objects were re-embedded: theirs by search, and
/// the lists of the objects that named them or that they now name, patched: a moved
/// object is taken out and put back at its new distance, the list keeps its entries within
/// its old last distance, and only a list left with fewer than [`GRAPH_K`] of those is
/// searched again. Exact whenever the patched list was exact before. Also returns the
/// lists the new ones replace. `reverse` says who lists whom in the lists `stored` reads
/// (one call, for the lists of the given objects).
pub fn relink(
    live: &LiveIndex,
    reverse: &ReverseGraph,
    moved: &[String],
    stored: impl FnOnce(&[&str]) -> Result<Vec<Option<Vec<Neighbour>>>>,
) -> Result<(Lists, Replaced)> {
    let own = search(live, moved);
    let moved_set: FastSet<&str> = moved.iter().map(String::as_str).collect();
    // The moved objects' vectors, read once for the lists they enter and the patches.
    let moved_vectors: FastMap<&str, Vec<f32>> = moved
        .par_iter()
        .filter_map(|x| Some((x.as_str(), live.current(x)?.vector)))
        .collect();
    let entered = entered(live, reverse, &own, &moved_set, &moved_vectors);
    let mut touched: BTreeMap<&str, FastSet<&str>> = BTreeMap::new();
    for (x, list) in &own {
        for n in list {
            if !moved_set.contains(n.object_id.as_str()) {
                touched.entry(&n.object_id).or_default().insert(x);
            }
        }
    }
    for x in moved {
        for y in reverse.listed_by(x) {
            if !moved_set.contains(y) {
                touched.entry(y).or_default().insert(x);
            }
        }
    }
    for (x, ys) in &entered {
        for y in ys {
            touched.entry(y).or_default().insert(x);
        }
    }
    // One read for the lists being replaced: the moved objects' own, then the touched.
    let mut keys: Vec<&str> = moved.iter().map(String::as_str).collect();
    keys.extend(touched.keys());
    let mut old_lists = stored(&keys)?;
    let old_touched = old_lists.split_off(moved.len());
    let mut replaced: Replaced = moved
        .iter()
        .cloned()
        .zip(old_lists)
        .map(|(id, list)| (id, list.unwrap_or_default()))
        .collect();
    let touched: Vec<(&str, FastSet<&str>)> = touched.into_iter().collect();
    let patched: Vec<(String, Vec<Neighbour>, Option<Vec<Neighbour>>)> = touched
        .into_par_iter()
        .zip(old_touched)
        .map_init(Vec::new, |buf, ((y, xs), list)| {
            let placed = live.with_vector(y, buf, |yv| {
                xs.iter()
                    .filter_map(|&x| {
                        Some(Neighbour {
                            object_id: x.to_string(),
                            distance: crate::embed::l2(yv, moved_vectors.get(x)?),
                        })
                    })
                    .collect::<Vec<_>>()
            })?;
            let old = list.unwrap_or_default();
            let new = patch(&old, &xs, placed);
            Some((y.to_string(), old, new))
        })
        .flatten()
        .collect();
    let mut research = Vec::new();
    let mut out = own;
    for (y, old, list) in patched {
        match list {
            Some(list) => out.push((y.clone(), list)),
            None => research.push(y.clone()),
        }
        replaced.insert(y, old);
    }
    out.extend(search(live, &research));
    Ok((out, replaced))
}

/// `old` (a stored list) with the `moved` objects taken out and put back at their new
/// distances (`placed`), keeping what lies within its old last distance; `None` when fewer
/// than [`GRAPH_K`] remain (or `old` is empty), so that the list has to be searched again.
fn patch(
    old: &[Neighbour],
    moved: &FastSet<&str>,
    placed: Vec<Neighbour>,
) -> Option<Vec<Neighbour>> {
    let last = old.last()?.distance;
    let mut list: Vec<Neighbour> = old
        .iter()
        .filter(|n| !moved.contains(n.object_id.as_str()))
        .cloned()
        .chain(placed)
        .collect();
    list.sort_by(|a, b| {
        a.distance
            .total_cmp(&b.distance)
            .then(a.object_id.cmp(&b.object_id))
    });
    // Beyond the old last distance, objects the list never held may be nearer.
    list.retain(|n| n.distance <= last);
    (list.len() >= GRAPH_K).then(|| {
        list.truncate(STORED_K);
        list
    })
}
