//! Input from the file system: expands paths into files and decodes each with [`crate::alert`].
//!
//! The only part of ingest that touches files, kept apart so the decoders stay pure. Imports
//! `alert`.

use std::fs;
use std::path::{Path, PathBuf};

use std::sync::Arc;

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
