//! Bulk seeding at scale (`asterism ingest --bulk`, issue 14's 1M-in-15-minutes target): a
//! fresh store seeded with generated ZTF packets, one per object carrying its whole history
//! (`generate --backfill`: real Avro 4.02 made from the real lightcurves of data/), generated
//! and decoded in memory 20,000 at a time (1M objects' packets are ~25 GB: more than this
//! machine's free disk), then the second pass. Reports the engine's time for each pass and
//! step (generation is timed apart), memory, disk, and the recall@10 of the index and of the
//! stored lists against exact search on a sample.
//!
//! Usage: cargo bench --bench seed -- --objects N [--index usearch|hnsw_rs] [--queries Q]
//!        [--quantization f16|f32|i8] [--keep-db DIR]
//! Recall's truth is exact f32 search over the stored raw features under the spec, unrounded
//! (an f16 store's own vectors are rounded to half precision).
//! Prints progress on stderr and one JSON document on stdout. With --keep-db the store stays
//! (serve it with `benches/grpc.rs --db DIR --objects N`, `benches/panel.rs --db DIR`).

mod support;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use asterism::alert::write::PacketWriter;
use asterism::alert::{DecodeOptions, Decoded};
use asterism::engine::{Engine, EngineConfig};
use asterism::index::{IndexBackend, Quantization, UsearchParams};
use asterism::model::Survey;
use asterism::store::StoreConfig;
use asterism::synth::{AlertStream, StreamSpec};
use rayon::prelude::*;
use serde_json::json;
use support::{arg, arg_text, dir_bytes, encode_chunk, real_records, rss_bytes};

const PACKETS_PER_CHUNK: usize = 20_000;

fn main() {
    let objects = arg("--objects", 100_000);
    let queries = arg("--queries", 200);
    let backend = IndexBackend::from_name(&arg_text("--index", "usearch")).expect("--index");
    let quantization = match arg_text("--quantization", "f16").as_str() {
        "f32" => Quantization::F32,
        "f16" => Quantization::F16,
        "i8" => Quantization::I8,
        other => panic!("--quantization f16|f32|i8, not {other}"),
    };
    let keep: Option<PathBuf> = std::env::args()
        .skip_while(|a| a != "--keep-db")
        .nth(1)
        .map(Into::into);
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = keep.unwrap_or_else(|| tmp.path().join("db"));
    assert!(!db.exists(), "{} exists: give a new folder", db.display());

    let bases = real_records(&["lightcurves", "ztf", "fink"]);
    let rss_start = rss_bytes();
    let engine = Engine::open(
        &db,
        EngineConfig {
            store: StoreConfig {
                sync_writes: true,
                ..StoreConfig::default()
            },
            index: Some(backend),
            usearch: UsearchParams {
                quantization,
                ..UsearchParams::default()
            },
            ..EngineConfig::default()
        },
    )
    .expect("open");
    engine.skip_index_teardown();
    let writer = PacketWriter::new(Survey::Ztf).expect("packet schema");
    let mut stream = AlertStream::new(
        &bases,
        StreamSpec {
            objects,
            seed: 1,
            backfill: true,
            ..StreamSpec::for_survey(Survey::Ztf)
        },
    );
    let mut seed = engine.seed().expect("seed");
    let (mut generating, mut pass_one, mut packets) = (0.0, 0.0, 0usize);
    let started = Instant::now();
    loop {
        let g = Instant::now();
        let encoded = encode_chunk(&mut stream, &writer, PACKETS_PER_CHUNK);
        generating += g.elapsed().as_secs_f64();
        if encoded.is_empty() {
            break;
        }
        let t = Instant::now();
        let parts: Vec<Decoded> = encoded
            .par_iter()
            .map(|(name, bytes)| asterism::alert::decode(name, bytes, &DecodeOptions::default()))
            .collect();
        packets += encoded.len();
        drop(encoded);
        let mut decoded = Decoded::default();
        for p in parts {
            decoded.alerts.extend(p.alerts);
            decoded.rejects.extend(p.rejects);
        }
        seed.add(decoded).expect("seed pass one");
        pass_one += t.elapsed().as_secs_f64();
        eprintln!(
            "  pass one: {packets} packets, {:.0} s engine, {:.0} s generating, {:.0} s elapsed",
            pass_one,
            generating,
            started.elapsed().as_secs_f64()
        );
    }
    let rss_pass_one = rss_bytes();
    eprintln!("  pass two: embed, fit, index, link ...");
    let (report, pass) = seed.finish().expect("seed pass two");
    assert_eq!(report.alerts_rejected, 0, "{:?}", report.rejects.first());
    let rss_seeded = rss_bytes();

    eprintln!("  recall on {queries} sampled objects against exact search ...");
    let (ids, _) = engine.vectors();
    let vectors = unrounded(&engine, &ids);
    let step = (ids.len() / queries.max(1)).max(1);
    let sample: Vec<usize> = (0..ids.len()).step_by(step).take(queries).collect();
    let (index_hits, list_hits): (usize, usize) = sample
        .par_iter()
        .map(|&i| {
            let mut exact: Vec<(f32, usize)> = vectors
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, w)| (asterism::embed::l2(&vectors[i], w), j))
                .collect();
            exact.select_nth_unstable_by(10, |a, b| a.0.total_cmp(&b.0));
            let truth: HashSet<&str> = exact[..10].iter().map(|(_, j)| ids[*j].as_str()).collect();
            let searched = engine.similar(&ids[i], 10, None).expect("similar");
            let listed = engine.neighbours(&ids[i]).expect("list");
            (
                searched
                    .iter()
                    .filter(|n| truth.contains(n.object_id.as_str()))
                    .count(),
                listed
                    .iter()
                    .take(10)
                    .filter(|n| truth.contains(n.object_id.as_str()))
                    .count(),
            )
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let wanted = (sample.len() * 10) as f64;
    let engine_s = pass_one + pass.total_seconds;
    let doc = json!({
        "objects": pass.objects,
        "packets": packets,
        "index": backend.name(),
        "quantization": format!("{quantization:?}"),
        "machine_threads": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "generating_seconds": generating,
        "pass_one_seconds": pass_one,
        "pass_one_packets_per_s": packets as f64 / pass_one,
        "pass_two": pass,
        "engine_seconds": engine_s,
        "objects_per_s": pass.objects as f64 / engine_s,
        "rss_bytes": { "start": rss_start, "after_pass_one": rss_pass_one, "seeded": rss_seeded },
        "rss_per_object": (rss_seeded.saturating_sub(rss_start)) as f64 / pass.objects as f64,
        "disk_bytes_per_object": dir_bytes(&db) as f64 / pass.objects as f64,
        "recall_at_10": { "index": index_hits as f64 / wanted, "lists": list_hits as f64 / wanted, "sampled": sample.len() },
    });
    eprintln!(
        "seeded {} objects in {:.0} s of engine time ({:.0} objects/s; pass one {:.0} s, embed {:.0} s, index {:.0} s, link {:.0} s); recall@10 index {:.3}, lists {:.3}",
        pass.objects,
        engine_s,
        pass.objects as f64 / engine_s,
        pass_one,
        pass.embed_seconds,
        pass.index_seconds,
        pass.link_seconds,
        index_hits as f64 / wanted,
        list_hits as f64 / wanted,
    );
    println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
}

/// Every object's current vector in f32, unrounded: its latest stored raw features under the
/// engine's spec, in the order of `ids`.
fn unrounded(engine: &Engine, ids: &[String]) -> Vec<Vec<f32>> {
    let spec = engine.spec();
    let mut latest: HashMap<String, Vec<f32>> = HashMap::with_capacity(ids.len());
    // Versions come in key order (object id, then sequence): the last one is the current.
    engine
        .store()
        .for_each_vector(|id, _, v| {
            latest.insert(id.to_string(), v.raw);
        })
        .expect("stored vectors");
    ids.iter().map(|id| spec.scale(&latest[id]).0).collect()
}
