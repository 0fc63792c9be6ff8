//! Experts' votes and what follows from them: recording a vote, recommendations from
//! positive and negative examples (or a user's votes), and explanations of a distance.
//! Imports `science`, `model`.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use super::similar::curve_of;
use super::{check_count, read, Engine, EngineError, Filters, Result, MAX_K};
use crate::embed::{FeatureGroup, GroupWeights};
use crate::model::Vote;
use crate::science::curves::{self, Curve};
use crate::science::{self, Explanation};

impl Engine {
    /// Records a user's vote on an object.
    pub fn vote(&self, user: &str, object_id: &str, vote: Vote) -> Result<()> {
        if user.is_empty() || user.contains('\0') {
            return Err(EngineError::InvalidArgument {
                field: "user",
                reason: "must be a non-empty name without NUL".into(),
            });
        }
        self.object(object_id)?;
        Ok(self.store.put_vote(user, object_id, vote)?)
    }

    pub(super) fn user_votes(&self, user: &str) -> Result<BTreeMap<String, Vote>> {
        let votes = self.store.votes(user)?;
        if votes.is_empty() {
            return Err(EngineError::UnknownUser {
                user: user.to_string(),
            });
        }
        Ok(votes)
    }

    /// Objects like the positive examples and unlike the negative ones (or like what `user`
    /// voted up and unlike what they voted down), filtered, best first. Score: mean over
    /// positives of 1/(1 + d) minus mean over negatives of 1/(1 + d), d measured on the
    /// preset's features (`features`) among the nearest candidates of each positive by that
    /// preset (`Engine::nearest_by`); for the curves preset, d is the lightcurves' fit
    /// (`science::curves::distance`; a lightcurve that cannot be compared scores 0).
    /// Never returns the examples nor objects the user voted on.
    pub fn recommend(&self, req: &RecommendQuery) -> Result<Vec<Recommendation>> {
        let (mut like, mut unlike) = (req.like.clone(), req.unlike.clone());
        let mut exclude: HashSet<String> = like.iter().chain(&unlike).cloned().collect();
        if let Some(user) = &req.user {
            for (id, v) in self.user_votes(user)? {
                match v {
                    Vote::Up => like.push(id.clone()),
                    Vote::Down => unlike.push(id.clone()),
                }
                exclude.insert(id);
            }
        }
        if like.is_empty() {
            return Err(EngineError::NoPositiveExamples);
        }
        req.filters.validate()?;
        check_count("top", req.top)?;
        let pos: Vec<Vec<f32>> = like
            .iter()
            .map(|id| self.current_vector(id))
            .collect::<Result<_>>()?;
        let neg: Vec<Vec<f32>> = unlike
            .iter()
            .map(|id| self.current_vector(id))
            .collect::<Result<_>>()?;
        let per_example = (req.top * 10).clamp(50, MAX_K);
        let mut candidates: HashSet<String> = HashSet::new();
        // The curves preset compares the examples' lightcurves with the candidates'.
        let example_curves = |ids: &[String]| -> Result<Vec<Curve>> {
            match req.features {
                FeatureGroup::Curves => ids
                    .iter()
                    .map(|id| {
                        let r = self.object(id)?;
                        Ok(curve_of(&r.detections, &r.upper_limits))
                    })
                    .collect(),
                _ => Ok(Vec::new()),
            }
        };
        let (pos_curves, neg_curves) = (example_curves(&like)?, example_curves(&unlike)?);
        for (i, v) in pos.iter().enumerate() {
            let near = self.nearest_by(
                v,
                per_example,
                None,
                req.features,
                req.weights,
                pos_curves
                    .get(i)
                    .map(|c| (c, super::similar::CURVE_CANDIDATES)),
            )?;
            for (id, _) in near {
                if !exclude.contains(id.as_ref()) {
                    candidates.insert(id.to_string());
                }
            }
        }
        let mask = read(&self.live)
            .spec
            .group_multipliers(req.features, req.weights);
        let masked = |v: &[f32]| -> Vec<f32> { v.iter().zip(&mask).map(|(x, m)| x * m).collect() };
        let (pos, neg): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (
            pos.iter().map(|v| masked(v)).collect(),
            neg.iter().map(|v| masked(v)).collect(),
        );
        let score = |v: &[f32], set: &[Vec<f32>]| -> f64 {
            if set.is_empty() {
                return 0.0;
            }
            let v = masked(v);
            set.iter()
                .map(|e| 1.0 / (1.0 + f64::from(crate::embed::l2(&v, e))))
                .sum::<f64>()
                / set.len() as f64
        };
        let mut scored: Vec<(f64, String)> = if req.features == FeatureGroup::Curves {
            // Closeness to a set of examples: the mean of 1 / (1 + fit) over them (0 for a
            // lightcurve that cannot be compared).
            let close = |c: &Curve, set: &[Curve]| -> f64 {
                if set.is_empty() {
                    return 0.0;
                }
                set.iter()
                    .map(|e| 1.0 / (1.0 + curves::distance(e, c)))
                    .sum::<f64>()
                    / set.len() as f64
            };
            let ids: Vec<String> = candidates.into_iter().collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let records = self.store.get_objects(&refs)?;
            ids.into_par_iter()
                .zip(records)
                .filter_map(|(id, r)| {
                    let r = r?;
                    let c = curve_of(&r.detections, &r.upper_limits);
                    Some((close(&c, &pos_curves) - close(&c, &neg_curves), id))
                })
                .collect()
        } else {
            let live = read(&self.live);
            candidates
                .into_iter()
                .filter_map(|id| {
                    let v = &live.current(&id)?.vector;
                    Some((score(v, &pos) - score(v, &neg), id))
                })
                .collect()
        };
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out = Vec::new();
        for (s, id) in scored {
            if out.len() == req.top {
                break;
            }
            let r = self.object(&id)?;
            let position = r.meta.ra.zip(r.meta.dec);
            if !req
                .filters
                .admits(r.detections.len(), r.meta.last_mjd, position)
            {
                continue;
            }
            let label = self
                .primary_labels_of(&[id.as_str()], [Some(&r)])?
                .pop()
                .flatten();
            let Some(class) = self.class_if_admitted(&id, label, &req.filters)? else {
                continue;
            };
            out.push(Recommendation {
                object_id: id,
                score: s,
                class,
                n_detections: r.detections.len(),
            });
        }
        Ok(out)
    }

    /// Which features and bands make two objects close, and which set them apart.
    pub fn explain(&self, a: &str, b: &str) -> Result<Explanation> {
        let (va, ma) = self.vector(a)?;
        let (vb, mb) = self.vector(b)?;
        Ok(science::explain(
            self.embedder.names(),
            &va,
            &vb,
            &ma,
            &mb,
            8,
        ))
    }
}

#[derive(Debug, Clone, Default)]
pub struct RecommendQuery {
    pub like: Vec<String>,
    pub unlike: Vec<String>,
    pub user: Option<String>,
    pub top: usize,
    pub filters: Filters,
    /// The features the examples are compared by (a preset, as in `SimilarQuery`).
    pub features: FeatureGroup,
    /// The query's own group weights (as in `SimilarQuery`).
    pub weights: Option<GroupWeights>,
}
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendation {
    pub object_id: String,
    pub score: f64,
    pub class: Option<String>,
    pub n_detections: usize,
}
