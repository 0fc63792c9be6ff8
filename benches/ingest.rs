//! Decode and store throughput on the real packets of `data/` (alerts/s).
//!
//! `cargo bench --bench ingest`. Inputs are read into memory once; `decode` times the pure
//! decoders over every packet file, `decode_generated` over generated packets of the same
//! objects as ZTF containers, Rubin containers and Rubin framed datums, `store` times merging the decoded alerts into a fresh
//! RocksDB (one atomic batch per 1000 alerts, WAL on, with and without fsync).

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use std::sync::Arc;

use asterism::alert::write::{LsstWriter, Packet, PacketWriter};
use asterism::alert::{self, AvroSchema, DecodeOptions};
use asterism::engine::{Engine, EngineConfig};
use asterism::model::{Alert, Survey};
use asterism::source;
use asterism::store::StoreConfig;
use asterism::synth::{self, AlertStream, StreamSpec};

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

    // Generated packets of the same objects, one format at a time.
    let records = synth::records(&decode_all(&packet_files()));
    let spec = |survey| StreamSpec {
        objects: 200,
        ..StreamSpec::for_survey(survey)
    };
    let ztf: Vec<Packet> = AlertStream::new(&records, spec(Survey::Ztf)).collect();
    let lsst: Vec<Packet> = AlertStream::new(&records, spec(Survey::Lsst)).collect();
    let encode = |survey, packets: &[Packet], framed: bool| -> Vec<(String, Vec<u8>)> {
        let writer = PacketWriter::new(survey).expect("schema");
        packets
            .iter()
            .map(|p| {
                let bytes = if framed {
                    writer.write_framed(p, 1000)
                } else {
                    writer.write(p)
                };
                (format!("{}.avro", p.candid), bytes.expect("encode"))
            })
            .collect()
    };
    let framed_opts = DecodeOptions {
        confluent_schema: Some(Arc::new(
            AvroSchema::parse(&LsstWriter::schema_texts()).expect("LSST schema"),
        )),
        ..Default::default()
    };
    let inputs = [
        (
            "ztf_container",
            encode(Survey::Ztf, &ztf, false),
            DecodeOptions::default(),
        ),
        (
            "lsst_container",
            encode(Survey::Lsst, &lsst, false),
            DecodeOptions::default(),
        ),
        (
            "lsst_framed",
            encode(Survey::Lsst, &lsst, true),
            framed_opts,
        ),
    ];
    let mut group = c.benchmark_group("decode_generated");
    for (name, packets, opts) in &inputs {
        group.throughput(Throughput::Elements(packets.len() as u64));
        group.bench_function(format!("{}_{name}", packets.len()), |b| {
            b.iter(|| {
                packets
                    .iter()
                    .map(|(n, bytes)| alert::decode(n, bytes, opts).alerts.len())
                    .sum::<usize>()
            })
        });
    }
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
                            store: StoreConfig {
                                sync_writes: sync,
                                ..StoreConfig::default()
                            },
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
