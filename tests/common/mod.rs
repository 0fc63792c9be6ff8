//! Helpers shared by the integration tests: paths into `data/`, a fresh store in a temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use asterism::alert::{DecodeOptions, Decoded};
use asterism::engine::{Engine, EngineConfig, IngestReport};
use asterism::source;
use asterism::store::StoreConfig;

pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

pub fn decode(rel: &str) -> Decoded {
    source::decode_file(&data(rel), &DecodeOptions::default())
}

pub fn config() -> EngineConfig {
    EngineConfig {
        store: StoreConfig { sync_writes: false },
        batch_size: 1000,
        ..EngineConfig::default()
    }
}

pub fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(&dir.path().join("db"), config()).expect("open store");
    (dir, engine)
}

/// Ingests files or directories under `data/` the way `asterism ingest` does.
pub fn ingest(engine: &Engine, rels: &[&str]) -> IngestReport {
    let paths: Vec<PathBuf> = rels.iter().map(|r| data(r)).collect();
    let (files, bad) = source::expand(&paths);
    assert!(bad.is_empty(), "unreadable inputs: {bad:?}");
    let mut session = engine.session();
    for f in files {
        session
            .add(source::decode_file(&f, &DecodeOptions::default()))
            .expect("ingest");
    }
    session.finish()
}
