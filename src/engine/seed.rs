//! Bulk seeding: a store with no embedding yet filled from an archive (one packet or
//! lightcurve per object, or a whole stream) in two passes instead of one HNSW insertion and
//! one relink per alert. Pass one merges the alerts into their objects and stores them in
//! atomic batches, embedding nothing; pass two ([`Seed::finish`]) embeds every object once, in
//! parallel, fits the scaler on all of them, builds the index in one parallel pass, computes
//! every neighbour list by parallel search, and writes the index dump.
//!
//! A mark in the store (`meta` key `seeding`) is set by the first batch and cleared with the
//! scaler by the last write of pass two: a seed killed part way leaves it, and the store then
//! refuses other writes ([`EngineError::SeedUnfinished`]) until a seed is run again (its
//! alerts are already stored: the rerun counts them as duplicates and finishes). Memory: the
//! raw features of every object (dim × 4 bytes each) and the index; records and lists are
//! streamed in chunks. Imports `alert`, `model`, `store`, `index`, `graph`.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use super::{lock, raw_matrix, read, write, ChangeEvent, Engine, EngineError, Result};
use crate::alert::Decoded;
use crate::embed::EmbeddingSpec;
use crate::graph::reverse::ReverseGraph;
use crate::index::live::{Entry, Facts, LiveIndex};
use crate::model::{ObjectRecord, VectorVersion};
use crate::store::{Batch, NewVersion};

use super::ingest::{BatchOutcome, IngestReport, IngestTally, Merged};

/// Objects embedded, and neighbour lists written, per chunk of pass two.
const CHUNK: usize = 20_000;

impl Engine {
    /// Starts a bulk seed. Refused on a store holding any embedding (a seed started before and
    /// interrupted is resumed).
    pub fn seed(&self) -> Result<Seed<'_>> {
        let _guard = lock(&self.writer);
        let embedded = read(&self.live).len();
        if self.store.next_point()? > 0 && !self.seeding.load(Ordering::SeqCst) {
            return Err(EngineError::NotEmpty { embedded });
        }
        Ok(Seed {
            engine: self,
            tally: IngestTally::default(),
        })
    }

    /// Pass one for one batch: merges and stores `alerts`, marking the store as seeding.
    fn seed_batch(&self, alerts: &[crate::model::Alert]) -> Result<BatchOutcome> {
        let _guard = lock(&self.writer);
        let mut outcome = BatchOutcome::default();
        let Merged {
            records, mut batch, ..
        } = self.merge(alerts, &mut outcome)?;
        batch.objects = records;
        if !self.seeding.swap(true, Ordering::SeqCst) {
            batch.seeding = Some(true);
        }
        self.store.write(&batch)?;
        Ok(outcome)
    }

    /// Pass two (see the module documentation).
    fn seed_finish(&self) -> Result<SeedReport> {
        let _guard = lock(&self.writer);
        let started = std::time::Instant::now();
        let mut entries: Vec<Entry> = Vec::new();
        self.for_each_object_chunk(CHUNK, |records| self.embed_chunk(records, &mut entries))?;
        let embedded_s = started.elapsed().as_secs_f64();

        let dim = self.embedder.dim();
        let mut spec = EmbeddingSpec::initial(&self.embedder);
        spec.version = read(&self.live).spec.version;
        if !entries.is_empty() {
            spec = spec.refit(&raw_matrix(&entries, dim));
        }
        let objects = entries.len();
        let next_point = objects as u64;
        let ids: Vec<String> = entries.iter().map(|e| e.object_id.clone()).collect();
        self.wait_for_rebuild();
        let index = read(&self.live).config().clone();
        let built = LiveIndex::build(spec.clone(), index, entries)?;
        *write(&self.live) = built;
        let indexed_s = started.elapsed().as_secs_f64() - embedded_s;

        let mut links = 0usize;
        for part in ids.chunks(CHUNK) {
            let batch = Batch {
                neighbours: self.lists_for(part),
                ..Batch::default()
            };
            links += batch.neighbours.iter().map(|(_, l)| l.len()).sum::<usize>();
            self.store.write(&batch)?;
        }
        self.store.write(&Batch {
            spec: Some(spec),
            next_point: Some(next_point),
            seeding: Some(false),
            ..Batch::default()
        })?;
        self.seeding.store(false, Ordering::SeqCst);
        let linked_s = started.elapsed().as_secs_f64() - embedded_s - indexed_s;
        self.listed_by.install(ReverseGraph::from_store(
            &self.store,
            &AtomicBool::new(false),
        )?);
        self.dump_index()?;
        self.notify(ChangeEvent {
            relisted: ids.clone(),
            changed_objects: ids,
            ..ChangeEvent::default()
        });
        let report = SeedReport {
            objects,
            links,
            embed_seconds: embedded_s,
            index_seconds: indexed_s,
            link_seconds: linked_s,
            total_seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(?report, "seeded");
        Ok(report)
    }

    /// Embeds a chunk of records in parallel, writes their first vector versions and keeps
    /// them as index entries (points in object order, from 0).
    fn embed_chunk(&self, records: Vec<ObjectRecord>, entries: &mut Vec<Entry>) -> Result<()> {
        let raws: Vec<Vec<f32>> = records
            .par_iter()
            .map(|r| self.embedder.raw_features(r, None))
            .collect();
        let mut batch = Batch::default();
        for (r, raw) in records.into_iter().zip(raws) {
            let point = entries.len() as u64;
            batch.vectors.push(NewVersion {
                object_id: r.object_id.clone(),
                seq: 0,
                version: VectorVersion {
                    point,
                    from_mjd: r.meta.last_mjd.unwrap_or(f64::NAN),
                    n_detections: r.detections.len() as u32,
                    raw: raw.clone(),
                },
            });
            entries.push(Entry {
                facts: Facts {
                    detections: r.detections.len() as u32,
                    last_mjd: r.meta.last_mjd.unwrap_or(f64::NAN),
                },
                object_id: r.object_id,
                seq: 0,
                point,
                raw,
            });
        }
        self.store.write(&batch)?;
        Ok(())
    }
}

/// A bulk seed in progress; see [`Engine::seed`].
pub struct Seed<'a> {
    engine: &'a Engine,
    tally: IngestTally,
}

impl Seed<'_> {
    /// Pass one for one input: stores its alerts (batches of the configured size), records its
    /// rejects.
    pub fn add(&mut self, decoded: Decoded) -> Result<()> {
        self.tally.add_rejects(decoded.rejects);
        for chunk in decoded.alerts.chunks(self.engine.config.batch_size) {
            let outcome = self.engine.seed_batch(chunk)?;
            self.tally.add_batch(chunk.len(), outcome);
        }
        Ok(())
    }

    pub fn report(&self) -> &IngestReport {
        self.tally.report()
    }

    /// Pass two: embeds, indexes and links every object; returns the ingest report and what
    /// the pass did.
    pub fn finish(self) -> Result<(IngestReport, SeedReport)> {
        let seeded = self.engine.seed_finish()?;
        Ok((self.tally.finish(), seeded))
    }
}

/// What pass two of a seed did, and how long each part took.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeedReport {
    pub objects: usize,
    /// Neighbour entries written (objects × k, less where fewer objects exist).
    pub links: usize,
    pub embed_seconds: f64,
    pub index_seconds: f64,
    pub link_seconds: f64,
    pub total_seconds: f64,
}
