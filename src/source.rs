//! Input from the file system: expands paths into files and decodes each with [`crate::alert`].
//!
//! The only part of ingest that touches files, kept apart so the decoders stay pure. Imports
//! `alert`.

use std::fs;
use std::io::{BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
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
/// files is still decoded ahead of its writes. A tar archive (or gzip-compressed tar) larger
/// than this is read as it is decoded, in pieces of members of about this size, so that a
/// night's archive of any size never sits whole in memory.
const BYTES_PER_ROUND: u64 = 16 << 20;

/// What [`decode_ahead`] spent apart from `store`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DecodedAhead {
    /// Time the decoder thread spent decoding (its rounds run beside `store`).
    pub decoding: Duration,
    /// Time `store` waited for a decoded round: the part of the decoding not hidden.
    pub waiting: Duration,
}

/// What [`decode_ahead`] hands to `store`: a file's decoded input, or one piece of a large
/// archive's.
#[derive(Debug)]
pub struct Piece<'a> {
    pub path: &'a Path,
    pub decoded: Decoded,
    /// Whether this is the file's last piece (always, except in a large archive).
    pub last: bool,
}

/// Reads and decodes `files` one round ahead of `store`, which gets each file's [`Decoded`]
/// in the files' order. A round is up to [`FILES_PER_ROUND`] files, cut short at
/// [`BYTES_PER_ROUND`]; its files (and the members of each archive) decode in parallel, on
/// threads of their own at background priority, while `store` takes the round before: the
/// decoding fills the time the writes leave a core idle instead of taking turns with them.
/// A tar archive (plain or gzip) larger than a round is its own round, read and decoded a
/// piece at a time ([`alert::decode_tar_stream`]), so it reaches `store` as several
/// [`Piece`]s. At most two rounds are held decoded at once, or three pieces (one stored, one
/// handed over, one held back until the next shows whether it was the last). The first error
/// of `store` stops the decoding and is returned.
pub fn decode_ahead<E>(
    files: &[PathBuf],
    opts: &DecodeOptions,
    store: impl FnMut(Piece<'_>) -> Result<(), E>,
) -> Result<DecodedAhead, E> {
    decode_ahead_in(files, opts, BYTES_PER_ROUND, store)
}

/// [`decode_ahead`] with the size of a round (and of a large archive's pieces) given.
fn decode_ahead_in<E>(
    files: &[PathBuf],
    opts: &DecodeOptions,
    round_bytes: u64,
    mut store: impl FnMut(Piece<'_>) -> Result<(), E>,
) -> Result<DecodedAhead, E> {
    let rounds = rounds(files, round_bytes);
    let mut waiting = Duration::ZERO;
    let decoding = std::thread::scope(|scope| {
        // A rendezvous: the next round waits, decoded, until `store` asks for it. Each
        // message: (file index, decoded, the file's last piece).
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(usize, Decoded, bool)>>(0);
        let decoder = scope.spawn(|| {
            let tx = tx;
            // At background priority: the writes keep the cores they use, and the decoding
            // takes what they leave (an fsync, a step on one thread).
            crate::memory::yield_cpu();
            let pool = crate::memory::background_pool("decode");
            let mut busy = Duration::ZERO;
            for round in rounds {
                let work = || decode_round(files, round, opts, round_bytes, &tx, &mut busy);
                let more = match &pool {
                    Some(pool) => pool.install(work),
                    None => work(),
                };
                if !more {
                    break;
                }
            }
            busy
        });
        let stored = (|| {
            loop {
                let t = Instant::now();
                let Ok(decoded) = rx.recv() else {
                    // Every round was sent, or the decoder panicked (the join below says so).
                    break;
                };
                waiting += t.elapsed();
                for (i, decoded, last) in decoded {
                    store(Piece {
                        path: &files[i],
                        decoded,
                        last,
                    })?;
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

/// Decodes one round of [`decode_ahead`] and sends it on `tx` (a large archive a piece at a
/// time, each piece sent once the next is decoded, the last marked so), adding the time spent
/// decoding to `busy`. `false` when the receiver is gone.
fn decode_round(
    files: &[PathBuf],
    round: Range<usize>,
    opts: &DecodeOptions,
    round_bytes: u64,
    tx: &SyncSender<Vec<(usize, Decoded, bool)>>,
    busy: &mut Duration,
) -> bool {
    let mut t = Instant::now();
    let mut send = |message: Vec<(usize, Decoded, bool)>, busy: &mut Duration| {
        *busy += t.elapsed();
        let sent = tx.send(message).is_ok();
        t = Instant::now();
        sent
    };
    if round.len() == 1 {
        let i = round.start;
        if let Some((tar_name, reader)) = large_archive(&files[i], round_bytes) {
            let mut held: Option<Decoded> = None;
            let read_all = alert::decode_tar_stream(
                &files[i].to_string_lossy(),
                &tar_name,
                reader,
                opts,
                usize::try_from(round_bytes).unwrap_or(usize::MAX),
                |next| match held.replace(next) {
                    Some(piece) => send(vec![(i, piece, false)], busy),
                    None => true,
                },
            );
            return read_all && send(vec![(i, held.unwrap_or_default(), true)], busy);
        }
    }
    let decoded: Vec<(usize, Decoded, bool)> = files[round.clone()]
        .par_iter()
        .zip(round)
        .map(|(f, i)| (i, decode_file(f, opts), true))
        .collect();
    send(decoded, busy)
}

/// A reader over the tar archive in `path` (decompressed, if it is gzip) when the file is
/// larger than `round_bytes` and holds a tar, with the name [`alert::decode`] gives that tar
/// (a gzip's without `.gz`); `None` otherwise (the file is then decoded whole, as
/// [`decode_file`] does, and any read error becomes its reject there).
fn large_archive(path: &Path, round_bytes: u64) -> Option<(String, Box<dyn Read + Send>)> {
    if fs::metadata(path).ok()?.len() <= round_bytes {
        return None;
    }
    let open = || fs::File::open(path).ok().map(BufReader::new);
    let mut head = Vec::with_capacity(512);
    open()?.take(512).read_to_end(&mut head).ok()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut inner = Vec::with_capacity(512);
        MultiGzDecoder::new(open()?)
            .take(512)
            .read_to_end(&mut inner)
            .ok()?;
        let name = path.to_string_lossy();
        let name = name.strip_suffix(".gz").unwrap_or(&name).to_string();
        return alert::is_tar_head(&inner).then(|| {
            open().map(|f| {
                (
                    name,
                    Box::new(MultiGzDecoder::new(f)) as Box<dyn Read + Send>,
                )
            })
        })?;
    }
    let name = path.to_string_lossy().into_owned();
    alert::is_tar_head(&head)
        .then(|| open().map(|f| (name, Box::new(f) as Box<dyn Read + Send>)))?
}

/// `files` cut into [`decode_ahead`]'s rounds, by count and by size on disk (indices into
/// `files`). A file of `round_bytes` or more ends its round; one larger than that (a large
/// archive is read a piece at a time) is a round of its own.
fn rounds(files: &[PathBuf], round_bytes: u64) -> Vec<Range<usize>> {
    let mut rounds = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, f) in files.iter().enumerate() {
        // An unreadable file counts as empty; its read fails in the round as a reject.
        let len = fs::metadata(f).map_or(0, |m| m.len());
        if len > round_bytes && start < i {
            rounds.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += len;
        if i + 1 - start == FILES_PER_ROUND || bytes >= round_bytes {
            rounds.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < files.len() {
        rounds.push(start..files.len());
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
        let ahead = decode_ahead(&files, &opts, |p| {
            assert!(p.last, "{}: small files come whole", p.path.display());
            seen.push((p.path.to_path_buf(), p.decoded));
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
        let err = decode_ahead(&files, &DecodeOptions::default(), |p| {
            calls += 1;
            if calls == 3 {
                return Err(format!("full: {}", p.path.display()));
            }
            Ok(())
        })
        .expect_err("the third file fails");
        assert_eq!(calls, 3);
        assert_eq!(err, format!("full: {}", files[2].display()));
    }

    /// Every piece `decode_ahead_in` hands over for `files`, with `round_bytes`.
    fn pieces(files: &[PathBuf], round_bytes: u64) -> Vec<(PathBuf, Decoded, bool)> {
        let mut seen = Vec::new();
        decode_ahead_in(files, &DecodeOptions::default(), round_bytes, |p| {
            seen.push((p.path.to_path_buf(), p.decoded, p.last));
            Ok::<_, String>(())
        })
        .expect("no store error");
        seen
    }

    #[test]
    fn a_large_night_archive_is_read_in_pieces_that_add_up_to_decoding_it_whole() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ztf");
        let night = root.join("ztf_public_20180819_mod1000.tar.gz");
        let dir = tempfile::tempdir().expect("tempdir");
        // The same night as a plain tar, and its first 60% as a tar cut short.
        let mut tar = Vec::new();
        MultiGzDecoder::new(fs::File::open(&night).expect("night"))
            .read_to_end(&mut tar)
            .expect("gunzip");
        let plain = dir.path().join("night.tar");
        fs::write(&plain, &tar).expect("write");
        let cut = dir.path().join("cut.tar");
        fs::write(&cut, &tar[..tar.len() * 3 / 5]).expect("write");
        let small = root.join("ZTF20abyfpze.avro");
        let opts = DecodeOptions::default();
        for archive in [&night, &plain] {
            let files = vec![small.clone(), archive.clone(), small.clone()];
            let seen = pieces(&files, 64 << 10);
            let of_archive: Vec<&(PathBuf, Decoded, bool)> =
                seen.iter().filter(|s| &s.0 == archive).collect();
            assert!(of_archive.len() > 3, "{} pieces", of_archive.len());
            // In file order; only the archive's last piece is marked last.
            let order: Vec<(&Path, bool)> = seen.iter().map(|s| (s.0.as_path(), s.2)).collect();
            let mut want = vec![(small.as_path(), true)];
            want.extend((1..of_archive.len()).map(|_| (archive.as_path(), false)));
            want.extend([(archive.as_path(), true), (small.as_path(), true)]);
            assert_eq!(order, want);
            let whole = decode_file(archive, &opts);
            let alerts: Vec<_> = of_archive.iter().flat_map(|s| s.1.alerts.clone()).collect();
            let rejects: Vec<_> = of_archive
                .iter()
                .flat_map(|s| s.1.rejects.clone())
                .collect();
            assert!(whole.alerts.len() >= 20, "{} alerts", whole.alerts.len());
            assert_eq!(alerts, whole.alerts, "{}", archive.display());
            assert_eq!(rejects, whole.rejects, "{}", archive.display());
            // Each piece's packets add up to about a piece: no piece holds the night.
            let most = of_archive.iter().map(|s| s.1.alerts.len()).max();
            assert!(most < Some(whole.alerts.len() / 3), "{most:?}");
        }
        // Cut short, as a tar or mid-way through the gzip: what was read before the damage is
        // kept, then the archive (named as given) is rejected.
        let gz = fs::read(&night).expect("night");
        let cut_gz = dir.path().join("cut.tar.gz");
        fs::write(&cut_gz, &gz[..gz.len() * 3 / 5]).expect("write");
        let whole = decode_file(&plain, &opts).alerts;
        for cut in [&cut, &cut_gz] {
            let seen = pieces(std::slice::from_ref(cut), 64 << 10);
            let alerts: Vec<_> = seen.iter().flat_map(|s| s.1.alerts.clone()).collect();
            assert!(
                alerts.len() > whole.len() / 3,
                "{} of {}",
                alerts.len(),
                whole.len()
            );
            assert!(alerts.len() < whole.len());
            assert_eq!(alerts[..], whole[..alerts.len()], "{}", cut.display());
            let last = seen.last().expect("a last piece");
            assert!(last.2);
            let name = cut.to_string_lossy();
            assert!(
                last.1.rejects.iter().any(|r| r.source == name
                    && r.error.to_string().contains("truncated or corrupt tar")),
                "{:?}",
                last.1.rejects
            );
        }
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
        let sizes: Vec<usize> = rounds(&small, BYTES_PER_ROUND)
            .iter()
            .map(|r| r.len())
            .collect();
        assert_eq!(sizes, [32, 32, 6]);
        // Two small files, one at the byte limit, one more: the limit's file ends its round.
        let mixed = vec![
            write("a", 10),
            write("b", 10),
            write("big", BYTES_PER_ROUND as usize),
            write("c", 10),
            dir.path().join("missing"),
        ];
        assert_eq!(rounds(&mixed, BYTES_PER_ROUND), [0..3, 3..5]);
        // Past the limit, a file (an archive read a piece at a time) is a round of its own.
        assert_eq!(rounds(&mixed, 9), [0..1, 1..2, 2..3, 3..4, 4..5]);
        assert_eq!(rounds(&mixed, 25), [0..2, 2..3, 3..5]);
        assert!(rounds(&[], BYTES_PER_ROUND).is_empty());
    }
}
