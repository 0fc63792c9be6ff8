//! Connected components of the undirected kNN graph (petgraph's union-find): which objects
//! are linked by chains of neighbours. Imports `model`.

use std::collections::{BTreeMap, HashMap};

use petgraph::unionfind::UnionFind;

use crate::model::Neighbour;

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
}
