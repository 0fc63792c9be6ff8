//! The neighbour vote and the pooling of the brokers' packet scores into it.
//!
//! - **Vote**: each labelled neighbour votes with weight 1/(d + d0), d0 = 0.05 (distances are in
//!   scaled-feature units, typical neighbour distances 1-5). Probabilities are the weighted
//!   vote shares shrunk toward uniform over the classes present by a Dirichlet prior of
//!   α = 0.5 pseudo-votes per class (Jeffreys): one close voter gives a confident but not
//!   certain answer, many agreeing voters approach 1. This is a shrinkage calibration with a
//!   fixed prior, not a fitted one: the labelled sets we have are too small to fit isotonic
//!   or Platt scaling honestly.
//! - **Packet scores** (`rf_snia_vs_nonia`, `snn_snia_vs_nonia`: the brokers' SN Ia
//!   probabilities): averaged into s and pooled log-linearly, p'(c) ∝ p(c) · q(c)^β with
//!   q(SN Ia) = s, q(other) = (1 − s)/(C − 1), β = 0.5 — the vote stays the main evidence.
//!
//! Pure; imports `model`.

use std::collections::BTreeMap;

use crate::model::{AnnotationValue, ObjectRecord};

/// Distance offset of the vote weights.
pub const VOTE_D0: f64 = 0.05;
/// Dirichlet pseudo-votes per class.
pub const VOTE_ALPHA: f64 = 0.5;
/// Exponent of the packet-score pooling.
pub const SCORE_BETA: f64 = 0.5;

/// Class probabilities from labelled voters (class, distance).
pub fn vote(voters: &[(String, f32)]) -> BTreeMap<String, f64> {
    let mut weights: BTreeMap<String, f64> = BTreeMap::new();
    for (class, d) in voters {
        *weights.entry(class.clone()).or_default() += 1.0 / (f64::from(*d) + VOTE_D0);
    }
    let total: f64 = weights.values().sum();
    let c = weights.len() as f64;
    weights
        .into_iter()
        .map(|(k, w)| (k, (w + VOTE_ALPHA) / (total + VOTE_ALPHA * c)))
        .collect()
}

/// The most probable class and its probability; at equal probabilities the first by name.
pub fn best_class(probabilities: &BTreeMap<String, f64>) -> Option<(String, f64)> {
    probabilities
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(c, p)| (c.clone(), *p))
}

/// Pools vote probabilities with a packet's SN Ia probability `s` (see the module doc).
pub fn pool_snia_score(probs: &mut BTreeMap<String, f64>, s: f64) {
    let c = probs.len();
    if c < 2 || !probs.contains_key("SN Ia") || !(0.0..=1.0).contains(&s) {
        return;
    }
    let s = s.clamp(1e-3, 1.0 - 1e-3);
    let other = (1.0 - s) / (c as f64 - 1.0);
    for (class, p) in probs.iter_mut() {
        let q = if class == "SN Ia" { s } else { other };
        *p *= q.powf(SCORE_BETA);
    }
    let total: f64 = probs.values().sum();
    if total > 0.0 {
        for p in probs.values_mut() {
            *p /= total;
        }
    }
}

/// The brokers' SN Ia probabilities an object's annotations may carry.
const SNIA_SCORE_FIELDS: &[&str] = &["rf_snia_vs_nonia", "snn_snia_vs_nonia"];

/// The mean of the brokers' SN Ia probabilities in an object's annotations, if any.
pub fn snia_score(r: &ObjectRecord) -> Option<f64> {
    let scores: Vec<f64> = SNIA_SCORE_FIELDS
        .iter()
        .filter_map(|k| match r.annotations.get(*k).map(|a| &a.value) {
            Some(AnnotationValue::Number(x)) if (0.0..=1.0).contains(x) => Some(*x),
            _ => None,
        })
        .collect();
    (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn votes_are_shrunk_probabilities() {
        let p = vote(&[
            ("SN Ia".into(), 1.0),
            ("SN Ia".into(), 1.2),
            ("RR Lyr".into(), 3.0),
        ]);
        let total: f64 = p.values().sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!(p["SN Ia"] > 0.6 && p["SN Ia"] < 1.0);
        let mut q = p.clone();
        pool_snia_score(&mut q, 0.05);
        assert!(
            q["SN Ia"] < p["SN Ia"],
            "a low packet SN Ia score lowers SN Ia"
        );
    }
}
