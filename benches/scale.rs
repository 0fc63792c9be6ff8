//! Embedding and index figures at scale, on real lightcurves augmented to N objects.
//!
//! `cargo bench --bench scale -- [--objects 100000] [--queries 2000] [--churn 3] [--seed 1]
//! [--m 16] [--ef-construction 200]` (the HNSW parameters, defaults as the engine's)
//!
//! Prints one JSON object: embeddings/s (all threads and one), HNSW inserts/s, single-thread
//! queries/s and recall@10 against exact search for several ef_search, recall after every
//! object was re-embedded `churn` times (tombstones filtered), heap bytes per object of the
//! index, and, with `--engine N`, the whole engine ingesting N synthetic objects into RocksDB
//! (objects/s, heap and disk bytes per object). Runs once (no criterion): the 100k build alone
//! takes minutes on 2 cores.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use support::{arg, dir_bytes, real_records, rss_bytes};

use rayon::prelude::*;
use serde_json::json;

use asterism::embed::{Embedder, Scaler};
use asterism::index::{
    exact_knn, recall, Hit, HnswIndex, HnswParams, PointId, VectorInsert, VectorSearch,
};
use asterism::model::ObjectRecord;
use asterism::synth::{augment, truncate, Augment};

/// Counts live heap bytes, so the index's own memory can be told from the rest.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's own arguments, and
// only adds bookkeeping of the sizes; the contracts of GlobalAlloc are those of `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout as given to us; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through `alloc`/`realloc`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr`/`layout` come from this allocator; the caller upholds `realloc`'s rules.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn heap() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The whole engine: ingest `n` synthetic objects (one alert each) into a fresh store.
fn engine_phase(bases: &[ObjectRecord], n: usize, seed: u64) -> serde_json::Value {
    use asterism::engine::{Engine, EngineConfig};
    use asterism::store::StoreConfig;
    let dir = tempfile::tempdir().expect("tempdir");
    let how = Augment::default();
    let before = heap();
    let engine = Engine::open(
        &dir.path().join("db"),
        EngineConfig {
            store: StoreConfig { sync_writes: true },
            hnsw: HnswParams {
                capacity: n,
                ..HnswParams::default()
            },
            ..EngineConfig::default()
        },
    )
    .expect("open");
    let t = Instant::now();
    let mut batch_secs = Vec::new();
    for start in (0..n).step_by(1000) {
        let alerts: Vec<_> = (start..(start + 1000).min(n))
            .map(|i| augment(&bases[i % bases.len()], i as u64, seed, &how))
            .collect();
        let b = Instant::now();
        engine.apply(&alerts).expect("apply");
        batch_secs.push(b.elapsed().as_secs_f64());
    }
    let secs = t.elapsed().as_secs_f64();
    engine.checkpoint().expect("checkpoint");
    let heap_after = heap();
    batch_secs.sort_by(f64::total_cmp);
    let p99 = batch_secs[((batch_secs.len() as f64 * 0.99) as usize).min(batch_secs.len() - 1)];
    let t = Instant::now();
    drop(engine);
    let engine = Engine::open(&dir.path().join("db"), EngineConfig::default()).expect("reopen");
    let first = augment(&bases[0], 0, seed, &how).object_id;
    let answer = engine.similar(&first, 10, None).expect("first query");
    let restart = t.elapsed().as_secs_f64();
    assert_eq!(answer.len(), 10);
    json!({
        "objects": n,
        "ingest_objects_per_s": n as f64 / secs,
        "batch_of_1000_p99_s": p99,
        "engine_heap_bytes_per_object": (heap_after.saturating_sub(before)) as f64 / n as f64,
        "disk_bytes_per_object": dir_bytes(dir.path()) as f64 / n as f64,
        "restart_to_first_answer_s": restart,
        "restart_origin": format!("{:?}", engine.index_origin()),
    })
}

fn main() {
    let n = arg("--objects", 100_000);
    let queries = arg("--queries", 2000);
    let churn = arg("--churn", 3);
    let seed = arg("--seed", 1) as u64;
    let bases = real_records(&["lightcurves"]);
    let embedder = Embedder::new();
    let how = Augment::default();
    let make = |i: usize, fraction: f64| {
        let a = augment(&bases[i % bases.len()], i as u64, seed, &how);
        let a = if fraction < 1.0 {
            truncate(&a, fraction)
        } else {
            a
        };
        let mut r = ObjectRecord::new(a.object_id.clone(), a.survey);
        r.merge(&a);
        r
    };

    // Embeddings: generation is outside the timed region.
    let records: Vec<ObjectRecord> = (0..n).into_par_iter().map(|i| make(i, 1.0)).collect();
    let t = Instant::now();
    let raw: Vec<Vec<f64>> = records
        .par_iter()
        .map(|r| embedder.features(r, None))
        .collect();
    let embed_all = n as f64 / t.elapsed().as_secs_f64();
    let sample = n.min(5000);
    let t = Instant::now();
    for r in &records[..sample] {
        std::hint::black_box(embedder.features(r, None));
    }
    let embed_one = sample as f64 / t.elapsed().as_secs_f64();
    drop(records);

    let dim = embedder.dim();
    let mut m = ndarray::Array2::<f64>::zeros((n, dim));
    for (i, r) in raw.iter().enumerate() {
        for (j, x) in r.iter().enumerate() {
            m[[i, j]] = *x;
        }
    }
    let scaler = Scaler::fit(m.view());
    drop(m);
    let points: Vec<(PointId, Vec<f32>)> = raw
        .iter()
        .enumerate()
        .map(|(i, r)| (i as PointId, scaler.transform(r).0))
        .collect();
    drop(raw);

    let defaults = HnswParams::default();
    let params = HnswParams {
        capacity: n * (churn + 1),
        m: arg("--m", defaults.m),
        ef_construction: arg("--ef-construction", defaults.ef_construction),
        ..defaults
    };
    let heap0 = heap();
    let index = HnswIndex::new(HnswParams {
        capacity: n,
        ..params.clone()
    })
    .expect("params");
    let t = Instant::now();
    index.insert(&points);
    let inserts = n as f64 / t.elapsed().as_secs_f64();
    let index_heap = heap().saturating_sub(heap0);

    // Queries: objects of the index itself, the object excluded (as `similar` does).
    let step = (n / queries).max(1);
    let qids: Vec<usize> = (0..n).step_by(step).take(queries).collect();
    let exact: Vec<Vec<Hit>> = qids
        .iter()
        .map(|&q| exact_knn(points.par_iter(), &points[q].1, 10, &|p| p != q as PointId))
        .collect();
    let mut sweep = Vec::new();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    for ef in [16usize, 32, 64, 128] {
        let t = Instant::now();
        let got: Vec<Vec<Hit>> = pool.install(|| {
            qids.iter()
                .map(|&q| search_ef(&index, &points[q].1, ef, q as PointId))
                .collect()
        });
        let qps = qids.len() as f64 / t.elapsed().as_secs_f64();
        sweep.push(
            json!({"ef_search": ef, "queries_per_s": qps, "recall_at_10": recall(&got, &exact)}),
        );
    }

    // Churn: every object re-embedded `churn` times, each a new point; old ones tombstoned.
    let mut live: Vec<PointId> = (0..n as PointId).collect();
    let mut current = points.clone();
    let mut next = n as PointId;
    let t = Instant::now();
    for round in 0..churn {
        let fraction = 0.5 + 0.5 * (round as f64 + 1.0) / (churn as f64 + 1.0);
        let moved: Vec<(PointId, Vec<f32>)> = (0..n)
            .into_par_iter()
            .map(|i| {
                let r = make(i, fraction);
                (
                    next + i as PointId,
                    scaler.transform(&embedder.features(&r, None)).0,
                )
            })
            .collect();
        index.insert(&moved);
        for (i, (p, v)) in moved.into_iter().enumerate() {
            live[i] = p;
            current[i] = (p, v);
        }
        next += n as PointId;
    }
    let churn_secs = t.elapsed().as_secs_f64();
    let live_set: std::collections::HashSet<PointId> = live.iter().copied().collect();
    let exact_c: Vec<Vec<Hit>> = qids
        .iter()
        .map(|&q| {
            let own = live[q];
            exact_knn(current.par_iter(), &current[q].1, 10, &|p| p != own)
        })
        .collect();
    let got_c: Vec<Vec<Hit>> = qids
        .iter()
        .map(|&q| {
            let own = live[q];
            index.search(&current[q].1, 10, &|p| p != own && live_set.contains(&p))
        })
        .collect();
    let fresh = HnswIndex::new(params.clone()).expect("params");
    fresh.insert(&current);
    let got_f: Vec<Vec<Hit>> = qids
        .iter()
        .map(|&q| {
            let own = live[q];
            fresh.search(&current[q].1, 10, &|p| p != own)
        })
        .collect();

    let report = json!({
        "objects": n,
        "dim": dim,
        "threads": rayon::current_num_threads(),
        "embeddings_per_s": embed_all,
        "embeddings_per_s_one_thread": embed_one,
        "inserts_per_s": inserts,
        "hnsw": {"m": params.m, "ef_construction": params.ef_construction},
        "search_one_thread": sweep,
        "index_heap_bytes_per_object": index_heap as f64 / n as f64,
        "churn_rounds": churn,
        "churn_reembed_and_insert_per_s": (n * churn) as f64 / churn_secs,
        "recall_at_10_after_churn": recall(&got_c, &exact_c),
        "recall_at_10_fresh_same_vectors": recall(&got_f, &exact_c),
        "resident_bytes_total": rss_bytes(),
        "engine": (arg("--engine", 0) > 0).then(|| engine_phase(&bases, arg("--engine", 0), seed)),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
}

/// A search with a given ef on the built graph.
fn search_ef(index: &HnswIndex, q: &[f32], ef: usize, own: PointId) -> Vec<Hit> {
    index.search_with_ef(q, 10, ef, &|p| p != own)
}
