//! Embedding and index figures at scale, on real lightcurves augmented to N objects.
//!
//! `cargo bench --bench scale -- [--objects 100000] [--queries 2000] [--churn 3] [--seed 1]
//! [--index hnsw_rs|usearch] [--quantization f32|f16|i8] [--m 16] [--ef-construction 200]`
//! (the index backend and its parameters, defaults as the engine's)
//!
//! Prints one JSON object: embeddings/s (all threads and one), index inserts/s, single-thread
//! queries/s and recall@10 against exact search for several ef_search (with f16/i8 vectors,
//! after an exact re-rank of 4 x 10 candidates, as the live index does), recall after every
//! object was re-embedded `churn` times (superseded points removed with usearch, filtered as
//! tombstones with hnsw_rs), memory per object of the index (resident set growth while it was
//! built, and for hnsw_rs the Rust heap, for usearch its own count of its C++ allocations),
//! the dump's size, the time to load it and to answer a first query from it (usearch also
//! from a memory-mapped view), and, with `--engine N`, the whole engine ingesting N synthetic
//! objects into RocksDB (objects/s, heap and disk bytes per object). Runs once (no
//! criterion): the 100k build alone takes minutes on 2 cores.
//!
//! `--vectors FILE.parquet` (the file `asterism export` writes) takes the index's points from
//! a kept store's embeddings instead of generating lightcurves, so that the slope of the index
//! at 1M, 3M and 10M points fits in memory: past the file's own vectors, point `i` is vector
//! `i mod B` plus Gaussian noise whose expected length is the median distance from a vector to
//! its nearest other one (so a copy is as near its original as the original's own nearest
//! neighbour). No embedding figures in that mode, and churn (default 0) moves each point to its
//! original plus fresh noise of the same size. `--save-points FILE` writes
//! the points as raw little-endian f32 rows, for `bench/peer/vectors.py` (hnswlib on the same
//! points and queries).

mod support;

use std::time::Instant;
use support::{arg, arg_text, dir_bytes, heap, real_records, rss_bytes, Counting};

use rayon::prelude::*;
use serde_json::json;

use asterism::embed::l2;
use asterism::embed::{Embedder, Scaler};
use asterism::index::{
    exact_knn, recall, AnyIndex, Hit, HnswParams, IndexBackend, IndexConfig, PointId, Quantization,
    UsearchIndex, UsearchParams, VectorInsert, VectorSearch,
};
use asterism::model::ObjectRecord;
use asterism::synth::{augment, truncate, Augment};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The whole engine: ingest `n` synthetic objects (one alert each) into a fresh store.
fn engine_phase(
    bases: &[ObjectRecord],
    n: usize,
    seed: u64,
    backend: IndexBackend,
) -> serde_json::Value {
    use asterism::engine::{Engine, EngineConfig};
    use asterism::store::StoreConfig;
    let dir = tempfile::tempdir().expect("tempdir");
    let how = Augment::default();
    let before = heap();
    let engine = Engine::open(
        &dir.path().join("db"),
        EngineConfig {
            store: StoreConfig {
                sync_writes: true,
                ..StoreConfig::default()
            },
            index: Some(backend),
            hnsw: HnswParams {
                capacity: n,
                ..HnswParams::default()
            },
            usearch: UsearchParams {
                capacity: n,
                ..UsearchParams::default()
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

/// `n` points from the embeddings of an exported store, noisy copies past its own count.
/// Returns the points, the number of exported vectors and the noise's standard deviation.
fn exported_points(path: &str, n: usize, seed: u64) -> (Vec<(PointId, Vec<f32>)>, usize, f32) {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float32Type;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).expect("--vectors: open");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("--vectors: a Parquet file")
        .build()
        .expect("--vectors: reader");
    let mut base: Vec<Vec<f32>> = Vec::new();
    for batch in reader {
        let batch = batch.expect("--vectors: batch");
        let column = batch
            .column_by_name("embedding")
            .expect("--vectors: an `embedding` column (asterism export)");
        let lists = column.as_list::<i32>();
        for row in 0..lists.len() {
            if lists.is_valid(row) {
                let v = lists.value(row);
                base.push(v.as_primitive::<Float32Type>().values().to_vec());
            }
        }
        if base.len() >= n {
            break;
        }
    }
    assert!(!base.is_empty(), "--vectors: no embeddings in {path}");
    base.truncate(n);
    let b = base.len();
    let dim = base[0].len();
    // The median nearest-neighbour distance of 200 exported vectors sets the noise.
    let step = (b / 200).max(1);
    let mut nearest: Vec<f32> = (0..b)
        .step_by(step)
        .take(200)
        .collect::<Vec<_>>()
        .par_iter()
        .map(|&q| {
            base.iter()
                .enumerate()
                .filter(|(i, _)| *i != q)
                .map(|(_, v)| l2(&base[q], v))
                .fold(f32::INFINITY, f32::min)
        })
        .collect();
    nearest.sort_by(f32::total_cmp);
    let sigma = nearest[nearest.len() / 2] / (dim as f32).sqrt();
    let copies: Vec<Vec<f32>> = (b..n)
        .into_par_iter()
        .map(|i| noisy(&base[i % b], sigma, seed, i as u64))
        .collect();
    let points = base
        .into_iter()
        .chain(copies)
        .enumerate()
        .map(|(i, v)| (i as PointId, v))
        .collect();
    (points, b, sigma)
}

/// `n` generated objects, embedded (timed) and scaled; the embedding rates and the scaler.
fn generated_points(
    embedder: &Embedder,
    make: &(dyn Fn(usize, f64) -> ObjectRecord + Sync),
    n: usize,
) -> (Vec<(PointId, Vec<f32>)>, serde_json::Value, Scaler) {
    // Generation is outside the timed region.
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
    let rates = json!({
        "generated_objects": n,
        "embeddings_per_s": embed_all,
        "embeddings_per_s_one_thread": embed_one,
    });
    (points, rates, scaler)
}

/// `v` plus Gaussian noise of standard deviation `sigma` per dimension, drawn from a generator
/// seeded by `seed` and `salt` (each point and churn round its own).
fn noisy(v: &[f32], sigma: f32, seed: u64, salt: u64) -> Vec<f32> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let normal = Normal::new(0.0f32, sigma.max(f32::MIN_POSITIVE)).expect("noise");
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt,
    );
    v.iter().map(|x| x + normal.sample(&mut rng)).collect()
}

/// How a churned object's next vector is made.
enum Source {
    /// Re-embedded from a longer cut of its generated lightcurve.
    Generated(Scaler),
    /// Its exported vector plus fresh noise of the same size as the copies'.
    Exported { sigma: f32 },
}

/// Milestones on stderr, with the time since start (a 10M build runs for most of an hour).
fn progress(start: Instant, what: &str) {
    eprintln!("[{:>7.1} s] {what}", start.elapsed().as_secs_f64());
}

fn main() {
    let start = Instant::now();
    let n = arg("--objects", 100_000);
    let queries = arg("--queries", 2000);
    let vectors = arg_text("--vectors", "");
    let churn = arg("--churn", if vectors.is_empty() { 3 } else { 0 });
    let seed = arg("--seed", 1) as u64;
    let backend_name = arg_text("--index", "hnsw_rs");
    let backend = IndexBackend::from_name(&backend_name).expect("--index hnsw_rs|usearch");
    let quantization = match arg_text("--quantization", "f32").as_str() {
        "f32" => Quantization::F32,
        "f16" => Quantization::F16,
        "i8" => Quantization::I8,
        other => panic!("--quantization f32|f16|i8, not {other}"),
    };
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

    let (points, points_from, source) = if vectors.is_empty() {
        let (points, embedded, scaler) = generated_points(&embedder, &make, n);
        (points, embedded, Source::Generated(scaler))
    } else {
        let (points, b, sigma) = exported_points(&vectors, n, seed);
        let from = json!({"file": vectors, "exported_vectors": b, "noise_sigma": sigma});
        (points, from, Source::Exported { sigma })
    };
    let n = points.len();
    let dim = points[0].1.len();
    progress(start, &format!("{n} points of {dim} dimensions"));
    let save = arg_text("--save-points", "");
    if !save.is_empty() {
        // Raw little-endian f32, row after row: what a peer (hnswlib) reads to search the
        // same points with the same queries.
        let bytes: Vec<u8> = points
            .iter()
            .flat_map(|(_, v)| v.iter().flat_map(|x| x.to_le_bytes()))
            .collect();
        std::fs::write(&save, bytes).expect("--save-points: write");
    }

    let defaults = HnswParams::default();
    let m = arg("--m", defaults.m);
    let ef_construction = arg("--ef-construction", defaults.ef_construction);
    let config = IndexConfig {
        backend,
        hnsw: HnswParams {
            capacity: n * (churn + 1),
            m,
            ef_construction,
            ..defaults
        },
        usearch: UsearchParams {
            connectivity: m,
            expansion_add: ef_construction,
            // The bare index is never marked built: every insertion, churn included, keeps
            // ef_construction candidates.
            expansion_add_live: ef_construction,
            // The sweep sets ef per query (USearch keeps max(expansion_search, wanted)).
            expansion_search: 16,
            quantization,
            capacity: n,
        },
    };
    config.validate().expect("params");
    let heap0 = heap();
    let rss0 = rss_bytes();
    let index = AnyIndex::new(&config).expect("params");
    let t = Instant::now();
    index.insert(&points);
    let inserts = n as f64 / t.elapsed().as_secs_f64();
    progress(start, &format!("built: {inserts:.0} inserts/s"));
    let index_heap = heap().saturating_sub(heap0);
    let index_rss = rss_bytes().saturating_sub(rss0);
    let usearch_bytes = match &index {
        AnyIndex::Usearch(u) => Some(u.memory_bytes() as f64 / n as f64),
        AnyIndex::Hnsw(_) => None,
    };
    let exact_distances = index.exact_distances();
    // Searches as the live index makes them: a quantized graph's candidates re-ranked.
    let search = |index: &AnyIndex,
                  vectors: &[(PointId, Vec<f32>)],
                  slot: &dyn Fn(PointId) -> usize,
                  q: &[f32],
                  ef: usize,
                  live: &(dyn Fn(PointId) -> bool + Sync)|
     -> Vec<Hit> {
        if exact_distances {
            return index.search_with_ef(q, 10, ef, live);
        }
        let mut hits: Vec<Hit> = index
            .search_with_ef(q, 40, ef.max(40), live)
            .into_iter()
            .map(|h| Hit {
                point: h.point,
                distance: l2(q, &vectors[slot(h.point)].1),
            })
            .collect();
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        hits.truncate(10);
        hits
    };

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
                .map(|&q| {
                    let own = q as PointId;
                    let slot = |p: PointId| p as usize;
                    search(&index, &points, &slot, &points[q].1, ef, &|p| p != own)
                })
                .collect()
        });
        let qps = qids.len() as f64 / t.elapsed().as_secs_f64();
        sweep.push(
            json!({"ef_search": ef, "queries_per_s": qps, "recall_at_10": recall(&got, &exact)}),
        );
    }

    // The dump, reloaded (and, for usearch, memory-mapped) to a first answer.
    let dump_dir = tempfile::tempdir().expect("tempdir");
    let basename = index.dump(dump_dir.path(), "scale").expect("dump");
    let dump_bytes = dir_bytes(dump_dir.path());
    progress(start, "searched and dumped");
    // Without churn the index is done with: dropped, so that the reload does not double it.
    let index = if churn > 0 {
        Some(index)
    } else {
        drop(index);
        None
    };
    let t = Instant::now();
    let loaded = AnyIndex::load(&config, dump_dir.path(), &basename).expect("load");
    let first = loaded.search(&points[1].1, 10, &|p| p != 1);
    let load_first_answer = t.elapsed().as_secs_f64();
    assert_eq!(first.len(), 10);
    drop(loaded);
    let view_first_answer = (backend == IndexBackend::Usearch).then(|| {
        let t = Instant::now();
        let view =
            UsearchIndex::view(dump_dir.path(), &basename, config.usearch.clone()).expect("view");
        let first = view.search(&points[1].1, 10, &|p| p != 1);
        assert_eq!(first.len(), 10);
        t.elapsed().as_secs_f64()
    });
    drop(dump_dir);
    progress(start, "reloaded");

    // Churn: every object re-embedded `churn` times, each a new point; old ones removed
    // (usearch) or tombstoned (hnsw_rs).
    let churned = index.map(|index| {
        let mut live: Vec<PointId> = (0..n as PointId).collect();
        let mut current = points.clone();
        let mut next = n as PointId;
        let t = Instant::now();
        for round in 0..churn {
            let fraction = 0.5 + 0.5 * (round as f64 + 1.0) / (churn as f64 + 1.0);
            let moved: Vec<(PointId, Vec<f32>)> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let v = match &source {
                        Source::Generated(scaler) => {
                            scaler
                                .transform(&embedder.features(&make(i, fraction), None))
                                .0
                        }
                        Source::Exported { sigma } => {
                            noisy(&points[i].1, *sigma, seed, next + i as PointId)
                        }
                    };
                    (next + i as PointId, v)
                })
                .collect();
            index.insert(&moved);
            for (i, (p, v)) in moved.into_iter().enumerate() {
                index.remove(live[i]);
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
        // Current points are numbered n·round + i: the slot of point p is p mod n.
        let slot = |p: PointId| (p % n as PointId) as usize;
        let ef = 64;
        let got_c: Vec<Vec<Hit>> = qids
            .iter()
            .map(|&q| {
                let own = live[q];
                let alive = |p: PointId| p != own && live_set.contains(&p);
                search(&index, &current, &slot, &current[q].1, ef, &alive)
            })
            .collect();
        let tombstones = index.len().saturating_sub(n);
        drop(index);
        let fresh = AnyIndex::new(&config).expect("params");
        fresh.insert(&current);
        let got_f: Vec<Vec<Hit>> = qids
            .iter()
            .map(|&q| {
                let own = live[q];
                search(&fresh, &current, &slot, &current[q].1, ef, &|p| p != own)
            })
            .collect();
        json!({
            "churn_reembed_and_insert_per_s": (n * churn) as f64 / churn_secs,
            "tombstones_after_churn": tombstones,
            "recall_at_10_after_churn_ef64": recall(&got_c, &exact_c),
            "recall_at_10_fresh_same_vectors_ef64": recall(&got_f, &exact_c),
        })
    });

    let report = json!({
        "objects": n,
        "dim": dim,
        "threads": rayon::current_num_threads(),
        "points_from": points_from,
        "index": backend.name(),
        "inserts_per_s": inserts,
        "graph": {"m": m, "ef_construction": ef_construction},
        "quantization": format!("{quantization:?}"),
        "search_one_thread": sweep,
        "index_rss_bytes_per_object": index_rss as f64 / n as f64,
        "index_rust_heap_bytes_per_object": index_heap as f64 / n as f64,
        "usearch_memory_usage_bytes_per_object": usearch_bytes,
        "dump_bytes_per_object": dump_bytes as f64 / n as f64,
        "load_dump_to_first_answer_s": load_first_answer,
        "view_dump_to_first_answer_s": view_first_answer,
        "churn_rounds": churn,
        "churn": churned,
        "resident_bytes_total": rss_bytes(),
        "engine": (arg("--engine", 0) > 0)
            .then(|| engine_phase(&bases, arg("--engine", 0), seed, backend)),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
}
