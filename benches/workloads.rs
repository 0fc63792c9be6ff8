//! W1–W5 of BENCHMARKS.md in one run, with the Python peer alternately on the same packets.
//!
//! ```sh
//! cargo bench --bench workloads -- --objects 10000 --churn 2 --queries 1000 --runs 2
//! ```
//!
//! 1. A generated stream (`asterism::synth::AlertStream`, seed 1) of `--objects` objects is
//!    written as tar files of real ZTF 4.02 Avro packets (Rubin 10.0 with `--lsst`) in a temp
//!    folder.
//! 2. W1: those files are decoded (2 threads) and stored batch by batch through
//!    `Engine::apply` into a fresh RocksDB with fsync; alerts/s sustained over the run, and the
//!    p99 of a batch's commit time (a packet is queryable when its batch commits); and how
//!    far each new embedding of a sampled object moved from the one before it, over the
//!    object's 10th-neighbour distance (`drift`).
//! 3. W3: resident memory (RSS growth) and disk per object.
//! 4. W2: recall@10 of `similar` against exact search over the same vectors, in-process
//!    queries/s on one thread; then the store is served over gRPC and FindSimilar p50/p99 is
//!    timed idle and while the first churn round streams in over `Ingest`.
//! 5. W5: `--churn` rounds re-observe every object (the same objects, new epochs), so each is
//!    re-embedded per round; recall@10 after, against a fresh index on the same vectors.
//! 6. W4: the server stops (index dump written), the store is reopened: time to the first
//!    answered query.
//! 7. The peer (`bench/peer/peer.py`, with `--python`, default the venv of bench/peer/README.md)
//!    and Asterism (a fresh store, no fsync, as the peer keeps nothing) alternately `--runs`
//!    times on the files of step 1; the ratio of packets/s.
//!
//! With `--stream` nothing is written to disk: each chunk of the stream is generated in
//! memory, then decoded and stored (the generator and the engine take turns, so W1 counts only
//! the engine's time); churn rounds cover the first `--churn-objects` objects; the peer, which
//! reads files, is skipped. This is how the 1M-object figures are made:
//!
//! With `--backfill` (and `--stream`) the store is first seeded with one packet per object,
//! each carrying the object's whole lightcurve as history, as a broker seeds a store from an
//! archive; W1 is then the live stream of `--live-objects` further objects, one alert per
//! detection, into the seeded store. This is how the 1M-object figures are made:
//!
//! ```sh
//! cargo bench --bench workloads -- --stream --backfill --objects 1000000 \
//!     --live-objects 20000 --churn 1 --churn-objects 10000 --queries 1000
//! ```
//!
//! `--lsst` makes the stream Rubin packets (LSST schema 10.0, fluxes in nJy, 12 months of
//! history) instead of ZTF ones; the peer, which reads ZTF packets, is then skipped.
//!
//! `--keep-db PATH` keeps the store in PATH after the run (W4 can then be profiled on it).
//!
//! `--reopen PATH` measures a store a run kept, without ingesting anything: W4 (open, then the
//! first answer), W2 in process and FindSimilar over gRPC idle, so that a change to the query
//! path or the open can be measured at 1M objects without another 85-minute run:
//!
//! ```sh
//! cargo bench --bench workloads -- --reopen /var/tmp/w1m-db --queries 1000
//! ```
//!
//! W2 there is the steady state: measured once the reverse graph has loaded, FindSimilar over
//! gRPC both while the server's startup anomaly pass runs and once it is done. With
//! `--ef-sweep 16,32,64,128` it then sweeps `Engine::similar`'s ef_search (USearch stores) on
//! the same queries, for the comparison with `bench/peer/vectors.py` (hnswlib) on the points
//! `asterism export` writes of the same store.
//!
//! `--live-into PATH` streams `--live-objects N` new objects (numbers `--first-object`, default
//! 1,000,000, on; `--seed`, default 5) into a kept store (a bulk-seeded one: `benches/seed.rs
//! --keep-db`): W1 at that store's size in minutes, the drift of their embeddings, recall@10 of
//! the index and the lists, and whether the lists of other objects took them in (the relink's
//! reverse recall). It writes into PATH: give it a copy. `--insert-expansion N` streams with
//! USearch keeping N candidates per insertion (`Engine::set_insert_expansion`) instead of the
//! store's recorded `expansion_add`; `--block-cache-mib N` sizes RocksDB's shared block cache
//! (default 64, as `asterism ingest`); `--relink-delay N` relinks each object N batches after
//! the one that re-embedded it (`asterism ingest --relink-delay N`; 0 relinks in the batch),
//! the last ones written after the stream, in its time.
//!
//! ```sh
//! cargo bench --bench workloads -- --live-into /var/tmp/seed1m-w1 --live-objects 10000 --queries 200
//! ```
//!
//! With `--fresh` it also builds a fresh graph of the store's backend and settings from the
//! same vectors and reports its recall beside the live graph's (W5). Streaming stored objects
//! again (`--first-object 0` and a `--seed` other than the seed's) makes that a churn run:
//!
//! ```sh
//! cargo bench --bench workloads -- --live-into /var/tmp/seed1m-w5 --first-object 0 \
//!     --live-objects 10000 --seed 2 --fresh --queries 200
//! ```
//!
//! Progress goes to stderr; a table to stderr and one JSON document to stdout at the end.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asterism::alert::write::PacketWriter;
use asterism::alert::DecodeOptions;
use asterism::embed::l2;
use asterism::engine::{AnomalyQuery, Engine, EngineConfig, DEFAULT_RELINK_DELAY};
use asterism::index::{exact_knn, numbered, VectorInsert, VectorSearch};
use asterism::model::Survey;
use asterism::server::{serve, Access, ServerConfig};
use asterism::source;
use asterism::store::StoreConfig;
use asterism::synth::{AlertStream, StreamSpec};
use rayon::prelude::*;
use serde_json::{json, Value};
use support::{
    arg, authed, client, dir_bytes, encode_chunk, find_similar, latency, packets, real_records,
    rss_bytes, TOKEN,
};

const PACKETS_PER_FILE: usize = 5_000;

/// Packets generated and decoded together in `--stream` mode (~26 kB each).
const PACKETS_PER_CHUNK: usize = 20_000;

/// Alerts per engine batch, as `asterism ingest` and the server commit them.
const BATCH: usize = 1000;

/// Writes the stream as tar files of `.avro` packets; returns the files and the packet count.
fn write_stream(
    bases: &[asterism::model::ObjectRecord],
    spec: StreamSpec,
    dir: &Path,
) -> (Vec<PathBuf>, usize) {
    std::fs::create_dir_all(dir).expect("stream dir");
    let writer = PacketWriter::new(spec.survey).expect("packet schema");
    let mut stream = AlertStream::new(bases, spec);
    let (mut files, mut packets) = (Vec::new(), 0);
    loop {
        let encoded = encode_chunk(&mut stream, &writer, PACKETS_PER_FILE);
        if encoded.is_empty() {
            break;
        }
        let path = dir.join(format!("alerts-{:06}.tar", files.len()));
        source::write_packet_tar(&path, &encoded).expect("tar file");
        packets += encoded.len();
        files.push(path);
    }
    (files, packets)
}

fn open(db: &Path, sync: bool) -> Engine {
    Engine::open(
        db,
        EngineConfig {
            store: StoreConfig {
                sync_writes: sync,
                // `--block-cache-mib N`: RocksDB's shared block cache (default 64).
                block_cache_bytes: arg("--block-cache-mib", 64) << 20,
                ..StoreConfig::default()
            },
            // `--relink-delay N`: each object relinked N batches later (0: in its batch).
            relink_delay: arg("--relink-delay", DEFAULT_RELINK_DELAY as usize) as u64,
            ..EngineConfig::default()
        },
    )
    .expect("open store")
}

/// What a W1-style ingest measured.
#[derive(Default)]
struct Ingested {
    alerts: usize,
    /// Seconds the engine spent decoding and storing.
    seconds: f64,
    /// Seconds spent generating and encoding packets (`--stream` only).
    generating_seconds: f64,
    /// Each batch's commit time.
    batches: Vec<Duration>,
    /// Seconds spent decoding: part of `seconds` where generation and ingest take turns,
    /// beside the writes for files ([`source::decode_ahead`]).
    decode_seconds: f64,
    /// Seconds the writes waited for decoded files (files only): the decoding not hidden.
    decode_wait_seconds: f64,
    /// The batches' commit time by step.
    steps: BTreeMap<&'static str, f64>,
}

impl Ingested {
    /// Stores decoded alerts batch by batch.
    fn apply(&mut self, engine: &Engine, decoded: asterism::alert::Decoded) {
        assert!(decoded.rejects.is_empty(), "{:?}", decoded.rejects.first());
        for chunk in decoded.alerts.chunks(BATCH) {
            let b = Instant::now();
            let outcome = engine.apply(chunk).expect("apply");
            self.batches.push(b.elapsed());
            for (step, d) in outcome.times.steps() {
                *self.steps.entry(step).or_default() += d.as_secs_f64();
            }
            self.alerts += chunk.len();
        }
    }

    fn progress(&self, started: Instant) {
        eprintln!(
            "  {} alerts, {:.0} alerts/s (engine time), {:.0} s elapsed",
            self.alerts,
            self.alerts as f64 / self.seconds,
            started.elapsed().as_secs_f64()
        );
    }
}

/// Decodes and stores `files` as `asterism ingest` does: each round of files decoded while
/// the round before is stored ([`source::decode_ahead`]).
fn ingest_files(engine: &Engine, files: &[PathBuf]) -> Ingested {
    let started = Instant::now();
    let mut out = Ingested::default();
    // As an ingest session does: full batches whatever the pieces' sizes, the rest at the end.
    let mut pending = asterism::alert::Decoded::default();
    let ahead = source::decode_ahead(files, &DecodeOptions::default(), |piece| {
        pending.alerts.extend(piece.decoded.alerts);
        pending.rejects.extend(piece.decoded.rejects);
        let rest = pending.alerts.len() % BATCH;
        let tail = pending.alerts.split_off(pending.alerts.len() - rest);
        out.apply(engine, std::mem::take(&mut pending));
        pending.alerts = tail;
        out.seconds = started.elapsed().as_secs_f64();
        out.progress(started);
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap_or_else(|never| match never {});
    out.apply(engine, pending);
    // A deferred relink leaves the last batches' lists: their write is part of the stream.
    engine.relink_unlinked().expect("the last deferred relink");
    out.seconds = started.elapsed().as_secs_f64();
    out.decode_seconds = ahead.decoding.as_secs_f64();
    out.decode_wait_seconds = ahead.waiting.as_secs_f64();
    out
}

/// Generates `spec`'s stream chunk by chunk in memory, each chunk decoded packet by packet (in
/// parallel) and stored; generation and ingest take turns, and only the latter is timed as
/// the engine's.
fn ingest_generated(
    engine: &Engine,
    bases: &[asterism::model::ObjectRecord],
    spec: StreamSpec,
) -> Ingested {
    let writer = PacketWriter::new(spec.survey).expect("packet schema");
    let mut stream = AlertStream::new(bases, spec);
    let started = Instant::now();
    let mut out = Ingested::default();
    for chunk_no in 0.. {
        let g = Instant::now();
        let encoded = encode_chunk(&mut stream, &writer, PACKETS_PER_CHUNK);
        out.generating_seconds += g.elapsed().as_secs_f64();
        if encoded.is_empty() {
            break;
        }
        let t = Instant::now();
        let parts: Vec<asterism::alert::Decoded> = encoded
            .par_iter()
            .map(|(name, bytes)| asterism::alert::decode(name, bytes, &DecodeOptions::default()))
            .collect();
        out.decode_seconds += t.elapsed().as_secs_f64();
        drop(encoded);
        let mut decoded = asterism::alert::Decoded::default();
        for p in parts {
            decoded.alerts.extend(p.alerts);
            decoded.rejects.extend(p.rejects);
        }
        out.apply(engine, decoded);
        out.seconds += t.elapsed().as_secs_f64();
        if chunk_no % 10 == 0 {
            out.progress(started);
        }
    }
    // A deferred relink leaves the last batch's lists: their write is part of the stream.
    let t = Instant::now();
    engine.relink_unlinked().expect("the last deferred relink");
    out.seconds += t.elapsed().as_secs_f64();
    out.progress(started);
    out
}

/// Recall@10 of the engine's index against exact search on its current vectors, and the
/// single-thread queries/s of `similar`; with the ids of those vectors.
fn index_quality(engine: &Engine, queries: usize, compare_fresh: bool) -> (Value, Vec<String>) {
    let (ids, vectors) = engine.vectors();
    let points = numbered(vectors);
    let step = (ids.len() / queries.max(1)).max(1);
    let sample: Vec<usize> = (0..ids.len()).step_by(step).take(queries).collect();
    let t = Instant::now();
    let mut took = Vec::with_capacity(sample.len());
    let answers: Vec<Vec<String>> = sample
        .iter()
        .map(|&i| {
            let asked = Instant::now();
            let hits = engine.similar(&ids[i], 10, None).expect("similar");
            took.push(asked.elapsed());
            hits.into_iter().map(|n| n.object_id).collect()
        })
        .collect();
    // More passes over the same queries until 3 s have gone: one pass of 2,000 queries
    // takes under a second, too short for a steady rate on this shared machine.
    let mut asked = sample.len();
    while t.elapsed().as_secs_f64() < 3.0 {
        for &i in &sample {
            engine.similar(&ids[i], 10, None).expect("similar");
        }
        asked += sample.len();
    }
    let qps = asked as f64 / t.elapsed().as_secs_f64();
    // The stored kNN graph: each sampled object's list as the batches left it.
    let t = Instant::now();
    let lists: Vec<Vec<String>> = sample
        .iter()
        .map(|&i| {
            engine
                .neighbours(&ids[i])
                .expect("neighbour list")
                .into_iter()
                .map(|n| n.object_id)
                .collect()
        })
        .collect();
    let lists_per_s = sample.len() as f64 / t.elapsed().as_secs_f64();
    // A fresh graph of the store's own backend and settings, built in one pass over the same
    // vectors: what the live graph is compared with after churn (W5).
    let fresh = compare_fresh.then(|| {
        let t = Instant::now();
        let index = engine.empty_index(points.len()).expect("index");
        index.insert(&points);
        eprintln!(
            "  fresh {:?} index of {} points built in {:.0} s",
            engine.index_backend(),
            points.len(),
            t.elapsed().as_secs_f64()
        );
        index
    });
    let (mut hits, mut list_hits, mut fresh_hits, mut total) = (0usize, 0usize, 0usize, 0usize);
    for ((&i, got), list) in sample.iter().zip(&answers).zip(&lists) {
        let truth: Vec<&String> =
            exact_knn(points.par_iter(), &points[i].1, 10, &|p| p as usize != i)
                .iter()
                .map(|h| &ids[h.point as usize])
                .collect();
        hits += got.iter().filter(|g| truth.contains(g)).count();
        list_hits += list.iter().filter(|g| truth.contains(g)).count();
        if let Some(fresh) = &fresh {
            fresh_hits += fresh
                .search(&points[i].1, 10, &|p| p as usize != i)
                .iter()
                .filter(|h| truth.contains(&&ids[h.point as usize]))
                .count();
        }
        total += truth.len();
    }
    let mut out = json!({
        "objects": ids.len(),
        "queries": sample.len(),
        "recall_at_10": hits as f64 / total.max(1) as f64,
        "queries_per_s_1_thread": qps,
        "in_process_first_pass": latency(took),
        "graph_list_recall_at_10": list_hits as f64 / total.max(1) as f64,
        "graph_lists_per_s_1_thread": lists_per_s,
    });
    if fresh.is_some() {
        out["fresh_index_recall_at_10"] = json!(fresh_hits as f64 / total.max(1) as f64);
    }
    (out, ids)
}

/// `--ef-sweep 16,32,64`: `Engine::similar`'s recall@10 and queries/s (1 thread, each ef's
/// queries repeated for at least 3 s) at each ef_search, on the queries and truth of
/// [`index_quality`]: the engine's side of the comparison with hnswlib on the same vectors
/// (`bench/peer/vectors.py` on the points `asterism export` writes).
fn ef_sweep(engine: &Engine, efs: &[usize], queries: usize) -> Value {
    let (ids, vectors) = engine.vectors();
    let points = numbered(vectors);
    let step = (ids.len() / queries.max(1)).max(1);
    let sample: Vec<usize> = (0..ids.len()).step_by(step).take(queries).collect();
    let truth: Vec<Vec<&String>> = sample
        .iter()
        .map(|&i| {
            exact_knn(points.par_iter(), &points[i].1, 10, &|p| p as usize != i)
                .iter()
                .map(|h| &ids[h.point as usize])
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    for &ef in efs {
        if !engine.set_search_expansion(ef) {
            eprintln!("  this store's backend keeps its recorded ef_search");
            break;
        }
        let t = Instant::now();
        let (mut hits, mut total) = (0usize, 0usize);
        for (&i, want) in sample.iter().zip(&truth) {
            let got = engine.similar(&ids[i], 10, None).expect("similar");
            hits += got.iter().filter(|n| want.contains(&&n.object_id)).count();
            total += want.len();
        }
        let mut asked = sample.len();
        while t.elapsed().as_secs_f64() < 3.0 {
            for &i in &sample {
                engine.similar(&ids[i], 10, None).expect("similar");
            }
            asked += sample.len();
        }
        let row = json!({
            "ef_search": ef,
            "queries_per_s": asked as f64 / t.elapsed().as_secs_f64(),
            "recall_at_10": hits as f64 / total.max(1) as f64,
        });
        eprintln!("  {row}");
        out.push(row);
    }
    json!(out)
}

/// How far each new embedding of an object moved from the one indexed before it, over the
/// object's 10th-neighbour distance (sampled objects, every pair of successive versions, under
/// the current spec): the share an ingest could leave in place if it skipped re-insertion while
/// a vector stays within that fraction of its neighbour radius (issue 14's idea).
fn drift(engine: &Engine, ids: &[String], objects: usize) -> Value {
    let spec = engine.spec();
    let step = (ids.len() / objects.max(1)).max(1);
    let mut ratios: Vec<f32> = Vec::new();
    for id in ids.iter().step_by(step).take(objects) {
        // A generated object the weather hid every night is not in the store.
        let Ok(list) = engine.neighbours(id) else {
            continue;
        };
        let Some(radius) = list.get(9).map(|n| n.distance).filter(|r| *r > 0.0) else {
            continue;
        };
        let versions = engine.store().vector_versions(id).expect("versions");
        for pair in versions.windows(2) {
            let (a, _) = spec.scale(&pair[0].1.raw);
            let (b, _) = spec.scale(&pair[1].1.raw);
            ratios.push(l2(&a, &b) / radius);
        }
    }
    ratios.sort_by(f32::total_cmp);
    let q = |f: f64| {
        ratios
            .get(((ratios.len() as f64 - 1.0) * f) as usize)
            .copied()
    };
    let within =
        |t: f32| ratios.iter().filter(|r| **r <= t).count() as f64 / ratios.len().max(1) as f64;
    json!({
        "pairs": ratios.len(),
        "ratio_p10_p25_p50_p75_p90": [q(0.1), q(0.25), q(0.5), q(0.75), q(0.9)],
        "within_0_1": within(0.1),
        "within_0_25": within(0.25),
        "within_0_5": within(0.5),
    })
}

/// Whether the lists of other objects took in the streamed objects that belong there: for
/// sampled streamed objects x, every object y among x's 20 exact nearest whose own exact 10
/// nearest include x is a pair; the share of pairs where y's stored first 10 name x (or an
/// object as near). k-NN is not symmetric, so these are the lists a relink must find.
fn reverse_list_recall(engine: &Engine, streamed: &[String], samples: usize) -> Value {
    let (ids, vectors) = engine.vectors();
    let row: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let points = numbered(vectors);
    let xs: Vec<usize> = streamed
        .iter()
        .filter_map(|id| row.get(id.as_str()).copied())
        .collect();
    let step = (xs.len() / samples.max(1)).max(1);
    let (mut pairs, mut hits) = (0usize, 0usize);
    for &x in xs.iter().step_by(step).take(samples) {
        let near = exact_knn(points.par_iter(), &points[x].1, 20, &|p| p as usize != x);
        for h in near {
            let y = h.point as usize;
            let truth = exact_knn(points.par_iter(), &points[y].1, 10, &|p| p as usize != y);
            if !truth.iter().any(|t| t.point as usize == x) {
                continue;
            }
            pairs += 1;
            let list = engine.neighbours(&ids[y]).expect("neighbour list");
            let first: Vec<_> = list.iter().take(10).collect();
            let named = first.iter().any(|n| n.object_id == ids[x]);
            // Ties: ten listed objects as near as x stand in for it.
            let tied = first.len() == 10 && first.iter().all(|n| n.distance <= h.distance + 1e-4);
            if named || tied {
                hits += 1;
            }
        }
    }
    json!({
        "sampled_objects": xs.len().min(samples),
        "pairs": pairs,
        "recall": hits as f64 / pairs.max(1) as f64,
    })
}

/// The peer on `dir`; its JSON report.
fn run_peer(python: &str, dir: &Path) -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/peer/peer.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// A tonic server over `engine` on 127.0.0.1:0, as `asterism serve` runs it.
struct Served {
    rt: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), asterism::server::ServerError>>,
}

impl Served {
    fn start(engine: &Arc<Engine>) -> Served {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = ServerConfig {
            access: Access {
                write_token: Some(TOKEN.into()),
                ..Access::default()
            },
            ..ServerConfig::default()
        };
        let server = rt.spawn(serve(Arc::clone(engine), config, listener, async {
            let _ = stopped.await;
        }));
        Served {
            rt,
            addr,
            stop,
            server,
        }
    }

    /// `queries` FindSimilar calls by id over `ids`, one at a time.
    fn idle_latency(&self, ids: &[String], queries: usize) -> Vec<Duration> {
        self.rt.block_on(async {
            let mut c = client(self.addr).await;
            let mut idle = Vec::new();
            for i in 0..queries {
                idle.push(find_similar(&mut c, &ids[(i * 7919) % ids.len()]).await);
            }
            idle
        })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        self.rt
            .block_on(self.server)
            .expect("server task")
            .expect("server");
    }
}

/// Writes `rows` of `report` as a table to stderr, and `report` as JSON to stdout.
fn print_report(report: &Value, rows: &[(&str, &[&str])]) {
    eprintln!("\n{:<40} {:>14}", "figure", "value");
    for (name, path) in rows {
        let mut v = report;
        for p in *path {
            v = &v[*p];
        }
        eprintln!("{name:<40} {:>14.3}", v.as_f64().unwrap_or(f64::NAN));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(report).unwrap_or_default()
    );
}

/// W1 on an existing store (a bulk-seeded 1M one): `live` new objects streamed in at full
/// cadence, one alert per detection, from object number `first` on (written to tar files
/// first, then read, decoded and stored as `asterism ingest` does); then the index's and the
/// lists' recall over the whole store.
fn live_into(db: &Path, live: usize, first: usize, seed: u64, queries: usize, survey: Survey) {
    assert!(db.exists(), "--live-into {}: no such store", db.display());
    let bases = real_records(&["lightcurves", "ztf", "fink"]);
    eprintln!("[0/3] writing the stream of {live} new objects ...");
    let work = tempfile::tempdir().expect("tempdir");
    let (files, _) = write_stream(
        &bases,
        StreamSpec {
            objects: live,
            seed,
            first_object: first,
            ..StreamSpec::for_survey(survey)
        },
        work.path(),
    );
    eprintln!("[1/3] open {}, wait until writable ...", db.display());
    let t = Instant::now();
    let engine = open(db, true);
    let ready = t.elapsed().as_secs_f64();
    let insert_expansion = std::env::args()
        .skip_while(|a| a != "--insert-expansion")
        .nth(1)
        .map(|n| n.parse::<usize>().expect("--insert-expansion N"));
    if let Some(n) = insert_expansion {
        engine.set_insert_expansion(n);
    }
    engine.wait_until_writable().expect("reverse graph");
    let writable = t.elapsed().as_secs_f64();
    let rss_before = rss_bytes();
    eprintln!("[2/3] W1: {live} new objects from number {first}, one alert per detection ...");
    let run = ingest_files(&engine, &files);
    let streamed: Vec<String> = (first..first + live)
        .map(|i| asterism::synth::object_id(survey, i as u64))
        .collect();
    let w1 = json!({
        "insert_expansion": insert_expansion,
        "alerts": run.alerts,
        "seconds": run.seconds,
        "alerts_per_s": run.alerts as f64 / run.seconds,
        "decode_seconds": run.decode_seconds,
        "decode_wait_seconds": run.decode_wait_seconds,
        "commit_seconds_by_step": run.steps,
        "batch_commit": latency(run.batches),
        "drift": drift(&engine, &streamed, queries),
        "seconds_to_index_ready": ready,
        "seconds_to_writable": writable,
        "rss_bytes": rss_bytes(),
        "rss_growth_bytes": rss_bytes().saturating_sub(rss_before),
        "index_backend": format!("{:?}", engine.index_backend()),
    });
    // `--fresh`: W5, the live graph against a fresh one built from the same vectors (for a
    // churn run: `--first-object 0` and another `--seed` re-observe stored objects).
    let fresh = std::env::args().any(|a| a == "--fresh");
    eprintln!("[3/3] W2: recall of the index and of the stored lists ...");
    engine.wait_for_rebuild();
    let (mut w2, _) = index_quality(&engine, queries, fresh);
    w2["reverse_list_recall"] = reverse_list_recall(&engine, &streamed, queries / 2);
    w2["tombstones"] = json!(engine.tombstones());
    w2["embeddings_per_object"] = json!(
        engine.store().next_point().expect("next point") as f64
            / engine
                .store()
                .counts()
                .expect("counts")
                .values()
                .map(|c| c.objects)
                .sum::<u64>() as f64
    );
    let report = json!({ "store": db, "W1": w1, "W2": w2 });
    print_report(
        &report,
        &[
            ("W1 ingest alerts/s (fsync)", &["W1", "alerts_per_s"]),
            ("W1 batch commit p50 ms", &["W1", "batch_commit", "p50_ms"]),
            ("W1 batch commit p99 ms", &["W1", "batch_commit", "p99_ms"]),
            (
                "W1 new vectors within 1/4 of the radius",
                &["W1", "drift", "within_0_25"],
            ),
            ("W1 seconds to writable", &["W1", "seconds_to_writable"]),
            ("W2 recall@10", &["W2", "recall_at_10"]),
            (
                "W2 recall@10 of the stored kNN lists",
                &["W2", "graph_list_recall_at_10"],
            ),
            (
                "W2 lists that took in a streamed object",
                &["W2", "reverse_list_recall", "recall"],
            ),
            (
                "W5 fresh index recall@10 (--fresh)",
                &["W2", "fresh_index_recall_at_10"],
            ),
        ],
    );
}

/// `--reopen DIR`: W4, then W2 in process and over gRPC (idle), on a kept store.
fn reopen(db: &Path, queries: usize) {
    assert!(db.exists(), "--reopen {}: no such store", db.display());
    eprintln!("[1/3] W4: open {}, first answer ...", db.display());
    let rss_before = rss_bytes();
    let t = Instant::now();
    let engine = Arc::new(open(db, true));
    let ready = t.elapsed().as_secs_f64();
    // The first stored object that has an embedding.
    let mut candidates = Vec::new();
    engine
        .store()
        .for_each_object(|r| {
            candidates.push(r.object_id);
            candidates.len() < 100
        })
        .expect("objects");
    let first = candidates
        .iter()
        .find_map(|id| engine.similar(id, 10, None).ok())
        .expect("an object with an embedding");
    let mut w4 = json!({
        "seconds_to_first_answer": t.elapsed().as_secs_f64(),
        "seconds_to_index_ready": ready,
        "index_origin": format!("{:?}", engine.index_origin()),
        "answered": first.len(),
        "rss_growth_bytes": rss_bytes().saturating_sub(rss_before),
    });
    // W2 is the steady state: the reverse graph, still loading beside the first answers,
    // would take a core from the queries.
    let t = Instant::now();
    engine.wait_until_writable().expect("reverse graph");
    w4["seconds_then_to_writable"] = json!(t.elapsed().as_secs_f64());
    eprintln!("[2/3] W2: recall and queries/s in process ...");
    let (mut w2, ids) = index_quality(&engine, queries, false);
    eprintln!("[3/3] W2: FindSimilar over gRPC, just after the server starts, then idle ...");
    let served = Served::start(&engine);
    // A server computes the anomaly scores when it starts (~10 s at 1M): the first calls
    // share the cores with that pass and open the connection.
    w2["grpc_find_similar_at_start"] = json!(latency(served.idle_latency(&ids, queries)));
    let t = Instant::now();
    // With no scores yet this waits for the startup pass.
    let query = AnomalyQuery {
        top: 1,
        ..AnomalyQuery::default()
    };
    engine.anomalies(&query).expect("anomaly scores");
    w2["seconds_then_to_anomaly_scores"] = json!(t.elapsed().as_secs_f64());
    w2["grpc_find_similar_idle"] = json!(latency(served.idle_latency(&ids, queries)));
    served.stop();
    let efs: Option<Vec<usize>> = std::env::args()
        .skip_while(|a| a != "--ef-sweep")
        .nth(1)
        .map(|list| {
            list.split(',')
                .map(|n| n.parse().expect("--ef-sweep N,N,..."))
                .collect()
        });
    if let Some(efs) = efs {
        eprintln!("[+] W2: Engine::similar at ef_search {efs:?} ...");
        w2["ef_sweep"] = ef_sweep(&engine, &efs, queries);
    }
    let report = json!({ "store": db, "W2": w2, "W4": w4 });
    print_report(
        &report,
        &[
            (
                "W4 seconds to index ready",
                &["W4", "seconds_to_index_ready"],
            ),
            (
                "W4 seconds to first answer",
                &["W4", "seconds_to_first_answer"],
            ),
            ("W2 recall@10", &["W2", "recall_at_10"]),
            (
                "W2 recall@10 of the stored kNN lists",
                &["W2", "graph_list_recall_at_10"],
            ),
            (
                "W2 queries/s, 1 thread, in process",
                &["W2", "queries_per_s_1_thread"],
            ),
            (
                "W2 FindSimilar p99 ms, server starting",
                &["W2", "grpc_find_similar_at_start", "p99_ms"],
            ),
            (
                "W2 FindSimilar p50 ms, idle",
                &["W2", "grpc_find_similar_idle", "p50_ms"],
            ),
            (
                "W2 FindSimilar p99 ms, idle",
                &["W2", "grpc_find_similar_idle", "p99_ms"],
            ),
        ],
    );
}

fn main() {
    let objects = arg("--objects", 10_000);
    let churn = arg("--churn", 2);
    let churn_objects = arg("--churn-objects", objects).min(objects);
    let queries = arg("--queries", 1_000);
    let args: Vec<String> = std::env::args().collect();
    if let Some(db) = args
        .iter()
        .position(|a| a == "--reopen")
        .and_then(|i| args.get(i + 1))
    {
        reopen(Path::new(db), queries);
        return;
    }
    if let Some(db) = args
        .iter()
        .position(|a| a == "--live-into")
        .and_then(|i| args.get(i + 1))
    {
        let survey = if args.iter().any(|a| a == "--lsst") {
            Survey::Lsst
        } else {
            Survey::Ztf
        };
        let live = arg("--live-objects", 10_000);
        let first = arg("--first-object", 1_000_000);
        live_into(
            Path::new(db),
            live,
            first,
            arg("--seed", 5) as u64,
            queries,
            survey,
        );
        return;
    }
    let stream_mode = args.iter().any(|a| a == "--stream");
    let backfill = stream_mode && args.iter().any(|a| a == "--backfill");
    let live_objects = arg("--live-objects", 10_000);
    let survey = if args.iter().any(|a| a == "--lsst") {
        Survey::Lsst
    } else {
        Survey::Ztf
    };
    // The peer reads ZTF files; `--stream` writes none.
    let runs = if stream_mode || survey == Survey::Lsst {
        0
    } else {
        arg("--runs", 2)
    };
    let python = args
        .iter()
        .position(|a| a == "--python")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "/var/tmp/asterism-peer-venv/bin/python".into());

    let work = tempfile::tempdir().expect("tempdir");
    let bases = real_records(&["lightcurves", "ztf", "fink"]);
    let spec = move |seed: u64, objects: usize| StreamSpec {
        objects,
        seed,
        ..StreamSpec::for_survey(survey)
    };
    let (files, stream_bytes) = if stream_mode {
        eprintln!("[1/7] --stream: packets are generated in memory as they are ingested");
        (Vec::new(), 0)
    } else {
        eprintln!("[1/7] writing the stream of {objects} objects ...");
        let (files, _) = write_stream(&bases, spec(1, objects), &work.path().join("stream"));
        (files, dir_bytes(&work.path().join("stream")))
    };

    eprintln!("[2/7] W1: ingest (fsync on) ...");
    // `--keep-db PATH` stores into PATH and leaves it there (to profile a reopen afterwards).
    let db = args
        .iter()
        .position(|a| a == "--keep-db")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| work.path().join("db"), PathBuf::from);
    assert!(
        !db.exists(),
        "--keep-db {}: the folder exists; give a new one",
        db.display()
    );
    let rss_before = rss_bytes();
    let engine = Arc::new(open(&db, true));
    let (seeded, w1_run) = if backfill {
        eprintln!("      backfill: {objects} objects, one packet each with its whole lightcurve");
        let seeded = ingest_generated(
            &engine,
            &bases,
            StreamSpec {
                backfill: true,
                ..spec(1, objects)
            },
        );
        eprintln!("      live: {live_objects} new objects, one alert per detection");
        let live = ingest_generated(
            &engine,
            &bases,
            StreamSpec {
                first_object: objects,
                ..spec(1, live_objects)
            },
        );
        (Some(seeded), live)
    } else if stream_mode {
        (None, ingest_generated(&engine, &bases, spec(1, objects)))
    } else {
        (None, ingest_files(&engine, &files))
    };
    let n_packets = w1_run.alerts + seeded.as_ref().map_or(0, |s| s.alerts);
    let stored: u64 = engine
        .stats()
        .expect("stats")
        .values()
        .map(|c| c.objects)
        .sum();
    let embeddings = engine.store().next_point().expect("next point");
    let mut w1 = json!({
        "alerts": w1_run.alerts,
        "objects": stored,
        "embeddings_made": embeddings,
        "seconds": w1_run.seconds,
        "generating_seconds": w1_run.generating_seconds,
        "alerts_per_s": w1_run.alerts as f64 / w1_run.seconds,
        "decode_seconds": w1_run.decode_seconds,
        "decode_wait_seconds": w1_run.decode_wait_seconds,
        "commit_seconds_by_step": w1_run.steps,
        "batch_commit": latency(w1_run.batches),
        "drift": drift(&engine, &engine.vectors().0, queries),
    });
    if let Some(seeded) = seeded {
        w1["backfill"] = json!({
            "packets": seeded.alerts,
            "seconds": seeded.seconds,
            "generating_seconds": seeded.generating_seconds,
            "packets_per_s": seeded.alerts as f64 / seeded.seconds,
            "batch_commit": latency(seeded.batches),
        });
    }

    eprintln!("[3/7] W3: memory and disk ...");
    engine.checkpoint().expect("checkpoint");
    let w3 = json!({
        "rss_bytes": rss_bytes(),
        "rss_growth_bytes_per_object": (rss_bytes().saturating_sub(rss_before)) as f64 / stored as f64,
        "disk_bytes_per_object": dir_bytes(&db) as f64 / stored as f64,
    });

    eprintln!("[4/7] W2: recall and queries/s in process, then FindSimilar over gRPC ...");
    let (mut w2, ids) = index_quality(&engine, queries, objects <= 100_000);
    let served = Served::start(&engine);

    eprintln!(
        "[5/7] W5: {churn} churn rounds of {churn_objects} objects (the first streamed over gRPC under queries) ..."
    );
    let mut churn_rates = Vec::new();
    let idle = served.idle_latency(&ids, queries);
    let addr = served.addr;
    let busy = served.rt.block_on(async {
        let mut c = client(addr).await;
        let mut busy = Vec::new();
        for round in 1..=churn {
            let seed = 1 + round as u64;
            let rate = if round == 1 {
                // One message per packet, as a broker would stream them; encoded beforehand so
                // that only the server works while the queries are timed.
                let (requests, _) = packets(&bases, 0, churn_objects, seed, survey);
                let n = requests.len();
                let t = Instant::now();
                let mut writer = client(addr).await;
                let loading = tokio::spawn(async move {
                    writer
                        .ingest(authed(tokio_stream::iter(requests)))
                        .await
                        .expect("churn ingest")
                });
                let mut i = 0usize;
                while !loading.is_finished() {
                    busy.push(find_similar(&mut c, &ids[(i * 7919) % ids.len()]).await);
                    i += 1;
                }
                loading.await.expect("churn task");
                n as f64 / t.elapsed().as_secs_f64()
            } else if stream_mode {
                let engine = Arc::clone(&engine);
                let bases = bases.clone();
                let run = tokio::task::spawn_blocking(move || {
                    ingest_generated(&engine, &bases, spec(seed, churn_objects))
                })
                .await
                .expect("churn round");
                run.alerts as f64 / run.seconds
            } else {
                let t = Instant::now();
                let dir = work.path().join(format!("churn-{round}"));
                let (round_files, n) = write_stream(&bases, spec(seed, churn_objects), &dir);
                let engine = Arc::clone(&engine);
                tokio::task::spawn_blocking(move || ingest_files(&engine, &round_files))
                    .await
                    .expect("churn round");
                let _ = std::fs::remove_dir_all(&dir);
                n as f64 / t.elapsed().as_secs_f64()
            };
            churn_rates.push(rate);
        }
        busy
    });
    w2["grpc_find_similar_idle"] = json!(latency(idle));
    if !busy.is_empty() {
        w2["grpc_find_similar_under_ingest"] = json!(latency(busy));
    }
    engine.wait_for_rebuild();
    let (mut w5, _) = index_quality(&engine, queries, true);
    w5["rounds"] = json!(churn);
    w5["round_objects"] = json!(churn_objects);
    w5["embeddings_per_object"] =
        json!(engine.store().next_point().expect("next point") as f64 / stored as f64);
    w5["tombstones"] = json!(engine.tombstones());
    w5["round_alerts_per_s"] = json!(churn_rates);

    eprintln!("[6/7] W4: stop, reopen, first answer ...");
    served.stop();
    drop(engine);
    let t = Instant::now();
    let reopened = open(&db, true);
    let first = reopened.similar(&ids[0], 10, None).expect("first answer");
    let w4 = json!({
        "seconds_to_first_answer": t.elapsed().as_secs_f64(),
        "index_origin": format!("{:?}", reopened.index_origin()),
        "answered": first.len(),
    });
    drop(reopened);

    eprintln!("[7/7] Asterism and the peer, alternately, {runs} runs each ...");
    let stream_dir = work.path().join("stream");
    let mut ours = Vec::new();
    let mut peer = Vec::new();
    for run in 0..runs {
        let db = work.path().join(format!("peer-cmp-{run}"));
        let engine = open(&db, false);
        let t = Instant::now();
        let n = ingest_files(&engine, &files).alerts;
        ours.push(n as f64 / t.elapsed().as_secs_f64());
        drop(engine);
        let _ = std::fs::remove_dir_all(&db);
        if let Some(report) = run_peer(&python, &stream_dir) {
            peer.push(report);
        }
    }
    let peer_rates: Vec<f64> = peer
        .iter()
        .filter_map(|r| r["packets_per_s_end_to_end"].as_f64())
        .collect();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let comparison = json!({
        "asterism_packets_per_s": ours,
        "peer_packets_per_s": peer_rates,
        "ratio_of_medians": median(&ours) / median(&peer_rates),
        "peer_queries_per_s": peer.first().map(|r| r["queries_per_s"].clone()),
        "peer_recall_at_10": peer.first().map(|r| r["recall_at_10"].clone()),
        "peer_bytes_per_object_above_start": peer.first().map(|r| r["bytes_per_object_above_start"].clone()),
    });

    let report = json!({
        "objects": objects,
        "packets": n_packets,
        "stream_bytes": stream_bytes,
        "machine_threads": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5,
        "peer": comparison,
    });
    let rows: [(&str, &[&str]); 14] = [
        ("W1 ingest alerts/s (fsync)", &["W1", "alerts_per_s"]),
        ("W1 batch commit p99 ms", &["W1", "batch_commit", "p99_ms"]),
        (
            "W1 new vectors within 1/4 of the radius",
            &["W1", "drift", "within_0_25"],
        ),
        ("W2 recall@10", &["W2", "recall_at_10"]),
        (
            "W2 recall@10 of the stored kNN lists",
            &["W2", "graph_list_recall_at_10"],
        ),
        (
            "W2 queries/s, 1 thread, in process",
            &["W2", "queries_per_s_1_thread"],
        ),
        (
            "W2 FindSimilar p99 ms, idle",
            &["W2", "grpc_find_similar_idle", "p99_ms"],
        ),
        (
            "W2 FindSimilar p99 ms, under ingest",
            &["W2", "grpc_find_similar_under_ingest", "p99_ms"],
        ),
        (
            "W3 RSS growth bytes/object",
            &["W3", "rss_growth_bytes_per_object"],
        ),
        ("W3 disk bytes/object", &["W3", "disk_bytes_per_object"]),
        (
            "W4 seconds to first answer",
            &["W4", "seconds_to_first_answer"],
        ),
        ("W5 recall@10 after churn", &["W5", "recall_at_10"]),
        (
            "W5 fresh index recall@10",
            &["W5", "fresh_index_recall_at_10"],
        ),
        (
            "Asterism/peer packets/s (medians)",
            &["peer", "ratio_of_medians"],
        ),
    ];
    print_report(&report, &rows);
}
