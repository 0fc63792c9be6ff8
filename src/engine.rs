//! The engine: owns the store and exposes ingest and query operations.
//!
//! Operations take decoded [`Alert`]s, not files or sockets, so the CLI, the gRPC server and a
//! future Kafka consumer all ingest through [`Engine::ingest`]. Writes are serialised by one lock;
//! each batch of alerts becomes one atomic store write. Imports `model`, `alert`, `store`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use crate::alert::Decoded;
use crate::model::{Alert, ObjectRecord, Survey};
use crate::store::{Batch, Counts, Store, StoreConfig, StoreError};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown object `{object_id}`")]
    UnknownObject { object_id: String },
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub store: StoreConfig,
    /// Alerts per atomic write.
    pub batch_size: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: StoreConfig::default(),
            batch_size: 1000,
        }
    }
}

impl EngineConfig {
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(EngineError::InvalidConfig {
                field: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// A rejected packet, row or file, as reported to the user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectReport {
    pub source: String,
    pub reason: String,
}

/// The outcome of an ingest call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestReport {
    /// Alerts (packets, or objects of a lightcurve table) decoded.
    pub alerts_read: u64,
    /// Packets, rows and files that could not be decoded.
    pub alerts_rejected: u64,
    /// Alerts already in the store (the same packet ingested before).
    pub alerts_duplicate: u64,
    pub objects_new: u64,
    pub objects_updated: u64,
    pub detections_added: u64,
    pub rejects: Vec<RejectReport>,
    /// Objects created or changed, in id order.
    #[serde(skip)]
    pub changed_objects: Vec<String>,
}

pub struct Engine {
    store: Store,
    writer: Mutex<()>,
    config: EngineConfig,
}

impl Engine {
    pub fn open(path: &Path, config: EngineConfig) -> Result<Engine> {
        config.validate()?;
        let store = Store::open(path, config.store.clone())?;
        Ok(Engine {
            store,
            writer: Mutex::new(()),
            config,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Ingests decoded input: stores the alerts in batches of `batch_size`, each one atomic,
    /// and reports the rejects.
    pub fn ingest(&self, decoded: Decoded) -> Result<IngestReport> {
        let mut session = self.session();
        session.add(decoded)?;
        Ok(session.finish())
    }

    /// Starts an ingest that spans several inputs (files, stream messages), so that an object
    /// created by one input and updated by a later one counts once, as new.
    pub fn session(&self) -> IngestSession<'_> {
        IngestSession {
            engine: self,
            report: IngestReport::default(),
            new_objects: HashSet::new(),
            changed: HashSet::new(),
        }
    }

    /// Merges one batch of alerts into the store in one atomic write.
    pub fn apply(&self, alerts: &[Alert]) -> Result<BatchOutcome> {
        // A poisoned lock only means another writer panicked; the store itself is consistent.
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut outcome = BatchOutcome::default();

        let mut ids: Vec<&str> = alerts.iter().map(|a| a.object_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let existing = self.store.get_objects(&ids)?;
        let mut records: HashMap<&str, (ObjectRecord, bool)> = HashMap::new();
        for (id, rec) in ids.iter().zip(existing) {
            if let Some(rec) = rec {
                records.insert(id, (rec, false));
            }
        }

        let alert_keys: Vec<(Survey, i64)> = alerts
            .iter()
            .filter_map(|a| a.alert_id.map(|id| (a.survey, id)))
            .collect();
        let known = self.store.known_alerts(&alert_keys)?;
        let mut known: HashSet<(Survey, i64)> = alert_keys
            .iter()
            .zip(known)
            .filter(|(_, k)| *k)
            .map(|(key, _)| *key)
            .collect();

        let mut counts = self.store.counts()?;
        let mut batch = Batch::default();
        for alert in alerts {
            if let Some(id) = alert.alert_id {
                if known.insert((alert.survey, id)) {
                    batch
                        .alerts
                        .push((alert.survey, id, alert.object_id.clone()));
                    counts.entry(alert.survey).or_default().alerts += 1;
                } else {
                    outcome.alerts_duplicate += 1;
                }
            }
            let (record, changed) = records.entry(alert.object_id.as_str()).or_insert_with(|| {
                outcome.new_objects.push(alert.object_id.clone());
                counts.entry(alert.survey).or_default().objects += 1;
                (
                    ObjectRecord::new(alert.object_id.clone(), alert.survey),
                    true,
                )
            });
            let merged = record.merge(alert);
            if merged.changed() {
                *changed = true;
            }
            outcome.detections_added += merged.detections_added;
            counts.entry(record.survey).or_default().detections += merged.detections_added;
        }
        for (id, (record, changed)) in records {
            if changed {
                outcome.changed_objects.push(id.to_string());
                batch.objects.push(record);
            }
        }
        // Only surveys this batch touched are rewritten.
        let touched: HashSet<Survey> = alerts.iter().map(|a| a.survey).collect();
        batch.counts = counts
            .into_iter()
            .filter(|(s, _)| touched.contains(s))
            .collect();
        batch.objects.sort_by(|a, b| a.object_id.cmp(&b.object_id));
        self.store.write(&batch)?;
        tracing::debug!(
            alerts = alerts.len(),
            objects = batch.objects.len(),
            "committed batch"
        );
        Ok(outcome)
    }

    /// An object's record.
    pub fn object(&self, object_id: &str) -> Result<ObjectRecord> {
        self.store
            .get_object(object_id)?
            .ok_or_else(|| EngineError::UnknownObject {
                object_id: object_id.to_string(),
            })
    }

    /// Per-survey totals.
    pub fn stats(&self) -> Result<BTreeMap<Survey, Counts>> {
        Ok(self.store.counts()?)
    }
}

/// What one atomic batch did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub new_objects: Vec<String>,
    pub changed_objects: Vec<String>,
    pub alerts_duplicate: u64,
    pub detections_added: u64,
}

/// An ingest in progress; see [`Engine::session`].
pub struct IngestSession<'a> {
    engine: &'a Engine,
    report: IngestReport,
    new_objects: HashSet<String>,
    changed: HashSet<String>,
}

impl IngestSession<'_> {
    /// Stores one input's alerts and records its rejects.
    pub fn add(&mut self, decoded: Decoded) -> Result<()> {
        self.report.alerts_rejected += decoded.rejects.len() as u64;
        self.report
            .rejects
            .extend(decoded.rejects.into_iter().map(|r| RejectReport {
                source: r.source,
                reason: r.error.to_string(),
            }));
        for chunk in decoded.alerts.chunks(self.engine.config.batch_size) {
            let outcome = self.engine.apply(chunk)?;
            self.report.alerts_read += chunk.len() as u64;
            self.report.alerts_duplicate += outcome.alerts_duplicate;
            self.report.detections_added += outcome.detections_added;
            self.new_objects.extend(outcome.new_objects);
            self.changed.extend(outcome.changed_objects);
        }
        Ok(())
    }

    pub fn report(&self) -> &IngestReport {
        &self.report
    }

    pub fn finish(mut self) -> IngestReport {
        self.report.objects_new = self.new_objects.len() as u64;
        self.report.objects_updated = self.changed.difference(&self.new_objects).count() as u64;
        let mut changed: Vec<String> = self.changed.into_iter().collect();
        changed.sort();
        self.report.changed_objects = changed;
        self.report
    }
}
