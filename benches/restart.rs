//! Restart and memory of a kept store (issue 14's W3 and W4): a fresh process opens `--db`,
//! answers a first FindSimilar, then the other reads once, computes the anomaly scores' first
//! pass and waits for the background loads (the reverse graph) to settle.
//!
//! `cargo bench --bench restart -- --db DIR [--settle-seconds 30]`
//!
//! Prints one JSON object: seconds to open and to the first answer, and at each stage the
//! resident set (RSS), the live Rust heap (a counting allocator) and what the C++ parts report
//! of theirs (`Engine::memory`: USearch's graph, RocksDB's cache, memtables and table readers),
//! in total and per object.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{arg, arg_text, heap, rss_bytes, Counting};

use asterism::engine::{Engine, EngineConfig};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn stage(engine: &Engine, name: &str, objects: usize, started: Instant) -> serde_json::Value {
    let rss = rss_bytes();
    let memory = engine.memory();
    let heap = heap();
    eprintln!(
        "{name}: {:.1} s, RSS {:.0} MB, heap {:.0} MB, index graph {:.0} MB, RocksDB cache {:.0} \
         MB, memtables {:.0} MB, table readers {:.0} MB",
        started.elapsed().as_secs_f64(),
        rss as f64 / 1e6,
        heap as f64 / 1e6,
        memory.index_graph_bytes.unwrap_or(0) as f64 / 1e6,
        memory.store.block_cache_bytes as f64 / 1e6,
        memory.store.memtable_bytes as f64 / 1e6,
        memory.store.table_readers_bytes as f64 / 1e6,
    );
    json!({
        "stage": name,
        "seconds": started.elapsed().as_secs_f64(),
        "rss_bytes": rss,
        "heap_bytes": heap,
        "rss_bytes_per_object": rss as f64 / objects.max(1) as f64,
        "heap_bytes_per_object": heap as f64 / objects.max(1) as f64,
        "index_graph_bytes": memory.index_graph_bytes,
        "rocksdb": memory.store,
    })
}

fn main() {
    let db = PathBuf::from(arg_text("--db", ""));
    assert!(
        db.is_dir(),
        "--db DIR: a store written by `asterism ingest` (or `cargo bench --bench seed -- --keep-db DIR`)"
    );
    let settle = Duration::from_secs(arg("--settle-seconds", 30) as u64);
    let started = Instant::now();
    let rss0 = rss_bytes();
    let engine = Engine::open(&db, EngineConfig::default()).expect("open");
    let open_s = started.elapsed().as_secs_f64();
    let objects = engine.indexed();
    let mut stages = vec![stage(&engine, "open", objects, started)];

    let mut first = None;
    engine
        .store()
        .for_each_object(|r| {
            first = Some(r.object_id);
            false
        })
        .expect("an object");
    let id = first.expect("the store holds objects");
    let hits = engine.similar(&id, 10, None).expect("similar");
    assert_eq!(hits.len(), 10, "ten neighbours of {id}");
    let first_answer_s = started.elapsed().as_secs_f64();
    stages.push(stage(&engine, "first FindSimilar", objects, started));

    engine.object(&id).expect("GetObject");
    engine.classify(&id).expect("Classify");
    engine.explain(&id, &hits[0].object_id).expect("Explain");
    stages.push(stage(
        &engine,
        "GetObject, Classify, Explain",
        objects,
        started,
    ));

    let anomaly_s = support::anomaly_first_pass(&engine);
    stages.push(stage(&engine, "anomaly scores", objects, started));

    std::thread::sleep(settle);
    stages.push(stage(&engine, "settled", objects, started));

    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "db": db,
            "backend": engine.index_backend().name(),
            "objects": objects,
            "rss_before_open_bytes": rss0,
            "open_seconds": open_s,
            "first_answer_seconds": first_answer_s,
            "anomaly_first_pass_seconds": anomaly_s,
            "stages": stages,
        }))
        .expect("json")
    );
}
