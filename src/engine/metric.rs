//! The metric learned from labels, in the engine: fitting it on every labelled object and
//! rebuilding the index with it (`reindex --learn-metric`, and again after each label import
//! once a store has one), and the k-fold evaluation that fits it on training folds only. Also
//! the exact votes of early-lightcurve analogs (`--at-age`): every object compared as it was
//! so many days after its own first detection.
//! The formulas are in `science::metric`. Imports `embed`, `science`, `store`.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::Serialize;

use super::classify::{Classification, EvaluationReport, Voter, VOTERS};
use super::similar::invalid;
use super::Engine;
use super::{current_entries, lock, read, EngineError, Result};
use crate::embed::{l2, EmbeddingSpec, LearnedMetric, Metric};
use crate::index::live::{Entry, Facts};
use crate::index::{exact_knn, numbered, PointId};
use crate::model::{Label, ObjectRecord, VectorVersion};
use crate::science;
use crate::science::metric::{relevance_weights, stratified_folds};
use crate::science::taxonomy::{self, primary};

/// Method name recorded with a learned metric.
pub const LEARNED_METHOD: &str = "anova-relevance";

/// Folds of the honest evaluation of a learned metric.
pub const DEFAULT_FOLDS: usize = 5;

/// What fitting a learned metric did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricReport {
    pub method: String,
    pub labelled_objects: usize,
    pub classes: Vec<String>,
    pub spec_version: u64,
    /// The features with the largest weights, largest first (at most 10).
    pub top_features: Vec<(String, f64)>,
    /// Features the metric gave no weight.
    pub zero_weight_features: usize,
}

impl Engine {
    /// Fits the learned metric on every labelled object's current vector and rebuilds the
    /// index and the kNN lists with it (a new spec version; the scaler is kept).
    pub fn learn_metric(&self) -> Result<MetricReport> {
        let _guard = lock(&self.writer);
        self.learn_metric_locked()
    }

    /// [`Self::learn_metric`] with the writer lock held.
    pub(super) fn learn_metric_locked(&self) -> Result<MetricReport> {
        if self.spec_outdated {
            return Err(EngineError::SpecOutdated);
        }
        // The spec is about to change: stop a refit running beside the engine.
        drop(lock(&self.refit).take());
        let entries = current_entries(&self.store)?;
        let classes_of = self.labelled_classes()?;
        let old = read(&self.live).spec.clone();
        let base = old.unlearned();
        let labelled: Vec<(&Entry, &String)> = entries
            .iter()
            .filter_map(|e| classes_of.get(&e.object_id).map(|c| (e, c)))
            .collect();
        let (rows, classes, names) = numbered_rows(&base, &labelled);
        let row_refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let weights = relevance_weights(&row_refs, &classes, &base.weights).ok_or_else(|| {
            invalid(
                "labels",
                format!(
                    "a learned metric needs two classes with at least two labelled objects \
                     each and a feature that differs between them ({} labelled objects, {} \
                     classes)",
                    labelled.len(),
                    names.len()
                ),
            )
        })?;
        let spec = old.reweighed(
            weights,
            Metric {
                learned: Some(LearnedMetric {
                    method: LEARNED_METHOD.to_string(),
                    labelled_objects: labelled.len() as u64,
                    classes: names.clone(),
                }),
                ..base.metric.clone()
            },
        );
        let report = MetricReport {
            method: LEARNED_METHOD.to_string(),
            labelled_objects: labelled.len(),
            classes: names,
            spec_version: spec.version,
            top_features: top_features(&spec, 10),
            zero_weight_features: spec.weights.iter().filter(|w| **w == 0.0).count(),
        };
        let index = read(&self.live).config().clone();
        self.install_spec(spec, entries, crate::store::Batch::default(), index)?;
        tracing::info!(
            labelled = report.labelled_objects,
            classes = report.classes.len(),
            "learned metric fitted"
        );
        Ok(report)
    }

    /// The primary class of every labelled object (imported labels and the record's own).
    pub(super) fn labelled_classes(&self) -> Result<HashMap<String, String>> {
        let mut imported: HashMap<String, Vec<Label>> = HashMap::new();
        self.store.for_each_labels(|id, l| {
            imported.insert(id.to_string(), l);
        })?;
        let mut own: HashMap<String, Vec<Label>> = HashMap::new();
        self.store.for_each_record_labels(|id, l| {
            own.insert(id.to_string(), l);
        })?;
        let mut ids: Vec<String> = imported.keys().chain(own.keys()).cloned().collect();
        ids.sort();
        ids.dedup();
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let merged = taxonomy::merge(
                    imported.get(&id).map_or(&[][..], Vec::as_slice),
                    own.get(&id).cloned().unwrap_or_default(),
                );
                let class = primary(&merged)?.class.clone();
                Some((id, class))
            })
            .collect())
    }

    /// The raw features of the objects of `truth` that have some, with their classes: the
    /// current ones, or with `at_age` each object's as it was that many days after its first
    /// detection.
    fn truth_entries(
        &self,
        truth: &BTreeMap<&str, String>,
        at_age: Option<f64>,
    ) -> Result<Vec<(Entry, String)>> {
        let ids: Vec<&str> = truth.keys().copied().collect();
        let entry = |object_id: String, seq: u32, v: VectorVersion| Entry {
            object_id,
            seq,
            point: v.point,
            facts: Facts::from(&v),
            raw: v.raw,
        };
        let mut out = Vec::new();
        match at_age {
            Some(days) => {
                let records: Vec<ObjectRecord> = self
                    .store
                    .get_objects(&ids)?
                    .into_iter()
                    .flatten()
                    .collect();
                for (id, v) in self.at_age_of(&records, days) {
                    let class = truth.get(id.as_str()).cloned().unwrap_or_default();
                    out.push((entry(id, 0, v), class));
                }
            }
            None => {
                for (id, class) in truth {
                    if let Some((seq, v)) = self.store.vector_versions(id)?.into_iter().last() {
                        out.push((entry(id.to_string(), seq, v), class.clone()));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.0.object_id.cmp(&b.0.object_id));
        Ok(out)
    }

    /// Stratified k-fold neighbour-vote classification of the objects in `truth` with a metric
    /// learned on the training folds only: each object is classified by the votes of its
    /// [`VOTERS`] nearest training objects (exact distances in the fold's metric).
    pub(super) fn evaluate_learned(
        &self,
        truth: &BTreeMap<&str, String>,
        folds: usize,
        at_age: Option<f64>,
    ) -> Result<EvaluationReport> {
        if folds < 2 {
            return Err(invalid("folds", "at least 2 folds"));
        }
        let base = read(&self.live).spec.unlearned();
        let entries = self.truth_entries(truth, at_age)?;
        let labelled: Vec<(&Entry, &String)> = entries.iter().map(|(e, c)| (e, c)).collect();
        let (rows, classes, names) = numbered_rows(&base, &labelled);
        let fold_of = stratified_folds(&classes, folds);
        let mut predicted = vec![String::new(); rows.len()];
        for f in 0..folds {
            let train: Vec<usize> = (0..rows.len()).filter(|&i| fold_of[i] != f).collect();
            let train_rows: Vec<&[f32]> = train.iter().map(|&i| rows[i].as_slice()).collect();
            let train_classes: Vec<usize> = train.iter().map(|&i| classes[i]).collect();
            let weights = relevance_weights(&train_rows, &train_classes, &base.weights)
                .unwrap_or_else(|| base.weights.clone());
            let points = numbered(rows.iter().map(|r| weigh(r, &weights)).collect());
            let in_training = |p: PointId| fold_of[p as usize] != f;
            let test: Vec<usize> = (0..rows.len()).filter(|&i| fold_of[i] == f).collect();
            let answers: Vec<(usize, String)> = test
                .par_iter()
                .map(|&i| {
                    let c = nearest_vote(&points, &points[i].1, &in_training, &classes, &names);
                    (i, c)
                })
                .collect();
            for (i, c) in answers {
                predicted[i] = c;
            }
        }
        let actual: Vec<String> = classes.iter().map(|&c| names[c].clone()).collect();
        let age = at_age.map_or_else(String::new, |d| format!(", every object at age {d} d"));
        Ok(EvaluationReport {
            missing: truth.len() - rows.len(),
            evaluation: science::evaluate(&actual, &predicted),
            method: format!(
                "stratified {folds}-fold; metric ({LEARNED_METHOD}) fitted on the training \
                 folds{age}"
            ),
        })
    }

    /// Leave-one-out neighbour-vote classification of the objects in `truth`, every object
    /// as it was `days` after its own first detection, by exact distances in the store's
    /// (group-weighted) metric among the other objects of `truth`.
    pub(super) fn evaluate_at_age(
        &self,
        truth: &BTreeMap<&str, String>,
        days: f64,
    ) -> Result<EvaluationReport> {
        let spec = read(&self.live).spec.clone();
        let entries = self.truth_entries(truth, Some(days))?;
        let labelled: Vec<(&Entry, &String)> = entries.iter().map(|(e, c)| (e, c)).collect();
        let (rows, classes, names) = numbered_rows(&spec, &labelled);
        let points = numbered(rows.iter().map(|r| weigh(r, &spec.weights)).collect());
        let predicted: Vec<String> = (0..rows.len())
            .into_par_iter()
            .map(|i| {
                let others = |p: PointId| p as usize != i;
                nearest_vote(&points, &points[i].1, &others, &classes, &names)
            })
            .collect();
        let actual: Vec<String> = classes.iter().map(|&c| names[c].clone()).collect();
        Ok(EvaluationReport {
            missing: truth.len() - rows.len(),
            evaluation: science::evaluate(&actual, &predicted),
            method: format!("leave-one-out, exact, every object at age {days} d"),
        })
    }

    /// [`Engine::classify`] of an object as it was `days` after its first detection, by the
    /// votes of the labelled objects nearest to it at the same age (exact; every object is
    /// embedded at that age, so a call costs one feature evaluation per object).
    pub fn classify_at_age(&self, object_id: &str, days: f64) -> Result<Classification> {
        if !(days.is_finite() && days >= 0.0) {
            return Err(invalid("at_age", "must be a number of days >= 0"));
        }
        let record = self.object(object_id)?;
        let spec = read(&self.live).spec.clone();
        let at = self.versions_at_age(days)?;
        let query = at.get(object_id).ok_or_else(|| EngineError::NoEmbedding {
            object_id: object_id.to_string(),
            as_of: None,
        })?;
        let q = spec.scale(&query.raw).0;
        let ids: Vec<&str> = at.keys().map(String::as_str).collect();
        let labels = self.primary_labels(&ids)?;
        let mut near: Vec<Voter> = at
            .iter()
            .zip(labels)
            .filter(|((id, _), _)| id.as_str() != object_id)
            .filter_map(|((id, v), l)| {
                let l = l?;
                Some(Voter {
                    object_id: id.clone(),
                    class: l.class,
                    source: l.source,
                    distance: l2(&q, &spec.scale(&v.raw).0),
                })
            })
            .collect();
        near.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then(a.object_id.cmp(&b.object_id))
        });
        near.truncate(VOTERS);
        let votes: Vec<(String, f32)> =
            near.iter().map(|v| (v.class.clone(), v.distance)).collect();
        let probabilities = science::vote(&votes);
        let best = science::best_class(&probabilities);
        let imported = self
            .store
            .labels_of(&[object_id])?
            .pop()
            .unwrap_or_default();
        Ok(Classification {
            object_id: object_id.to_string(),
            class: best.as_ref().map(|b| b.0.clone()),
            confidence: best.map_or(0.0, |b| b.1),
            probabilities,
            method: if near.is_empty() {
                "none"
            } else {
                "vote at age"
            },
            voters: near,
            // The packet scores are the latest alert's: not known at that age.
            packet_snia_score: None,
            labels: taxonomy::labels_of(&record, &imported),
        })
    }
}

/// `row` times `weights`, coordinate by coordinate.
fn weigh(row: &[f32], weights: &[f64]) -> Vec<f32> {
    row.iter()
        .zip(weights)
        .map(|(x, w)| x * *w as f32)
        .collect()
}

/// The class the [`VOTERS`] points nearest to `q` among those `voters` accepts vote for
/// (`points` numbered by row; `classes[row]` numbers the class in `names`).
fn nearest_vote(
    points: &[(PointId, Vec<f32>)],
    q: &[f32],
    voters: &(dyn Fn(PointId) -> bool + Sync),
    classes: &[usize],
    names: &[String],
) -> String {
    let votes: Vec<(String, f32)> = exact_knn(points, q, VOTERS, voters)
        .iter()
        .map(|h| (names[classes[h.point as usize]].clone(), h.distance))
        .collect();
    science::best_class(&science::vote(&votes)).map_or_else(|| "none".to_string(), |(c, _)| c)
}

/// The unlearned (scaler only, unweighted) vectors of labelled entries, their classes
/// numbered in name order, and the class names.
fn numbered_rows(
    base: &EmbeddingSpec,
    labelled: &[(&Entry, &String)],
) -> (Vec<Vec<f32>>, Vec<usize>, Vec<String>) {
    let mut names: Vec<String> = labelled.iter().map(|(_, c)| (*c).clone()).collect();
    names.sort();
    names.dedup();
    let rows = labelled
        .iter()
        .map(|(e, _)| {
            let raw: Vec<f64> = e.raw.iter().map(|&x| f64::from(x)).collect();
            base.scaler.transform(&raw).0
        })
        .collect();
    let classes = labelled
        .iter()
        .map(|(_, c)| names.binary_search(c).unwrap_or(0))
        .collect();
    (rows, classes, names)
}

/// The `n` features of largest weight, largest first.
fn top_features(spec: &EmbeddingSpec, n: usize) -> Vec<(String, f64)> {
    let mut w: Vec<(String, f64)> = spec
        .feature_names
        .iter()
        .cloned()
        .zip(spec.weights.iter().copied())
        .collect();
    w.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    w.truncate(n);
    w
}
