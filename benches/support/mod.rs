//! Helpers shared by the benches (each bench uses some of them).
#![allow(dead_code)]

use std::path::Path;

use asterism::alert::DecodeOptions;
use asterism::model::ObjectRecord;
use asterism::{source, synth};
use rayon::prelude::*;

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One record per real object in the given folders of data/.
pub fn real_records(folders: &[&str]) -> Vec<ObjectRecord> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let paths: Vec<_> = folders.iter().map(|p| root.join(p)).collect();
    let (files, _) = source::expand(&paths);
    let alerts: Vec<_> = files
        .par_iter()
        .flat_map_iter(|f| source::decode_file(f, &DecodeOptions::default()).alerts)
        .collect();
    synth::records(&alerts)
}
