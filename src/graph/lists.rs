//! Neighbour lists from the live index: fresh ones by search, and the patch of the lists a
//! batch of re-embedded objects touches. Free functions over a [`LiveIndex`] and a
//! [`ReverseGraph`], so that a refit running beside the engine computes lists the same way.
//! Imports `index` (the live index), `model` and the reverse graph.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;

use super::reverse::ReverseGraph;
use super::{Lists, Replaced, Result, GRAPH_K, STORED_K};
use crate::index::live::LiveIndex;
use crate::model::Neighbour;

/// A set of object ids (or numbers) hashed with foldhash (randomly seeded per process),
/// faster than SipHash on these short keys; the relink builds thousands per batch.
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

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
) -> Vec<(String, Vec<String>)> {
    own.par_iter()
        .map_init(Vec::new, |buf, (x, list)| {
            let xv = live.current(x)?;
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
                    if live
                        .distance_to(name, &xv.vector, buf)
                        .is_some_and(|d| d <= radius)
                    {
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
    let mut touched: BTreeMap<String, FastSet<String>> = BTreeMap::new();
    for (x, list) in &own {
        for n in list {
            if !moved_set.contains(n.object_id.as_str()) {
                touched
                    .entry(n.object_id.clone())
                    .or_default()
                    .insert(x.clone());
            }
        }
    }
    for x in moved {
        for y in reverse.listed_by(x) {
            if !moved_set.contains(y) {
                touched.entry(y.to_string()).or_default().insert(x.clone());
            }
        }
    }
    for (x, ys) in entered(live, reverse, &own, &moved_set) {
        for y in ys {
            touched.entry(y).or_default().insert(x.clone());
        }
    }
    // One read for the lists being replaced: the moved objects' own, then the touched.
    let mut keys: Vec<&str> = moved.iter().map(String::as_str).collect();
    keys.extend(touched.keys().map(String::as_str));
    let mut old_lists = stored(&keys)?;
    let old_touched = old_lists.split_off(moved.len());
    let mut replaced: Replaced = moved
        .iter()
        .cloned()
        .zip(old_lists)
        .map(|(id, list)| (id, list.unwrap_or_default()))
        .collect();
    let mut research = Vec::new();
    let mut out = own.clone();
    for ((y, xs), list) in touched.iter().zip(old_touched) {
        let Some(yv) = live.current(y) else { continue };
        let old = list.unwrap_or_default();
        replaced.insert(y.clone(), old.clone());
        let Some(last) = old.last().map(|n| n.distance) else {
            research.push(y.clone());
            continue;
        };
        let mut list: Vec<Neighbour> = old
            .into_iter()
            .filter(|n| !xs.contains(&n.object_id))
            .collect();
        for x in xs {
            if let Some(xv) = live.current(x) {
                list.push(Neighbour {
                    object_id: x.clone(),
                    distance: crate::embed::l2(&yv.vector, &xv.vector),
                });
            }
        }
        list.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then(a.object_id.cmp(&b.object_id))
        });
        // Beyond the old last distance, objects the list never held may be nearer.
        list.retain(|n| n.distance <= last);
        if list.len() >= GRAPH_K {
            list.truncate(STORED_K);
            out.push((y.clone(), list));
        } else {
            research.push(y.clone());
        }
    }
    out.extend(search(live, &research));
    Ok((out, replaced))
}
