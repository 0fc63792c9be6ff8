//! Ingest: decoded alerts merged into their objects, re-embedded, indexed and linked into
//! the kNN graph, one atomic store write per batch ([`Engine::apply`]); sessions that span
//! several inputs and the reports they give. Imports `alert`, `model`, `store`, `index`,
//! `graph` and the engine's refit and maintenance files.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use super::{lock, read, write, ChangeEvent, Engine, EngineError, Result};
use crate::alert::Decoded;
use crate::graph::{lists, Lists, Replaced};
use crate::index::live::{Entry, Facts};
use crate::model::{Alert, Neighbour, ObjectRecord, Survey, VectorVersion};
use crate::science::taxonomy;
use crate::store::{Batch, NewAlert, NewVersion, PartitionOffset, Quarantined};

impl Engine {
    /// Ingests decoded input: stores the alerts in batches of `batch_size`, each one atomic,
    /// and reports the rejects.
    pub fn ingest(&self, decoded: Decoded) -> Result<IngestReport> {
        let mut session = self.session();
        session.add(decoded)?;
        session.finish()
    }

    /// Starts an ingest that spans several inputs (files, stream messages), so that an object
    /// created by one input and updated by a later one counts once, as new.
    pub fn session(&self) -> IngestSession<'_> {
        IngestSession {
            engine: self,
            tally: IngestTally::default(),
            pending: Vec::new(),
        }
    }

    /// Stores `alerts` in atomic batches of the configured size ([`Engine::apply`]), counting
    /// each committed batch into `tally`; stops at the first batch that fails.
    pub fn apply_all(&self, alerts: &[Alert], tally: &mut IngestTally) -> Result<()> {
        for chunk in alerts.chunks(self.config.batch_size) {
            let outcome = self.apply(chunk)?;
            tally.add_batch(chunk.len(), outcome);
        }
        Ok(())
    }

    /// Merges one batch of alerts into the store in one atomic write.
    pub fn apply(&self, alerts: &[Alert]) -> Result<BatchOutcome> {
        self.apply_marked(alerts, StreamMarks::default())
    }

    /// [`Engine::apply`], with the Kafka offsets the alerts were read up to and the messages
    /// that could not be decoded written in the same atomic batch.
    ///
    /// With [`EngineConfig::relink_delay`](super::EngineConfig::relink_delay) on a large
    /// enough store, the batch marks the objects it re-embedded instead of relinking them, and
    /// relinks those that have waited that many batches (an object re-embedded by several
    /// batches meanwhile once); [`Engine::relink_unlinked`] writes what is left.
    pub fn apply_marked(&self, alerts: &[Alert], marks: StreamMarks) -> Result<BatchOutcome> {
        // A poisoned lock only means another writer panicked; the store itself is consistent.
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.seeding.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(EngineError::SeedUnfinished);
        }
        self.install_refit(false)?;
        let mut outcome = BatchOutcome::default();
        let mut clock = Instant::now();
        let Merged {
            records: changed_records,
            mut batch,
            total_objects,
        } = self.merge(alerts, &mut outcome)?;
        outcome.times.merge = lap(&mut clock);
        if self.spec_outdated && !changed_records.is_empty() {
            return Err(EngineError::SpecOutdated);
        }
        let replaced = self.embed_and_link(
            &changed_records,
            total_objects,
            &mut batch,
            &mut outcome.times,
        )?;
        batch.objects = changed_records;
        batch.offsets = marks.offsets;
        batch.quarantined = marks.quarantined;
        clock = Instant::now();
        self.store.write(&batch)?;
        outcome.times.write = lap(&mut clock);
        self.note_unlinked(&batch);
        self.note_lists(replaced, &batch.neighbours)?;
        outcome.times.note = lap(&mut clock);
        if self.refit_due(total_objects) == Some(true) && lock(&self.refit).is_none() {
            self.start_refit()?;
        }
        self.notify(ChangeEvent {
            changed_objects: outcome.changed_objects.clone(),
            relisted: batch.neighbours.iter().map(|(id, _)| id.clone()).collect(),
            ..ChangeEvent::default()
        });
        tracing::debug!(
            alerts = alerts.len(),
            objects = batch.objects.len(),
            "committed batch"
        );
        self.maybe_rebuild_in_background();
        Ok(outcome)
    }

    /// What a batch that re-embedded `ids` relinks, and which objects it leaves waiting. Every
    /// batch relinks its own objects and every waiting one unless the relink is deferred
    /// (`relink_delay` is set and the store is past the size from which no refit runs inside a
    /// batch); then it relinks the objects that have waited `relink_delay` batches (and the
    /// oldest beyond [`MAX_WAITING`]), whether or not it re-embedded them again, and leaves
    /// its other objects waiting.
    fn to_relink(&self, ids: &[String], total_objects: u64) -> Relink {
        let mut waiting = lock(&self.unlinked);
        let delay = self.config.relink_delay;
        if delay == 0 || total_objects < self.config.background_refit_from {
            let linked = waiting.ids();
            let mut moved: Vec<String> = ids.iter().chain(&linked).cloned().collect();
            moved.sort_unstable();
            moved.dedup();
            return Relink {
                moved,
                linked,
                unlinked: Vec::new(),
            };
        }
        let fresh = ids.iter().filter(|id| !waiting.contains(id)).count();
        let linked = waiting.due(delay, fresh);
        let due: HashSet<&str> = linked.iter().map(String::as_str).collect();
        let unlinked = ids
            .iter()
            .filter(|id| !due.contains(id.as_str()))
            .cloned()
            .collect();
        Relink {
            moved: linked.clone(),
            linked,
            unlinked,
        }
    }

    /// Writes the lists of every object still waiting for a deferred relink (a stream that
    /// went quiet, the end of an ingest); returns how many objects were relinked.
    pub fn relink_unlinked(&self) -> Result<usize> {
        // Asked at every quiet poll of a stream: nothing waiting costs no wait for the writer.
        if lock(&self.unlinked).since.is_empty() {
            return Ok(0);
        }
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let behind = lock(&self.unlinked).ids();
        if behind.is_empty() {
            return Ok(0);
        }
        let (lists, replaced) = self.relink(&behind)?;
        let batch = Batch {
            neighbours: lists,
            linked: behind.clone(),
            ..Batch::default()
        };
        self.store.write(&batch)?;
        self.note_unlinked(&batch);
        self.note_lists(Some(replaced), &batch.neighbours)?;
        self.notify(ChangeEvent {
            relisted: batch.neighbours.into_iter().map(|(id, _)| id).collect(),
            ..ChangeEvent::default()
        });
        Ok(behind.len())
    }

    /// Objects waiting for a deferred relink, in id order: their stored lists (and those they
    /// should enter or leave) are behind their vectors.
    pub fn unlinked(&self) -> Vec<String> {
        lock(&self.unlinked).ids()
    }

    /// Whether `object_id` waits for a deferred relink.
    pub fn is_unlinked(&self, object_id: &str) -> bool {
        lock(&self.unlinked).contains(object_id)
    }

    /// Writes `batch`, which rewrites every list (a refit, a reindex), with the marks of the
    /// objects waiting for a deferred relink cleared.
    pub(super) fn write_all_lists(&self, batch: &mut Batch) -> Result<()> {
        batch.linked = self.unlinked();
        self.store.write(batch)?;
        self.note_unlinked(batch);
        Ok(())
    }

    /// After `batch` was written: its `linked` objects wait for no relink any more, its
    /// `unlinked` ones now do (those waiting already keep their first batch).
    pub(super) fn note_unlinked(&self, batch: &Batch) {
        lock(&self.unlinked).note(&batch.linked, &batch.unlinked);
    }

    /// Merges `alerts` into their stored objects: the records they changed (in id order, their
    /// record labels in the batch), and a batch holding the alerts not seen before and the new
    /// totals of the surveys they touched. Writes nothing; the caller holds the writer lock.
    pub(super) fn merge(&self, alerts: &[Alert], outcome: &mut BatchOutcome) -> Result<Merged> {
        let mut ids: Vec<&str> = alerts.iter().map(|a| a.object_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let existing = self.store.get_objects(&ids)?;
        let mut records: HashMap<&str, (ObjectRecord, bool)> = HashMap::new();
        // Objects whose stored records carry labels: only their entries of `record_labels` can
        // need deleting (writing a delete for every unlabelled object would fill the column
        // with tombstones that every label lookup then reads through).
        let mut had_labels: HashSet<&str> = HashSet::new();
        for (id, rec) in ids.iter().zip(existing) {
            if let Some(rec) = rec {
                if !taxonomy::record_labels(&rec).is_empty() {
                    had_labels.insert(id);
                }
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
                    batch.alerts.push(NewAlert {
                        survey: alert.survey,
                        alert_id: id,
                        object_id: alert.object_id.clone(),
                    });
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
        let mut changed_records = Vec::new();
        for (_, (record, changed)) in records {
            if changed {
                changed_records.push(record);
            }
        }
        changed_records.sort_by(|a, b| a.object_id.cmp(&b.object_id));
        outcome.changed_objects = changed_records
            .iter()
            .map(|r| r.object_id.clone())
            .collect();
        // Only surveys this batch touched are rewritten.
        let touched: HashSet<Survey> = alerts.iter().map(|a| a.survey).collect();
        let total_objects: u64 = counts.values().map(|c| c.objects).sum();
        batch.counts = counts
            .into_iter()
            .filter(|(s, _)| touched.contains(s))
            .collect();
        batch.record_labels = changed_records
            .iter()
            .map(|r| (r.object_id.clone(), taxonomy::record_labels(r)))
            .filter(|(id, labels)| !labels.is_empty() || had_labels.contains(id.as_str()))
            .collect();
        Ok(Merged {
            records: changed_records,
            batch,
            total_objects,
        })
    }

    /// Embeds the changed objects, updates the live index (refitting the scaler when the store
    /// has doubled) and recomputes the affected neighbour lists (or defers them: see
    /// [`Engine::apply_marked`]), all into `batch`, timing each step into `times`. Returns
    /// the stored lists the new ones replace (`None` after a refit, which rewrites every
    /// list).
    pub(super) fn embed_and_link(
        &self,
        changed: &[ObjectRecord],
        total_objects: u64,
        batch: &mut Batch,
        times: &mut BatchTimes,
    ) -> Result<Option<Replaced>> {
        if changed.is_empty() {
            return Ok(Some(Replaced::new()));
        }
        let mut clock = Instant::now();
        let raws: Vec<Vec<f32>> = changed
            .par_iter()
            .map(|r| self.embedder.raw_features(r, None))
            .collect();
        times.embed = lap(&mut clock);
        let mut next_point = self.store.next_point()?;
        let mut entries: Vec<Entry> = Vec::with_capacity(changed.len());
        {
            let live = read(&self.live);
            for (r, raw) in changed.iter().zip(raws) {
                let seq = live.current(&r.object_id).map_or(0, |c| c.seq + 1);
                let version = VectorVersion {
                    point: next_point,
                    from_mjd: r.meta.last_mjd.unwrap_or(f64::NAN),
                    n_detections: r.detections.len() as u32,
                    raw: raw.clone(),
                };
                let facts = Facts::from(&version);
                batch.vectors.push(NewVersion {
                    object_id: r.object_id.clone(),
                    seq,
                    version,
                });
                entries.push(Entry {
                    object_id: r.object_id.clone(),
                    seq,
                    point: next_point,
                    facts,
                    raw,
                });
                next_point += 1;
            }
        }
        batch.next_point = Some(next_point);

        if self.refit_due(total_objects) == Some(false) {
            self.refit_and_rebuild(entries, batch)?;
            let all: Vec<String> = read(&self.live)
                .objects()
                .map(|(id, _)| id.to_string())
                .collect();
            batch.neighbours = self.lists_for(&all);
            batch.linked = self.unlinked();
            times.refit = lap(&mut clock);
            return Ok(None);
        }
        let ids: Vec<String> = entries.iter().map(|e| e.object_id.clone()).collect();
        if let Some(pending) = lock(&self.refit).as_ref() {
            pending.log(&entries);
        }
        // The HNSW insertion under a read lock: queries go on meanwhile.
        let prepared = read(&self.live).prepare(entries);
        times.insert = lap(&mut clock);
        write(&self.live).commit(prepared);
        times.commit = lap(&mut clock);
        let Relink {
            moved,
            linked,
            unlinked,
        } = self.to_relink(&ids, total_objects);
        (batch.linked, batch.unlinked) = (linked, unlinked);
        if moved.is_empty() {
            return Ok(Some(Replaced::new()));
        }
        let (lists, replaced) = self.relink(&moved)?;
        times.relink = lap(&mut clock);
        batch.neighbours = lists;
        Ok(Some(replaced))
    }

    /// New neighbour lists after the `moved` objects were re-embedded, and the stored lists
    /// they replace; see [`lists::relink`].
    pub(super) fn relink(&self, moved: &[String]) -> Result<(Lists, Replaced)> {
        let reverse = self.listed_by.get(&self.store)?;
        let relinked = lists::relink(&read(&self.live), &reverse, moved, |keys| {
            Ok(self.store.multi_neighbours(keys)?)
        })?;
        Ok(relinked)
    }

    /// Fresh neighbour lists for `ids`, by index search.
    pub(super) fn lists_for(&self, ids: &[String]) -> Lists {
        lists::search(&read(&self.live), ids)
    }

    /// Updates the reverse graph after `lists` were written over `replaced` (the old lists by
    /// object; `None`: every list was rewritten).
    pub(super) fn note_lists(
        &self,
        replaced: Option<Replaced>,
        lists: &[(String, Vec<Neighbour>)],
    ) -> Result<()> {
        let Some(mut replaced) = replaced else {
            self.listed_by.replace(lists);
            return Ok(());
        };
        // A batch that only marked its objects for a deferred relink changed no list: it
        // need not wait for the graph's load at open (the first --relink-delay batches).
        if lists.is_empty() {
            return Ok(());
        }
        self.listed_by
            .get(&self.store)?
            .update(&mut replaced, lists);
        Ok(())
    }
}

/// What a stream consumer writes with a batch: where each partition it read stands now, and
/// the messages it could not decode.
#[derive(Debug, Default, Clone)]
pub struct StreamMarks {
    pub offsets: Vec<PartitionOffset>,
    pub quarantined: Vec<Quarantined>,
}

/// Objects waiting beyond this many are relinked, oldest first, whatever their wait: the
/// backlog of a deferred relink stays bounded.
pub const MAX_WAITING: usize = 20_000;

/// What one batch relinks ([`Engine::to_relink`]).
struct Relink {
    /// Objects whose lists are relinked.
    moved: Vec<String>,
    /// Waiting objects among them: their marks are cleared.
    linked: Vec<String>,
    /// Objects the batch leaves waiting: marked.
    unlinked: Vec<String>,
}

/// The objects waiting for a deferred relink ([`EngineConfig::relink_delay`](
/// super::EngineConfig::relink_delay)), each with the batch that first left it waiting.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    /// Batches that re-embedded objects since the engine opened.
    batches: u64,
    since: std::collections::BTreeMap<String, u64>,
}

impl Waiting {
    /// The objects the store marks, as left waiting by the first batch.
    pub(super) fn load(ids: Vec<String>) -> Waiting {
        Waiting {
            batches: 0,
            since: ids.into_iter().map(|id| (id, 0)).collect(),
        }
    }

    pub(super) fn ids(&self) -> Vec<String> {
        self.since.keys().cloned().collect()
    }

    fn contains(&self, id: &str) -> bool {
        self.since.contains_key(id)
    }

    /// Counts a batch that brings `fresh` objects not waiting yet, and returns the waiting
    /// objects it relinks: those left waiting `delay` batches ago or earlier, and the oldest
    /// beyond [`MAX_WAITING`] once the fresh ones wait too, in id order.
    fn due(&mut self, delay: u64, fresh: usize) -> Vec<String> {
        self.batches += 1;
        let now = self.batches;
        let (mut due, mut rest): (Vec<_>, Vec<_>) = self
            .since
            .iter()
            .map(|(id, &since)| (id, since))
            .partition(|&(_, since)| now - since >= delay);
        let over = (rest.len() + fresh).saturating_sub(MAX_WAITING);
        if over > 0 {
            rest.sort_by_key(|&(_, since)| since);
            due.extend(rest.into_iter().take(over));
        }
        let mut ids: Vec<String> = due.into_iter().map(|(id, _)| id.clone()).collect();
        ids.sort_unstable();
        ids
    }

    /// After a write: `linked` wait no more, `unlinked` wait from this batch on (those
    /// waiting already keep their first batch).
    fn note(&mut self, linked: &[String], unlinked: &[String]) {
        for id in linked {
            self.since.remove(id);
        }
        for id in unlinked {
            self.since.entry(id.clone()).or_insert(self.batches);
        }
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
/// Alerts merged into their objects, not yet written; see [`Engine::merge`].
pub(super) struct Merged {
    pub records: Vec<ObjectRecord>,
    pub batch: Batch,
    /// Objects in the store once the batch is written.
    pub total_objects: u64,
}

/// What one atomic batch did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub new_objects: Vec<String>,
    pub changed_objects: Vec<String>,
    pub alerts_duplicate: u64,
    pub detections_added: u64,
    /// Where the batch's time went.
    pub times: BatchTimes,
}

/// Wall time of each step of one batch ([`Engine::apply`]), for an operator or a benchmark to
/// see where ingest time goes. Steps a batch did not take stay zero.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct BatchTimes {
    /// Reading the stored objects and merging the alerts into them.
    pub merge: Duration,
    /// Light-curve features of the changed objects (parallel).
    pub embed: Duration,
    /// Inserting the new vectors into the graph (under the read lock).
    pub insert: Duration,
    /// Making them current (under the write lock).
    pub commit: Duration,
    /// The moved objects' own lists and the stored lists they enter or leave.
    pub relink: Duration,
    /// A scaler refit with the rebuild of the index and of every list, when one was due.
    pub refit: Duration,
    /// The atomic store write (fsync).
    pub write: Duration,
    /// The in-memory reverse graph.
    pub note: Duration,
}

impl BatchTimes {
    /// The steps by name, in order.
    pub fn steps(&self) -> [(&'static str, Duration); 8] {
        [
            ("merge", self.merge),
            ("embed", self.embed),
            ("insert", self.insert),
            ("commit", self.commit),
            ("relink", self.relink),
            ("refit", self.refit),
            ("write", self.write),
            ("note", self.note),
        ]
    }
}

/// The time since `clock`, which is reset to now.
fn lap(clock: &mut Instant) -> Duration {
    let now = Instant::now();
    let d = now - *clock;
    *clock = now;
    d
}
/// Rejects listed in one report (all are counted): a long-running stream must not grow it
/// without bound.
pub const MAX_LISTED_REJECTS: usize = 10_000;

/// Totals of an ingest that spans several inputs and batches: an object created by one batch
/// and updated by a later one counts once, as new.
#[derive(Debug, Default)]
pub struct IngestTally {
    report: IngestReport,
    new_objects: HashSet<String>,
    changed: HashSet<String>,
}
impl IngestTally {
    /// Adds the totals of another tally of the same store (another consumer thread): an object
    /// new in either counts once, as new.
    pub fn merge(&mut self, other: IngestTally) {
        let (a, b) = (&mut self.report, other.report);
        a.alerts_read += b.alerts_read;
        a.alerts_rejected += b.alerts_rejected;
        a.alerts_duplicate += b.alerts_duplicate;
        a.detections_added += b.detections_added;
        let room = MAX_LISTED_REJECTS.saturating_sub(a.rejects.len());
        a.rejects.extend(b.rejects.into_iter().take(room));
        self.new_objects.extend(other.new_objects);
        self.changed.extend(other.changed);
    }

    /// Counts rejects; the first [`MAX_LISTED_REJECTS`] are listed in the report.
    pub fn add_rejects(&mut self, rejects: Vec<crate::alert::Reject>) {
        self.report.alerts_rejected += rejects.len() as u64;
        let room = MAX_LISTED_REJECTS.saturating_sub(self.report.rejects.len());
        self.report
            .rejects
            .extend(rejects.into_iter().take(room).map(|r| RejectReport {
                source: r.source,
                reason: r.error.to_string(),
            }));
    }

    /// Counts a committed batch of `alerts` alerts.
    pub fn add_batch(&mut self, alerts: usize, outcome: BatchOutcome) {
        self.report.alerts_read += alerts as u64;
        self.report.alerts_duplicate += outcome.alerts_duplicate;
        self.report.detections_added += outcome.detections_added;
        self.new_objects.extend(outcome.new_objects);
        self.changed.extend(outcome.changed_objects);
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
/// An ingest in progress; see [`Engine::session`].
pub struct IngestSession<'a> {
    engine: &'a Engine,
    tally: IngestTally,
    /// Alerts of the inputs so far that do not fill a batch yet.
    pending: Vec<Alert>,
}
impl IngestSession<'_> {
    /// Takes one input's alerts and records its rejects. The alerts are stored in full
    /// batches of `batch_size`, whatever the inputs' sizes (a directory of one-packet files, an
    /// archive read in pieces): what does not fill a batch waits for the next input or
    /// [`IngestSession::finish`].
    pub fn add(&mut self, decoded: Decoded) -> Result<()> {
        self.tally.add_rejects(decoded.rejects);
        let batch = self.engine.config.batch_size.max(1);
        self.pending.extend(decoded.alerts);
        let full = self.pending.len() / batch * batch;
        if full == 0 {
            return Ok(());
        }
        let rest = self.pending.split_off(full);
        let ready = std::mem::replace(&mut self.pending, rest);
        self.engine.apply_all(&ready, &mut self.tally)
    }

    /// The counts so far (alerts that wait for a full batch are not counted yet).
    pub fn report(&self) -> &IngestReport {
        self.tally.report()
    }

    /// Stores the alerts that wait for a full batch, then reports.
    pub fn finish(mut self) -> Result<IngestReport> {
        let rest = std::mem::take(&mut self.pending);
        self.engine.apply_all(&rest, &mut self.tally)?;
        Ok(self.tally.finish())
    }
}
