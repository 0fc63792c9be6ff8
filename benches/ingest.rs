//! Decode and store throughput on the real packets of `data/` (alerts/s).
//!
//! `cargo bench --bench ingest`. Inputs are read into memory once; `decode` times the pure
//! decoders over every packet file, `store` times merging the decoded alerts into a fresh
//! RocksDB (one atomic batch per 1000 alerts, WAL on, with and without fsync).

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use asterism::alert::{self, DecodeOptions};
use asterism::engine::{Engine, EngineConfig};
use asterism::model::Alert;
use asterism::source;
use asterism::store::StoreConfig;

/// The packet files of `data/` (ZTF of every schema version, Fink Avro and Parquet, Rubin).
fn packet_files() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let dirs: Vec<PathBuf> = ["ztf", "fink", "lsst"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    let (files, _) = source::expand(&dirs);
    files
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).expect("read data file");
            (f.to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

fn decode_all(files: &[(String, Vec<u8>)]) -> Vec<Alert> {
    let opts = DecodeOptions::default();
    files
        .iter()
        .flat_map(|(name, bytes)| alert::decode(name, bytes, &opts).alerts)
        .collect()
}

fn bench_decode(c: &mut Criterion) {
    let files = packet_files();
    let n = decode_all(&files).len() as u64;
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(n));
    group.bench_function(format!("{n}_real_packets"), |b| {
        b.iter(|| decode_all(&files))
    });
    group.finish();
}

fn bench_store(c: &mut Criterion) {
    let alerts = decode_all(&packet_files());
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(alerts.len() as u64));
    group.sample_size(20);
    for sync in [false, true] {
        let name = format!("{}_alerts_sync_{sync}", alerts.len());
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let engine = Engine::open(
                        &dir.path().join("db"),
                        EngineConfig {
                            store: StoreConfig { sync_writes: sync },
                            batch_size: 1000,
                            ..EngineConfig::default()
                        },
                    )
                    .expect("open");
                    (dir, engine)
                },
                |(dir, engine)| {
                    for chunk in alerts.chunks(1000) {
                        engine.apply(chunk).expect("apply");
                    }
                    (dir, engine)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_store);
criterion_main!(benches);
