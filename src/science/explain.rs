//! Why two objects are close or apart: each feature's share of the squared distance between
//! their scaled vectors, the features they share and those that set them apart, and the share
//! per band. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

/// One feature's share of the distance between two objects.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Contribution {
    pub feature: String,
    pub a: f32,
    pub b: f32,
    /// (a − b)², its part of the squared distance.
    pub contribution: f32,
    /// Its fraction of the squared distance.
    pub share: f32,
}

/// Why two objects are close or apart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explanation {
    pub distance: f32,
    /// Features both objects have, with the smallest contributions: what makes them alike.
    pub closest: Vec<Contribution>,
    /// Features with the largest contributions: what sets them apart.
    pub apart: Vec<Contribution>,
    /// Share of the squared distance per band (`g`, `r`) and for the cross-band features.
    pub by_band: BTreeMap<String, f32>,
}

/// Explains the distance between scaled vectors `a` and `b` (masks: undefined features).
pub fn explain(
    names: &[String],
    a: &[f32],
    b: &[f32],
    mask_a: &[bool],
    mask_b: &[bool],
    top: usize,
) -> Explanation {
    let contributions: Vec<Contribution> = names
        .iter()
        .enumerate()
        .map(|(j, name)| (j, name, (a[j] - b[j]) * (a[j] - b[j])))
        .map(|(j, name, c)| Contribution {
            feature: name.clone(),
            a: a[j],
            b: b[j],
            contribution: c,
            share: 0.0,
        })
        .collect();
    let total: f32 = contributions.iter().map(|c| c.contribution).sum();
    let with_share: Vec<Contribution> = contributions
        .into_iter()
        .map(|c| Contribution {
            share: if total > 0.0 {
                c.contribution / total
            } else {
                0.0
            },
            ..c
        })
        .collect();
    let mut closest: Vec<Contribution> = with_share
        .iter()
        .enumerate()
        .filter(|(j, _)| !mask_a[*j] && !mask_b[*j])
        .map(|(_, c)| c.clone())
        .collect();
    closest.sort_by(|x, y| x.contribution.total_cmp(&y.contribution));
    closest.truncate(top);
    let mut apart = with_share.clone();
    apart.sort_by(|x, y| y.contribution.total_cmp(&x.contribution));
    apart.truncate(top);
    let mut by_band: BTreeMap<String, f32> = BTreeMap::new();
    for c in &with_share {
        let band = match c.feature.split_once('_') {
            Some((b, _)) if b.len() == 1 => b.to_string(),
            _ => "cross-band".to_string(),
        };
        *by_band.entry(band).or_default() += c.share;
    }
    Explanation {
        distance: total.sqrt(),
        closest,
        apart,
        by_band,
    }
}
