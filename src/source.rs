//! Input from the file system: expands paths into files and decodes each with [`crate::alert`].
//!
//! The only part of ingest that touches files, kept apart so the decoders stay pure. Imports
//! `alert`.

use std::fs;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::alert::{self, AvroSchema, DecodeError, DecodeOptions, Decoded, Reject};

/// An input path that could not be listed, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub path: PathBuf,
    pub reason: String,
}

/// Expands files and directories (recursively, in name order, hidden entries skipped) into
/// the files to read. Paths that cannot be read are returned apart, never dropped silently.
pub fn expand(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Unreadable>) {
    let mut files = Vec::new();
    let mut bad = Vec::new();
    for p in paths {
        walk(p, &mut files, &mut bad);
    }
    (files, bad)
}

fn walk(path: &Path, files: &mut Vec<PathBuf>, bad: &mut Vec<Unreadable>) {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            bad.push(Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
            return;
        }
    };
    if meta.is_file() {
        files.push(path.to_path_buf());
        return;
    }
    let entries = match fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) => {
            bad.push(Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    children.sort();
    for child in children {
        walk(&child, files, bad);
    }
}

/// Reads and decodes one file; a read error becomes a reject of that file.
pub fn decode_file(path: &Path, opts: &DecodeOptions) -> Decoded {
    let name = path.to_string_lossy();
    match fs::read(path) {
        Ok(bytes) => alert::decode(&name, &bytes, opts),
        Err(e) => Decoded {
            alerts: Vec::new(),
            rejects: vec![Reject {
                source: name.into_owned(),
                error: DecodeError::Archive {
                    detail: format!("cannot read: {e}"),
                },
            }],
        },
    }
}

/// Files decoded together in one round of [`decode_ahead`], at most.
const FILES_PER_ROUND: usize = 32;

/// Bytes of input that end a round of [`decode_ahead`] early: a round of many small packets
/// holds ~32 files, one of 5,000-packet tar files one file, so that a stream of a few large
/// files is still decoded ahead of its writes.
const BYTES_PER_ROUND: u64 = 16 << 20;

/// What [`decode_ahead`] spent apart from `store`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DecodedAhead {
    /// Time the decoding thread spent reading and decoding (beside `store`).
    pub decoding: Duration,
    /// Time `store` waited for a decoded round: the part of the decoding not hidden.
    pub waiting: Duration,
}

/// Reads and decodes `files` one round ahead of `store`, which gets each file's [`Decoded`]
/// in the files' order. A round is up to [`FILES_PER_ROUND`] files, cut short at
/// [`BYTES_PER_ROUND`]; its files (and the members of each archive) decode in parallel, on
/// threads of their own at background priority, while `store` takes the round before: the
/// decoding fills the time the writes leave a core idle instead of taking turns with them.
/// At most two rounds are held decoded at once. The first error of `store` stops the
/// decoding and is returned.
pub fn decode_ahead<E>(
    files: &[PathBuf],
    opts: &DecodeOptions,
    mut store: impl FnMut(&Path, Decoded) -> Result<(), E>,
) -> Result<DecodedAhead, E> {
    let rounds = rounds(files);
    let mut waiting = Duration::ZERO;
    let decoding = std::thread::scope(|scope| {
        // A rendezvous: the next round waits, decoded, until `store` asks for it.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(0);
        let decoder = scope.spawn(|| {
            let tx = tx;
            // At background priority: the writes keep the cores they use, and the decoding
            // takes what they leave (an fsync, a step on one thread).
            crate::memory::yield_cpu();
            let pool = crate::memory::background_pool("decode");
            let decode = |round: &[PathBuf]| -> Vec<Decoded> {
                round.par_iter().map(|f| decode_file(f, opts)).collect()
            };
            let mut busy = Duration::ZERO;
            for round in &rounds {
                let t = Instant::now();
                let decoded = match &pool {
                    Some(pool) => pool.install(|| decode(round)),
                    None => decode(round),
                };
                busy += t.elapsed();
                if tx.send(decoded).is_err() {
                    break;
                }
            }
            busy
        });
        let stored = (|| {
            for round in &rounds {
                let t = Instant::now();
                let Ok(decoded) = rx.recv() else {
                    // The decoder ended early: it panicked, and the join below says so.
                    break;
                };
                waiting += t.elapsed();
                for (f, d) in round.iter().zip(decoded) {
                    store(f, d)?;
                }
            }
            Ok(())
        })();
        // Dropping the receiver stops a decoder that is still ahead (after an error).
        drop(rx);
        let busy = match decoder.join() {
            Ok(busy) => busy,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        stored.map(|()| busy)
    })?;
    Ok(DecodedAhead { decoding, waiting })
}

/// `files` cut into [`decode_ahead`]'s rounds, by count and by size on disk.
fn rounds(files: &[PathBuf]) -> Vec<&[PathBuf]> {
    let mut rounds = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, f) in files.iter().enumerate() {
        // An unreadable file counts as empty; its read fails in the round as a reject.
        bytes += fs::metadata(f).map_or(0, |m| m.len());
        if i + 1 - start == FILES_PER_ROUND || bytes >= BYTES_PER_ROUND {
            rounds.push(&files[start..=i]);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < files.len() {
        rounds.push(&files[start..]);
    }
    rounds
}

/// Decode options from `--schema PATH`, for Confluent-framed datums:
/// - a schema tree laid out as Rubin's `alert_packet` ships it, `MAJOR/MINOR/*.avsc`: each
///   version serves the schema id `MAJOR * 100 + MINOR`, and no other id is accepted;
/// - one `.avsc` file, or a directory of them: that schema serves every schema id (and, where
///   the file names carry the version, `lsst.vMAJOR_MINOR.*`, is also known by its id).
pub fn schema_options(path: &Path) -> Result<DecodeOptions, String> {
    let mut opts = DecodeOptions::default();
    let versions = schema_tree(path)?;
    if !versions.is_empty() {
        for (id, dir) in versions {
            opts.schemas_by_id.insert(id, Arc::new(load_schema(&dir)?));
        }
        return Ok(opts);
    }
    let schema = Arc::new(load_schema(path)?);
    if let Some(id) = version_in_names(path) {
        opts.schemas_by_id.insert(id, Arc::clone(&schema));
    }
    opts.confluent_schema = Some(schema);
    Ok(opts)
}

/// The `MAJOR/MINOR` directories under `path` that hold `.avsc` files, with their schema ids.
fn schema_tree(path: &Path) -> Result<Vec<(u32, PathBuf)>, String> {
    let numbered = |dir: &Path| -> Vec<(u32, PathBuf)> {
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .filter_map(|p| {
                let n = p.file_name()?.to_str()?.parse::<u32>().ok()?;
                Some((n, p))
            })
            .collect()
    };
    let mut out = Vec::new();
    for (major, major_dir) in numbered(path) {
        for (minor, minor_dir) in numbered(&major_dir) {
            if minor >= 100 {
                return Err(format!(
                    "{}: minor version {minor} does not fit a schema id (major * 100 + minor)",
                    minor_dir.display()
                ));
            }
            let has_avsc = fs::read_dir(&minor_dir).is_ok_and(|rd| {
                rd.filter_map(|e| e.ok())
                    .any(|e| e.path().extension().is_some_and(|x| x == "avsc"))
            });
            if has_avsc {
                out.push((major * 100 + minor, minor_dir));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The schema id in Rubin's file names (`lsst.v10_0.alert.avsc` -> 1000), if they carry one.
fn version_in_names(path: &Path) -> Option<u32> {
    let names: Vec<String> = if path.is_dir() {
        fs::read_dir(path)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect()
    } else {
        vec![path.file_name()?.to_str()?.to_string()]
    };
    names.iter().find_map(|n| {
        let rest = n.strip_prefix("lsst.v")?;
        let (version, _) = rest.split_once('.')?;
        let (major, minor) = version.split_once('_')?;
        let (major, minor) = (major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?);
        (minor < 100).then_some(major * 100 + minor)
    })
}

/// Loads a writer schema for Confluent-framed datums: one `.avsc` file, or a directory whose
/// `.avsc` files together define the alert record (as LSST ships them).
pub fn load_schema(path: &Path) -> Result<AvroSchema, String> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(format!("{}: no .avsc files", path.display()));
    }
    let texts = files
        .iter()
        .map(|f| fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display())))
        .collect::<Result<Vec<_>, _>>()?;
    AvroSchema::parse(&texts).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes packets to a tar file, one member per `(name, bytes)`; returns the bytes of the
/// packets (the stream generator's output, read back by [`decode_file`]).
pub fn write_packet_tar(path: &Path, packets: &[(String, Vec<u8>)]) -> std::io::Result<u64> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut tar = tar::Builder::new(file);
    let mut bytes = 0;
    for (name, data) in packets {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, data.as_slice())?;
        bytes += data.len() as u64;
    }
    tar.into_inner()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_files() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let (files, bad) = expand(&[root.join("ztf"), root.join("fink"), root.join("lsst")]);
        assert!(bad.is_empty(), "{bad:?}");
        // Twice over, so that they take more than one round.
        let twice = [files.clone(), files].concat();
        assert!(twice.len() > FILES_PER_ROUND, "{} files", twice.len());
        twice
    }

    #[test]
    fn decoding_ahead_gives_each_file_what_decoding_it_alone_gives_in_order() {
        let files = data_files();
        let opts = DecodeOptions::default();
        let mut seen = Vec::new();
        let ahead = decode_ahead(&files, &opts, |f, d| {
            seen.push((f.to_path_buf(), d));
            Ok::<_, String>(())
        })
        .expect("no store error");
        assert_eq!(seen.len(), files.len());
        let mut alerts = 0;
        for ((path, got), f) in seen.iter().zip(&files) {
            assert_eq!(path, f);
            let alone = decode_file(f, &opts);
            assert_eq!(got.alerts, alone.alerts, "{}", f.display());
            assert_eq!(got.rejects, alone.rejects, "{}", f.display());
            alerts += got.alerts.len();
        }
        assert!(alerts > 100, "{alerts} alerts");
        assert!(ahead.decoding > Duration::ZERO);
    }

    #[test]
    fn a_store_error_stops_the_decoding_and_is_returned() {
        let files = data_files();
        let mut calls = 0;
        let err = decode_ahead(&files, &DecodeOptions::default(), |f, _| {
            calls += 1;
            if calls == 3 {
                return Err(format!("full: {}", f.display()));
            }
            Ok(())
        })
        .expect_err("the third file fails");
        assert_eq!(calls, 3);
        assert_eq!(err, format!("full: {}", files[2].display()));
    }

    #[test]
    fn rounds_end_at_the_file_count_or_the_size_and_cover_every_file_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, len: usize| {
            let p = dir.path().join(name);
            fs::write(&p, vec![0u8; len]).expect("write");
            p
        };
        // 70 small files: rounds of 32, 32 and 6.
        let small: Vec<PathBuf> = (0..70).map(|i| write(&format!("s{i:02}"), 10)).collect();
        let sizes: Vec<usize> = rounds(&small).iter().map(|r| r.len()).collect();
        assert_eq!(sizes, [32, 32, 6]);
        // Two small files, one past the byte limit, one more: the large one ends its round.
        let mixed = vec![
            write("a", 10),
            write("b", 10),
            write("big", BYTES_PER_ROUND as usize),
            write("c", 10),
            dir.path().join("missing"),
        ];
        let cut: Vec<&[PathBuf]> = rounds(&mixed);
        assert_eq!(cut, [&mixed[..3], &mixed[3..]]);
        assert!(rounds(&[]).is_empty());
    }
}
