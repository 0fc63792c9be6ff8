//! Helpers shared by the integration tests: paths into `data/`, a fresh store in a temp dir.
#![allow(dead_code)]

pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod served;
pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
        store: StoreConfig {
            sync_writes: false,
            ..StoreConfig::default()
        },
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
    session.finish().expect("ingest")
}

/// The official LSST 10.0 sample alert re-framed as Rubin's Kafka stream sends it: magic byte
/// 0, a 4-byte schema id (673), then one datum written with the split schema files of
/// `data/schema/lsst-10.0`.
pub fn rubin_confluent_datum() -> Vec<u8> {
    let dir = data("schema/lsst-10.0");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
        .collect();
    // Named types must be defined before the alert record that uses them.
    files.sort_by_key(|f| f.to_string_lossy().contains(".alert."));
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let schemata = apache_avro::Schema::parse_list(&texts).unwrap();
    let main = schemata
        .iter()
        .find(|s| s.name().is_some_and(|n| n.name() == "alert"))
        .unwrap();
    let bytes = std::fs::read(dir.join("fakeAlert.avro")).unwrap();
    let value = apache_avro::Reader::new(&bytes[..])
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(main)
        .schemata(schemata.iter().collect())
        .unwrap()
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    let mut framed = vec![0u8, 0, 0, 2, 161];
    framed.extend_from_slice(&datum);
    framed
}

/// Starts `asterism serve --db DB --addr 127.0.0.1:0` with `extra` flags and `envs`; returns
/// the process and its gRPC address (printed at start). Its stdout is drained on a thread so
/// that the server never blocks on a full pipe.
pub fn serve_process(db: &Path, extra: &[&str], envs: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(["serve", "--db"])
        .arg(db)
        .args(["--addr", "127.0.0.1:0"])
        .args(extra)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run asterism serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .expect("a line of stdout");
        if let Some(a) = line.split(" on ").nth(1) {
            break a.trim().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}
