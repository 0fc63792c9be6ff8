//! Labels and classification: importing labels, an object's labels through the taxonomy,
//! the neighbour vote (with label spreading when no neighbour is labelled) and its
//! leave-one-out evaluation. The formulas are in `src/science/`. Imports `science`, `model`.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::Serialize;

use super::{lock, read, ChangeEvent, Engine, EngineError, Result};
use crate::embed::FeatureGroup;
use crate::graph::GRAPH_K;
use crate::model::{Label, ObjectRecord};
use crate::science::taxonomy::{self, primary};
use crate::science::{self, snia_score, Evaluation};

impl Engine {
    /// The most trusted label of each object (imported or from its annotations), from the
    /// two label columns: a few bytes per object, not its record.
    pub(super) fn primary_labels(&self, ids: &[&str]) -> Result<Vec<Option<Label>>> {
        let (imported, own) = self.store.both_labels_of(ids)?;
        Ok(imported
            .iter()
            .zip(own)
            .map(|(imp, own)| primary(&taxonomy::merge(imp, own)).cloned())
            .collect())
    }

    /// Fills the `record_labels` column of a store written before it existed: one pass over
    /// the records, at open. Idempotent; a store created with the column skips it.
    pub(super) fn fill_record_labels(store: &crate::store::Store) -> Result<()> {
        if store.record_labels_complete()? {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut batch = crate::store::Batch::default();
        let mut objects = 0usize;
        let mut failed = None;
        store.for_each_object(|record| {
            objects += 1;
            let labels = taxonomy::record_labels(&record);
            if !labels.is_empty() {
                batch.record_labels.push((record.object_id, labels));
            }
            if batch.record_labels.len() >= 10_000 {
                if let Err(e) = store.write(&std::mem::take(&mut batch)) {
                    failed = Some(e);
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        batch.record_labels_complete = true;
        store.write(&batch)?;
        tracing::info!(
            objects,
            seconds = started.elapsed().as_secs_f64(),
            "record labels column filled"
        );
        Ok(())
    }

    /// [`Self::primary_labels`] for records already read.
    pub(super) fn primary_labels_of<'r>(
        &self,
        ids: &[&str],
        records: impl IntoIterator<Item = Option<&'r ObjectRecord>>,
    ) -> Result<Vec<Option<Label>>> {
        let imported = self.store.labels_of(ids)?;
        Ok(records
            .into_iter()
            .zip(imported)
            .map(|(r, imp)| r.and_then(|r| primary(&taxonomy::labels_of(r, &imp)).cloned()))
            .collect())
    }

    /// Every label of an object, most trusted first.
    pub fn labels(&self, object_id: &str) -> Result<Vec<Label>> {
        self.labels_of_record(&self.object(object_id)?)
    }

    /// [`Engine::labels`] of a record already read.
    pub fn labels_of_record(&self, record: &ObjectRecord) -> Result<Vec<Label>> {
        let imported = self
            .store
            .labels_of(&[record.object_id.as_str()])?
            .pop()
            .unwrap_or_default();
        Ok(taxonomy::labels_of(record, &imported))
    }

    /// Imports `(object id, class)` rows from a labels file named `source`. Classes are mapped
    /// onto the taxonomy where they name one of its classes or a SIMBAD/TNS type, and kept as
    /// written otherwise. Rows for objects not in the store are counted, not stored.
    pub fn import_labels(&self, rows: &[(String, String)], source: &str) -> Result<LabelImport> {
        let _guard = lock(&self.writer);
        let source = format!("csv:{source}");
        let mut report = LabelImport::default();
        let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
        let known = self.store.get_objects(&ids)?;
        let mut existing = self.store.labels_of(&ids)?;
        let mut out: BTreeMap<String, Vec<Label>> = BTreeMap::new();
        for (((id, raw), known), current) in rows.iter().zip(known).zip(existing.iter_mut()) {
            if known.is_none() {
                report.unknown_objects.push(id.clone());
                continue;
            }
            let class =
                taxonomy::canonical(raw).map_or_else(|| raw.trim().to_string(), String::from);
            let entry = out
                .entry(id.clone())
                .or_insert_with(|| std::mem::take(current));
            entry.retain(|l| l.source != source);
            entry.push(Label {
                class: class.clone(),
                source: source.clone(),
                raw: raw.clone(),
            });
            *report.classes.entry(class).or_default() += 1;
            report.imported += 1;
        }
        let batch: Vec<(String, Vec<Label>)> = out.into_iter().collect();
        self.store.put_labels(&batch)?;
        self.notify(ChangeEvent {
            labelled: batch.iter().map(|(id, _)| id.clone()).collect(),
            ..ChangeEvent::default()
        });
        if report.imported > 0 && read(&self.live).spec.metric.learned.is_some() {
            report.metric = Some(self.learn_metric_locked()?);
        }
        Ok(report)
    }

    /// Class probabilities of an object from the labels of its nearest neighbours (see
    /// [`science`] for the weights, the calibration and the packet-score pooling), or by label
    /// spreading over its neighbourhood in the kNN graph (at most [`SPREAD_NEIGHBOURHOOD`]
    /// objects, reached by following neighbour lists) when no neighbour among the nearest is
    /// labelled. Either way the call reads a bounded number of lists and records, whatever
    /// the size of the store.
    pub fn classify(&self, object_id: &str) -> Result<Classification> {
        self.classify_by(object_id, FeatureGroup::All)
    }

    /// [`Engine::classify`] with the voters found by a similarity preset (`features`, as
    /// `similar` takes it): `flux` votes by the survey-blind group, so that labels of one
    /// survey's objects classify the other's.
    pub fn classify_by(&self, object_id: &str, features: FeatureGroup) -> Result<Classification> {
        self.classify_record_by(&self.object(object_id)?, features)
    }

    /// [`Engine::classify`] of a record already read (an object's page reads it once).
    pub fn classify_record(&self, record: &ObjectRecord) -> Result<Classification> {
        self.classify_record_by(record, FeatureGroup::All)
    }

    fn classify_record_by(
        &self,
        record: &ObjectRecord,
        features: FeatureGroup,
    ) -> Result<Classification> {
        let object_id = record.object_id.as_str();
        self.check_preset(&super::Target::Object(object_id.to_string()), features)?;
        let vector = self.current_vector(object_id)?;
        let curve = (features == FeatureGroup::Curves)
            .then(|| super::similar::curve_of(&record.detections, &record.upper_limits));
        let candidates = self.nearest_by(
            &vector,
            VOTE_CANDIDATES,
            Some(object_id),
            features,
            None,
            curve.as_ref().map(|c| (c, VOTE_CURVE_CANDIDATES)),
        )?;
        let ids: Vec<&str> = candidates.iter().map(|(id, _)| id.as_ref()).collect();
        let labels = self.primary_labels(&ids)?;
        let voters: Vec<Voter> = candidates
            .iter()
            .zip(labels)
            .filter_map(|((id, d), l)| {
                l.map(|l| Voter {
                    object_id: id.to_string(),
                    class: l.class,
                    source: l.source,
                    distance: *d,
                })
            })
            .take(VOTERS)
            .collect();
        let (mut probabilities, method) = if voters.is_empty() {
            let p = self.spread_to(object_id)?;
            let m = if p.is_empty() { "none" } else { "propagation" };
            (p, m)
        } else {
            let v: Vec<(String, f32)> = voters
                .iter()
                .map(|v| (v.class.clone(), v.distance))
                .collect();
            (science::vote(&v), "vote")
        };
        let packet_snia_score = snia_score(record);
        if let Some(s) = packet_snia_score {
            science::pool_snia_score(&mut probabilities, s);
        }
        let best = science::best_class(&probabilities);
        Ok(Classification {
            object_id: object_id.to_string(),
            class: best.as_ref().map(|b| b.0.clone()),
            confidence: best.map_or(0.0, |b| b.1),
            probabilities,
            method,
            voters,
            packet_snia_score,
            labels: taxonomy::labels_of(
                record,
                &self
                    .store
                    .labels_of(&[object_id])?
                    .pop()
                    .unwrap_or_default(),
            ),
        })
    }

    /// Label spreading over `object_id`'s neighbourhood in the stored kNN graph: the objects
    /// reached breadth first over the stored lists, at most [`SPREAD_NEIGHBOURHOOD`] of them,
    /// so a call reads O(k) lists and labels whatever the size of the store. Returns the
    /// scores of `object_id` (none when no other object of the neighbourhood is labelled).
    ///
    /// Once the neighbourhood is full, the lists still to read (those of the objects reached
    /// last: 43% of the walk's at 1M objects) only link objects already in it. So the labels are
    /// read then, and with none among them (an unlabelled region, or an unlabelled store)
    /// there is nothing to spread: those lists are not read, and the answer is the same. In a
    /// store with no label at all ([`crate::store::Store::any_labels`]) nothing is read.
    pub(super) fn spread_to(&self, object_id: &str) -> Result<BTreeMap<String, f64>> {
        if !self.store.any_labels()? {
            // A store where nothing is labelled yet: nothing to spread, no list to read.
            return Ok(BTreeMap::new());
        }
        let mut names: Vec<String> = vec![object_id.to_string()];
        let mut index: HashMap<String, usize> = HashMap::from([(object_id.to_string(), 0)]);
        let mut edges = Vec::new();
        let mut frontier = vec![0usize];
        let mut labels = None;
        while !frontier.is_empty() {
            if labels.is_none() && names.len() >= SPREAD_NEIGHBOURHOOD {
                let ids: Vec<&str> = names.iter().map(String::as_str).collect();
                let read = self.primary_labels(&ids)?;
                if read.iter().skip(1).all(Option::is_none) {
                    return Ok(BTreeMap::new());
                }
                labels = Some(read);
            }
            let keys: Vec<&str> = frontier.iter().map(|&i| names[i].as_str()).collect();
            let read = self.store.stored_lists(&keys)?;
            let mut next = Vec::new();
            for (&i, list) in frontier.iter().zip(&read) {
                let Some(list) = list else { continue };
                for n in list.neighbours()?.into_iter().take(GRAPH_K) {
                    let j = match index.get(n.object_id) {
                        Some(&j) => j,
                        None if names.len() < SPREAD_NEIGHBOURHOOD => {
                            let j = names.len();
                            index.insert(n.object_id.to_string(), j);
                            names.push(n.object_id.to_string());
                            next.push(j);
                            j
                        }
                        None => continue,
                    };
                    edges.push((i, j, n.distance));
                }
            }
            frontier = next;
        }
        let me = 0;
        let ids: Vec<&str> = names.iter().map(String::as_str).collect();
        let labels = match labels {
            Some(l) => l,
            None => self.primary_labels(&ids)?,
        };
        let mut classes: Vec<String> = labels.iter().flatten().map(|l| l.class.clone()).collect();
        classes.sort();
        classes.dedup();
        let seeds: Vec<(usize, usize)> = labels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let l = l.as_ref()?;
                Some((i, classes.binary_search(&l.class).ok()?))
            })
            .filter(|(i, _)| *i != me)
            .collect();
        let f = science::spread_labels(ids.len(), &edges, &seeds, classes.len());
        Ok(classes
            .into_iter()
            .zip(f[me].iter().copied())
            .filter(|(_, p)| *p > 0.0)
            .collect())
    }

    /// Neighbour-vote classification of the objects in `truth` (id -> class), each with its
    /// own label hidden. Objects absent from the store are counted in `missing`.
    ///
    /// With the store's metric fixed (group weights), leave-one-out: each object is classified
    /// by the votes of its nearest neighbours in the index that `truth` labels. When the store
    /// has a learned metric, or `learned` asks what one would give, stratified `folds`-fold:
    /// the metric is fitted on the training folds only (never on the object it scores) and
    /// each object is classified by its nearest training objects.
    ///
    /// With `at_age`, every object (scored and voting) is compared as it was that many days
    /// after its own first detection (exact distances; leave-one-out, or k-fold as above).
    pub fn evaluate(
        &self,
        truth: &BTreeMap<String, String>,
        options: &EvaluateOptions,
    ) -> Result<EvaluationReport> {
        if self.spec_outdated {
            return Err(EngineError::SpecOutdated);
        }
        let truth: BTreeMap<&str, String> = truth
            .iter()
            .map(|(id, c)| {
                let c = taxonomy::canonical(c).map_or_else(|| c.trim().to_string(), String::from);
                (id.as_str(), c)
            })
            .collect();
        if let Some(days) = options.at_age {
            if !(days.is_finite() && days >= 0.0) {
                return Err(super::similar::invalid(
                    "at_age",
                    "must be a number of days >= 0",
                ));
            }
        }
        if options.learned || read(&self.live).spec.metric.learned.is_some() {
            return self.evaluate_learned(&truth, options.folds, options.at_age);
        }
        if let Some(days) = options.at_age {
            return self.evaluate_at_age(&truth, days);
        }
        let live = read(&self.live);
        let present: Vec<(&str, &String)> = truth
            .iter()
            .filter(|(id, _)| live.current(id).is_some())
            .map(|(id, c)| (*id, c))
            .collect();
        let predicted: Vec<String> = present
            .par_iter()
            .map(|(id, _)| {
                let Some(c) = live.current(id) else {
                    return "none".to_string();
                };
                let voters: Vec<(String, f32)> = live
                    .search(&c.vector, VOTE_CANDIDATES, Some(id))
                    .into_iter()
                    .filter_map(|(n, d)| truth.get(n.as_ref()).map(|c| (c.clone(), d)))
                    .take(VOTERS)
                    .collect();
                science::best_class(&science::vote(&voters))
                    .map_or_else(|| "none".to_string(), |(c, _)| c)
            })
            .collect();
        let actual: Vec<String> = present.iter().map(|(_, c)| (*c).clone()).collect();
        Ok(EvaluationReport {
            missing: truth.len() - present.len(),
            evaluation: science::evaluate(&actual, &predicted),
            method: "leave-one-out over the index".to_string(),
        })
    }
}

/// How [`Engine::evaluate`] holds objects out.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateOptions {
    /// Evaluate a metric learned on the training folds even when the store has none.
    pub learned: bool,
    /// Folds of the k-fold evaluation of a learned metric.
    pub folds: usize,
    /// Compare every object as it was this many days after its first detection.
    pub at_age: Option<f64>,
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        EvaluateOptions {
            learned: false,
            folds: super::metric::DEFAULT_FOLDS,
            at_age: None,
        }
    }
}

/// Nearest candidates searched for labelled voters.
pub const VOTE_CANDIDATES: usize = 30;
/// Objects label spreading reaches around the object it classifies (see
/// [`Engine::classify`]).
pub const SPREAD_NEIGHBOURHOOD: usize = 256;
/// Labelled voters used.
pub const VOTERS: usize = 10;
/// Candidates the flux scan gives a vote by the curves preset before their lightcurves are
/// compared: fewer than a similarity search's (`similar::CURVE_CANDIDATES`), whose twins need
/// the wider pool. Measured on generated twins (SCIENCE.md): 300 cost the vote across surveys
/// 0.93-0.96 -> 0.80-0.85 (macro-F1, five stores), while finding the same object needs them.
pub const VOTE_CURVE_CANDIDATES: usize = 100;
/// A labelled neighbour that voted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Voter {
    pub object_id: String,
    pub class: String,
    pub source: String,
    pub distance: f32,
}
/// The answer of [`Engine::classify`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Classification {
    pub object_id: String,
    pub class: Option<String>,
    pub confidence: f64,
    pub probabilities: BTreeMap<String, f64>,
    /// `vote`, `propagation` or `none`.
    pub method: &'static str,
    pub voters: Vec<Voter>,
    pub packet_snia_score: Option<f64>,
    /// The object's own labels, if it has any.
    pub labels: Vec<Label>,
}
/// What a label import did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LabelImport {
    pub imported: usize,
    pub classes: BTreeMap<String, usize>,
    pub unknown_objects: Vec<String>,
    /// The learned metric refitted on the new labels, when the store has one.
    pub metric: Option<super::metric::MetricReport>,
}
/// [`Engine::evaluate`]'s figures and the labelled objects not in the store.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvaluationReport {
    #[serde(flatten)]
    pub evaluation: Evaluation,
    pub missing: usize,
    /// How objects were held out: leave-one-out over the index, or k-fold with a learned
    /// metric fitted on the training folds.
    pub method: String,
}
