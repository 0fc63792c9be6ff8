//! Input from the file system: expands paths into files and decodes each with [`crate::alert`].
//!
//! The only part of ingest that touches files, kept apart so the decoders stay pure. Imports
//! `alert`.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use parquet::file::reader::{ChunkReader, Length};
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
/// files is still decoded ahead of its writes. A larger file is read as it is decoded, in
/// pieces of about this size (a tar archive's members, an Avro container's blocks, a Parquet
/// file's rows), so that a night's input of any size never sits whole in memory.
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
/// A tar archive or an Avro container (plain or gzip) or a Parquet file larger than a round is
/// its own round, read and decoded a piece at a time ([`alert::decode_tar_stream`],
/// [`alert::decode_container_stream`], [`alert::decode_parquet_stream`]), so it reaches `store`
/// as several [`Piece`]s. At most two rounds are held decoded at once, or three pieces (one stored, one
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
        if let Some(large) = large_input(&files[i], round_bytes) {
            let name = files[i].to_string_lossy();
            let piece_bytes = usize::try_from(round_bytes).unwrap_or(usize::MAX);
            // Each piece is sent once the next shows it was not the last.
            let mut held: Option<Decoded> = None;
            let mut hold = |next| match held.replace(next) {
                Some(piece) => send(vec![(i, piece, false)], busy),
                None => true,
            };
            let read_all = match large {
                Large::Tar { tar, reader } => Some(alert::decode_tar_stream(
                    &name,
                    &tar,
                    reader,
                    opts,
                    piece_bytes,
                    &mut hold,
                )),
                Large::Container { name, reader } => {
                    alert::decode_container_stream(&name, reader, piece_bytes, &mut hold)
                }
                Large::Parquet(file) => Some(alert::decode_parquet_stream(
                    &name,
                    file,
                    piece_bytes,
                    &mut hold,
                )),
            };
            // `None`: a container whose header the streaming reader does not take, nothing
            // sent yet; it is decoded whole below, which names the problem.
            if let Some(read_all) = read_all {
                return read_all && send(vec![(i, held.unwrap_or_default(), true)], busy);
            }
        }
    }
    let decoded: Vec<(usize, Decoded, bool)> = files[round.clone()]
        .par_iter()
        .zip(round)
        .map(|(f, i)| (i, decode_file(f, opts), true))
        .collect();
    send(decoded, busy)
}

/// A file larger than a round, read as it is decoded.
enum Large {
    /// A tar archive (plain, or in gzip), with the name [`alert::decode`] gives that tar (a
    /// gzip's without `.gz`).
    Tar {
        tar: String,
        reader: Box<dyn Read + Send>,
    },
    /// An Avro object container (plain, or in gzip), named as [`alert::decode`] names it.
    Container {
        name: String,
        reader: Box<dyn BufRead + Send>,
    },
    /// A Parquet file, read a row group at a time.
    Parquet(SharedFile),
}

/// An open file that the Parquet reader reads at any offset, shared by the readers of its row
/// groups.
#[derive(Clone)]
struct SharedFile(Arc<fs::File>);

impl Length for SharedFile {
    fn len(&self) -> u64 {
        Length::len(self.0.as_ref())
    }
}

impl ChunkReader for SharedFile {
    type T = <fs::File as ChunkReader>::T;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        self.0.as_ref().get_read(start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.0.as_ref().get_bytes(start, length)
    }
}

/// How `path` is read when it is larger than `round_bytes` and holds a tar archive or an Avro
/// container (plain or gzip) or a Parquet file; `None` otherwise (the file is then decoded
/// whole, as [`decode_file`] does, and any read error becomes its reject there). A gzip of a
/// Parquet file, which cannot be read out of order, is decoded whole.
fn large_input(path: &Path, round_bytes: u64) -> Option<Large> {
    if fs::metadata(path).ok()?.len() <= round_bytes {
        return None;
    }
    let open = || fs::File::open(path).ok();
    let mut head = Vec::with_capacity(512);
    BufReader::new(open()?)
        .take(512)
        .read_to_end(&mut head)
        .ok()?;
    let name = path.to_string_lossy();
    let (name, head, gzip) = if head.starts_with(&[0x1f, 0x8b]) {
        let mut inner = Vec::with_capacity(512);
        MultiGzDecoder::new(BufReader::new(open()?))
            .take(512)
            .read_to_end(&mut inner)
            .ok()?;
        (
            name.strip_suffix(".gz").unwrap_or(&name).to_string(),
            inner,
            true,
        )
    } else {
        (name.into_owned(), head, false)
    };
    let reader = || -> Option<Box<dyn BufRead + Send>> {
        let file = BufReader::new(open()?);
        Some(if gzip {
            Box::new(BufReader::new(MultiGzDecoder::new(file)))
        } else {
            Box::new(file)
        })
    };
    if alert::is_tar_head(&head) {
        Some(Large::Tar {
            tar: name,
            reader: reader()?,
        })
    } else if head.starts_with(b"Obj\x01") {
        Some(Large::Container {
            name,
            reader: reader()?,
        })
    } else if head.starts_with(b"PAR1") && !gzip {
        Some(Large::Parquet(SharedFile(Arc::new(open()?))))
    } else {
        None
    }
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

    /// The pieces of `file` alone, decoded ahead in pieces of 64 kB, checked to be in order and
    /// marked last only at the end, beside what decoding the file whole gives.
    fn pieces_and_whole(file: &Path) -> (Vec<Decoded>, Decoded) {
        let seen = pieces(&[file.to_path_buf()], 64 << 10);
        let last: Vec<bool> = seen.iter().map(|s| s.2).collect();
        let mut want = vec![false; seen.len() - 1];
        want.push(true);
        assert_eq!(last, want, "{}", file.display());
        let whole = decode_file(file, &DecodeOptions::default());
        (seen.into_iter().map(|s| s.1).collect(), whole)
    }

    fn joined(pieces: &[Decoded]) -> Decoded {
        let mut all = Decoded::default();
        for p in pieces {
            all.alerts.extend(p.alerts.iter().cloned());
            all.rejects.extend(p.rejects.iter().cloned());
        }
        all
    }

    /// A night of ZTF alerts written as one Avro container (a block per ~16 kB, plain and
    /// snappy) is read a few blocks at a time; cut short, it keeps every record before the damage
    /// and then names it.
    #[test]
    fn a_large_avro_container_is_read_in_pieces_that_add_up_to_decoding_it_whole() {
        use apache_avro::{Codec, Writer};
        let night = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/ztf/ztf_public_20180819_mod1000.tar.gz");
        let mut archive = tar::Archive::new(MultiGzDecoder::new(fs::File::open(night).unwrap()));
        let (mut schema, mut records) = (None, Vec::new());
        for entry in archive.entries().unwrap() {
            let mut data = Vec::new();
            entry.unwrap().read_to_end(&mut data).unwrap();
            let reader = apache_avro::Reader::new(data.as_slice()).unwrap();
            schema.get_or_insert_with(|| reader.writer_schema().clone());
            records.extend(reader.map(|r| r.unwrap()));
        }
        let schema = schema.expect("a packet");
        let dir = tempfile::tempdir().unwrap();
        for codec in [Codec::Null, Codec::Snappy] {
            let mut writer = Writer::with_codec(&schema, Vec::new(), codec).unwrap();
            for r in &records {
                writer.append_value_ref(r).unwrap();
            }
            let bytes = writer.into_inner().unwrap();
            let file = dir.path().join(format!("night-{codec:?}.avro"));
            fs::write(&file, &bytes).unwrap();
            let (pieces, whole) = pieces_and_whole(&file);
            assert!(pieces.len() > 3, "{} pieces", pieces.len());
            assert!(whole.rejects.is_empty(), "{:?}", whole.rejects);
            assert_eq!(whole.alerts.len(), records.len());
            let all = joined(&pieces);
            assert_eq!(all.alerts, whole.alerts, "{codec:?}");
            assert!(all.rejects.is_empty(), "{:?}", all.rejects);
            let most = pieces.iter().map(|p| p.alerts.len()).max();
            assert!(most < Some(whole.alerts.len() / 3), "{most:?}");
            // The same container in gzip, read through the decompressor.
            let gz = dir.path().join(format!("night-{codec:?}.avro.gz"));
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut encoder, &bytes).unwrap();
            fs::write(&gz, encoder.finish().unwrap()).unwrap();
            let (gz_pieces, gz_whole) = pieces_and_whole(&gz);
            assert!(gz_pieces.len() > 3, "{} pieces", gz_pieces.len());
            assert_eq!(joined(&gz_pieces).alerts, whole.alerts);
            assert_eq!(gz_whole.alerts, whole.alerts);

            let cut = dir.path().join(format!("cut-{codec:?}.avro"));
            fs::write(&cut, &bytes[..bytes.len() * 3 / 5]).unwrap();
            let (pieces, whole) = pieces_and_whole(&cut);
            let all = joined(&pieces);
            assert!(all.alerts.len() > records.len() / 3, "{}", all.alerts.len());
            assert!(all.alerts.len() < records.len());
            // What apache-avro's reader keeps of the cut file, decoded whole.
            assert_eq!(all.alerts, whole.alerts, "{codec:?}");
            assert_eq!(whole.rejects.len(), 1, "{:?}", whole.rejects);
            let reject = &pieces.last().unwrap().rejects;
            assert_eq!(
                reject.iter().map(|r| r.source.clone()).collect::<Vec<_>>(),
                [format!("{}#record {}", cut.display(), all.alerts.len())],
            );
            assert!(
                reject[0]
                    .error
                    .to_string()
                    .contains("truncated or corrupt container"),
                "{:?}",
                reject[0]
            );
        }
    }

    /// Fink's Parquet alerts rewritten three rows to a row group are read a row group (or less)
    /// at a time; a row group whose pages cannot be read is rejected and the others are kept.
    #[test]
    fn a_large_parquet_file_is_read_a_row_group_at_a_time_and_a_bad_row_group_alone_is_lost() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fink/tde_ZTF20abfcszi_202008.parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&source).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(3))
            .build();
        let mut bytes = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut bytes, batches[0].schema(), Some(props)).unwrap();
        for b in &batches {
            writer.write(b).unwrap();
        }
        let metadata = writer.close().unwrap();
        assert_eq!(metadata.num_row_groups(), 7);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tde.parquet");
        fs::write(&file, &bytes).unwrap();
        let original = decode_file(&source, &DecodeOptions::default());
        assert_eq!(original.alerts.len(), 21);
        let (pieces, whole) = pieces_and_whole(&file);
        assert!(pieces.len() >= 7, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.alerts.len() <= 3));
        assert_eq!(joined(&pieces).alerts, whole.alerts);
        assert_eq!(whole.alerts, original.alerts);
        assert!(whole.rejects.is_empty(), "{:?}", whole.rejects);

        // The first column chunk of the fourth row group (rows 9-11) overwritten.
        let chunk = metadata.row_group(3).column(0);
        let start = chunk
            .dictionary_page_offset()
            .unwrap_or(chunk.data_page_offset()) as usize;
        let mut broken = bytes.clone();
        broken[start..start + chunk.compressed_size() as usize].fill(0xff);
        let file = dir.path().join("broken.parquet");
        fs::write(&file, &broken).unwrap();
        let (pieces, whole) = pieces_and_whole(&file);
        let all = joined(&pieces);
        assert_eq!((&all.alerts, &all.rejects), (&whole.alerts, &whole.rejects));
        let mut kept = original.alerts.clone();
        kept.drain(9..12);
        assert_eq!(whole.alerts, kept);
        assert_eq!(whole.rejects.len(), 1, "{:?}", whole.rejects);
        assert_eq!(whole.rejects[0].source, file.to_string_lossy());
        let detail = whole.rejects[0].error.to_string();
        assert!(
            detail.contains("malformed file: row group 3 column 0"),
            "{detail}"
        );
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
