//! Backups and integrity checks of a store.
//!
//! [`Engine::backup`] writes a consistent copy while the engine serves: a RocksDB checkpoint
//! (the source of truth) and the index dump it names, so the copy opens without a rebuild.
//! [`Engine::check`] reads everything back and verifies the parts against each other: every
//! record decodes, every object has its vector versions in order, every version names a known
//! object and a point below the watermark, every stored neighbour list names known objects at
//! the distance of their current vectors, labels name known objects, the `record_labels` column
//! holds what each record's annotations carry, and the live index holds each object's latest
//! version, scaled by the stored spec. Imports `store`, `graph`, `embed`, `science`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use super::{index_dir, lock, read, Engine, Result};
use crate::graph::STORED_K;
use crate::model::Label;
use crate::science::taxonomy;

/// Problems listed in a [`CheckReport`]; the count goes on past it.
pub const MAX_LISTED_PROBLEMS: usize = 100;

/// How far a stored neighbour distance may be from the distance of the current vectors
/// (f32 rounding of a sum of 63 squares).
const DISTANCE_TOLERANCE: f32 = 1e-3;

/// What [`Engine::backup`] wrote.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupReport {
    pub out_dir: String,
    pub objects: u64,
    /// Bytes of the files in the backup.
    pub bytes: u64,
    /// Whether the index dump was copied (without one, the copy rebuilds its index at open).
    pub index_dump: bool,
}

/// What [`Engine::check`] found.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CheckReport {
    pub objects: u64,
    pub vector_versions: u64,
    pub neighbour_lists: u64,
    pub labelled_objects: u64,
    pub indexed: u64,
    /// Objects whose lists wait for a deferred relink (marked in the store): their lists,
    /// and the distances other lists give them, may be behind their vectors and are not
    /// checked.
    pub unlinked: u64,
    /// Problems found; the first [`MAX_LISTED_PROBLEMS`] are in `problems`.
    pub problem_count: u64,
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether every part agrees with the others.
    pub fn is_sound(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, what: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(what);
        }
    }
}

/// Sums the sizes of the files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

impl Engine {
    /// Writes a consistent copy of the store into `out` (which must not exist) while the
    /// engine goes on serving: a RocksDB checkpoint, then the index dump the checkpoint names.
    /// The writer lock is held while both are taken, so no batch and no newer dump lands in
    /// between; the dump's files are hard-linked (immutable once written), so that is short.
    pub fn backup(&self, out: &Path) -> Result<BackupReport> {
        let copied = {
            let _guard = lock(&self.writer);
            self.store.checkpoint(out)?;
            self.link_index_dump(out)
        };
        if let Err(e) = &copied {
            tracing::warn!("backup without the index dump (it rebuilds at open): {e}");
        }
        let objects = self.store.counts()?.values().map(|c| c.objects).sum();
        Ok(BackupReport {
            out_dir: out.display().to_string(),
            objects,
            bytes: bytes_under(out),
            index_dump: copied.is_ok_and(|copied| copied),
        })
    }

    /// Links (or copies) the files of the current index dump into `out`'s index directory;
    /// `false` when the store records none.
    fn link_index_dump(&self, out: &Path) -> std::io::Result<bool> {
        let Ok(Some(dump)) = self.store.index_dump() else {
            return Ok(false);
        };
        let (from, to) = (index_dir(self.store.path()), index_dir(out));
        std::fs::create_dir_all(&to)?;
        let prefix = format!("{}.", dump.basename);
        for entry in std::fs::read_dir(&from)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let target = to.join(entry.file_name());
                // A dump file is never written again (a new dump gets a new name): link it,
                // and copy only across file systems.
                if std::fs::hard_link(entry.path(), &target).is_err() {
                    std::fs::copy(entry.path(), &target)?;
                }
            }
        }
        Ok(true)
    }

    /// Reads the whole store and verifies its parts against each other (see the module doc).
    /// A value that does not decode is reported, not returned as an error; other store errors
    /// are returned.
    pub fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let mut objects: HashSet<String> = HashSet::new();
        // The labels each record's annotations carry, to check the `record_labels` column.
        let mut own_labels: HashMap<String, Vec<Label>> = HashMap::new();
        let scanned = self.store.for_each_object(|r| {
            let labels = taxonomy::record_labels(&r);
            if !labels.is_empty() {
                own_labels.insert(r.object_id.clone(), labels);
            }
            objects.insert(r.object_id);
            true
        });
        if let Err(e) = scanned {
            report.problem(format!("objects: {e}"));
        }
        report.objects = objects.len() as u64;

        let spec = read(&self.live).spec.clone();
        let watermark = self.store.next_point()?;
        let dim = spec.feature_names.len();
        // The latest raw vector of each object, and the sequence numbers seen.
        let mut latest: BTreeMap<String, (u32, u64, Vec<f32>)> = BTreeMap::new();
        let mut points: HashSet<u64> = HashSet::new();
        let mut versions_problems = Vec::new();
        let scanned = self.store.for_each_vector(|id, seq, v| {
            report.vector_versions += 1;
            if !objects.contains(id) {
                versions_problems.push(format!("vector {id}#{seq}: no such object"));
            }
            if v.raw.len() != dim {
                versions_problems.push(format!(
                    "vector {id}#{seq}: {} features, the spec has {dim}",
                    v.raw.len()
                ));
            }
            if v.point >= watermark || !points.insert(v.point) {
                versions_problems.push(format!(
                    "vector {id}#{seq}: point {} repeated or not below the watermark {watermark}",
                    v.point
                ));
            }
            let expected = latest.get(id).map_or(0, |l| l.0 + 1);
            if seq != expected {
                versions_problems.push(format!("vector {id}#{seq}: expected version {expected}"));
            }
            latest.insert(id.to_string(), (seq, v.point, v.raw));
        });
        if let Err(e) = scanned {
            report.problem(format!("vectors: {e}"));
        }
        for p in versions_problems {
            report.problem(p);
        }
        for id in &objects {
            if !latest.contains_key(id) {
                report.problem(format!("object {id}: no vector version"));
            }
        }

        // The live index holds each object's latest version, scaled by the stored spec.
        let stored_spec = self.store.spec()?;
        if stored_spec
            .as_ref()
            .is_some_and(|s| s.version != spec.version)
        {
            report.problem(format!(
                "spec: the index has version {}, the store {:?}",
                spec.version,
                stored_spec.map(|s| s.version)
            ));
        }
        let mut current: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        {
            let live = read(&self.live);
            report.indexed = live.len() as u64;
            for (id, (seq, point, raw)) in &latest {
                match live.current(id) {
                    Some(c) if c.seq == *seq && c.point == *point => {
                        if c.vector != live.scale(raw) {
                            report.problem(format!("index {id}: vector differs from the store"));
                        }
                        current.insert(id.clone(), c.vector.clone());
                    }
                    Some(c) => report.problem(format!(
                        "index {id}: holds version {} (point {}), the store {seq} (point {point})",
                        c.seq, c.point
                    )),
                    None => report.problem(format!("index {id}: missing")),
                }
            }
            if live.len() != latest.len() {
                report.problem(format!(
                    "index: {} objects, the store {}",
                    live.len(),
                    latest.len()
                ));
            }
        }

        let unlinked: HashSet<String> = self.store.unlinked()?.into_iter().collect();
        report.unlinked = unlinked.len() as u64;
        let mut list_problems = Vec::new();
        let scanned = self.store.for_each_neighbours(|id, list| {
            report.neighbour_lists += 1;
            let Some(mine) = current.get(id) else {
                list_problems.push(format!("list of {id}: no such object in the index"));
                return true;
            };
            if list.len() > STORED_K {
                list_problems.push(format!("list of {id}: {} entries", list.len()));
            }
            for pair in list.windows(2) {
                if pair[1].distance < pair[0].distance {
                    list_problems.push(format!("list of {id}: not in distance order"));
                    break;
                }
            }
            for n in &list {
                match current.get(&n.object_id) {
                    _ if n.object_id == id => {
                        list_problems.push(format!("list of {id}: names itself"));
                    }
                    None => list_problems.push(format!(
                        "list of {id}: names {}, which has no vector",
                        n.object_id
                    )),
                    // Behind the vectors until the deferred relink writes it.
                    Some(_) if unlinked.contains(id) || unlinked.contains(&n.object_id) => {}
                    Some(v) => {
                        let d = crate::embed::l2(mine, v);
                        if (d - n.distance).abs() > DISTANCE_TOLERANCE * d.max(1.0) {
                            list_problems.push(format!(
                                "list of {id}: {} at {} but their vectors are {d} apart",
                                n.object_id, n.distance
                            ));
                        }
                    }
                }
            }
            true
        });
        if let Err(e) = scanned {
            report.problem(format!("neighbours: {e}"));
        }
        for p in list_problems {
            report.problem(p);
        }

        let mut label_problems = Vec::new();
        let scanned = self.store.for_each_labels(|id, _| {
            report.labelled_objects += 1;
            if !objects.contains(id) {
                label_problems.push(format!("labels of {id}: no such object"));
            }
        });
        if let Err(e) = scanned {
            report.problem(format!("labels: {e}"));
        }
        let scanned = self
            .store
            .for_each_record_labels(|id, labels| match own_labels.remove(id) {
                Some(own) if own == labels => {}
                Some(own) => label_problems.push(format!(
                    "record labels of {id}: {labels:?}, its record carries {own:?}"
                )),
                None => label_problems.push(format!(
                    "record labels of {id}: {labels:?}, its record carries none"
                )),
            });
        if let Err(e) = scanned {
            report.problem(format!("record labels: {e}"));
        }
        for (id, own) in own_labels {
            label_problems.push(format!(
                "record labels of {id}: missing, its record carries {own:?}"
            ));
        }
        for p in label_problems {
            report.problem(p);
        }
        Ok(report)
    }
}
