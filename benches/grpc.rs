//! The gRPC service under load: a real server on 127.0.0.1:0 over a fresh RocksDB store,
//! filled over `Ingest` with generated ZTF packets (real Avro, schema 4.02, made from the real
//! lightcurves of data/ by `asterism::synth`), then
//! - FindSimilar latency (k = 10, by object id) from one client, idle;
//! - every other read RPC's latency from one client, idle (GetObject, Classify, Explain,
//!   Recommend, TopAnomalies; the store has no labels, Classify's costliest case), and
//!   FindSimilar and Classify by the flux and curves presets (an exact scan of every object,
//!   then for curves the lightcurves of the 300 nearest fitted, 100 for Classify; a tenth as
//!   many calls);
//! - the same while a second client streams new packets in (W4 of BENCHMARKS.md);
//! - ingest throughput over gRPC, and ingest-to-queryable latency (one-packet Ingest calls:
//!   a write is queryable when it is acknowledged);
//! - load: N concurrent clients (N in --clients, default 1,8,64; one connection each) mixing
//!   FindSimilar, GetObject and Classify for --load-seconds each while a writer streams new
//!   packets in; throughput, latency and errors (which must be 0).
//!
//! Usage: cargo bench --bench grpc -- [--objects N] [--queries Q] [--load-objects M]
//!        [--rpc-queries R] [--clients 1,8,64] [--load-seconds S] [--db DIR]
//!        [--label-every N]
//! With `--db DIR` the store at DIR is served instead of a fresh one filled over gRPC (for a
//! store seeded by `ingest --bulk` from `generate --backfill --objects N`: pass the same N as
//! `--objects`, so that the new objects streamed in are new); it is written to. With
//! `--label-every N`, every N-th of the `--objects` generated objects is labelled first (the
//! class data/labels gives the real object it was made from; `import_labels`), so that the
//! read RPCs are timed on a partly labelled store as well as an unlabelled one.
//! Prints a table on stderr and one JSON document on stdout.

mod support;

use std::sync::Arc;
use std::time::Instant;

use asterism::engine::{Engine, EngineConfig};
use asterism::model::Survey;
use asterism::server::proto as pb;
use asterism::server::{serve, Access, ServerConfig};
use asterism::store::StoreConfig;
use support::{arg, authed, client, find_similar, latency, packets, real_records, TOKEN};

fn main() {
    let objects = arg("--objects", 20_000);
    let queries = arg("--queries", 2_000);
    let rpc_queries = arg("--rpc-queries", 300);
    let load_objects = arg("--load-objects", 5_000);
    let seed = arg("--seed", 1) as u64;
    let load_seconds = arg("--load-seconds", 10) as f64;
    let label_every = arg("--label-every", 0);
    let client_counts: Vec<usize> = std::env::args()
        .skip_while(|a| a != "--clients")
        .nth(1)
        .unwrap_or_else(|| "1,8,64".into())
        .split(',')
        .map(|n| n.trim().parse().expect("--clients N,N,..."))
        .collect();

    // An existing store (for example one seeded with `asterism ingest --bulk` from
    // `asterism generate --backfill --objects N`): no fill; new objects start at --objects.
    let existing: Option<std::path::PathBuf> = std::env::args()
        .skip_while(|a| a != "--db")
        .nth(1)
        .map(Into::into);

    eprintln!("generating packets from the real lightcurves of data/ ...");
    let bases = real_records(&["lightcurves", "ztf", "fink"]);
    let (fill, mut ids) = if existing.is_some() {
        (Vec::new(), Vec::new())
    } else {
        packets(&bases, 0, objects, seed, Survey::Ztf)
    };
    let (load, _) = packets(&bases, objects, load_objects, seed, Survey::Ztf);
    let fill_bytes: usize = fill.iter().map(|p| p.packet.len()).sum();

    let kept = existing.is_some();
    let dir = tempfile::tempdir().expect("tempdir");
    let opened = Instant::now();
    let engine = Arc::new(
        Engine::open(
            &existing.unwrap_or_else(|| dir.path().join("db")),
            EngineConfig {
                store: StoreConfig {
                    sync_writes: true,
                    ..StoreConfig::default()
                },
                ..EngineConfig::default()
            },
        )
        .expect("open"),
    );
    let open_s = opened.elapsed().as_secs_f64();
    if ids.is_empty() {
        ids = engine.vectors().0;
    }
    // A kept store: its anomaly scores (a pass over every object, once per start) are timed
    // apart, before the RPCs that read them.
    let anomaly_warmup_s = if kept {
        support::anomaly_first_pass(&engine)
    } else {
        0.0
    };
    // The reverse graph (a kept store reads it from every stored list, ~20 s at 1M) loads on
    // a thread of its own: "idle" starts once it has.
    let t = Instant::now();
    engine.wait_until_writable().expect("reverse graph");
    let reverse_wait_s = t.elapsed().as_secs_f64();
    ids.sort();
    ids.dedup();
    let labelled = if label_every > 0 {
        let rows = support::generated_labels(&bases, objects, label_every);
        let t = Instant::now();
        let report = engine.import_labels(&rows, "bench").expect("import labels");
        eprintln!(
            "labelled {} objects ({} rows) in {:.1} s",
            report.imported,
            rows.len(),
            t.elapsed().as_secs_f64()
        );
        // The import changes the store's generation: the anomaly scores are recomputed (a
        // pass over every object, ~10 s at 1M) before "idle" begins, not beside it.
        let t = Instant::now();
        engine.refresh_anomalies().expect("anomaly scores");
        eprintln!(
            "anomaly scores after the labels in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        report.imported
    } else {
        0
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let config = ServerConfig {
        access: Access {
            write_token: Some(TOKEN.into()),
            ..Access::default()
        },
        ..ServerConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve(Arc::clone(&engine), config, listener, async {
        let _ = stopped.await;
    }));

    let report = rt.block_on(async {
        let mut c = client(addr).await;
        eprintln!(
            "ingesting {} packets ({:.0} MB) of {objects} objects over gRPC ...",
            fill.len(),
            fill_bytes as f64 / 1e6
        );
        let n_fill = fill.len();
        let t = Instant::now();
        if n_fill > 0 {
            let r = c
                .ingest(authed(tokio_stream::iter(fill)))
                .await
                .expect("ingest")
                .into_inner();
            assert_eq!(r.alerts_rejected, 0, "{:?}", r.rejects.first());
        }
        let fill_s = t.elapsed().as_secs_f64();
        let stored = ids.len();

        eprintln!("FindSimilar, idle ...");
        let mut idle = Vec::with_capacity(queries);
        for i in 0..queries {
            idle.push(find_similar(&mut c, &ids[(i * 7919) % ids.len()]).await);
        }

        eprintln!("the other read RPCs, idle ...");
        let per_rpc = other_rpcs(&mut c, &ids, rpc_queries).await;

        eprintln!("FindSimilar while {} packets stream in ...", load.len());
        let n_load = load.len();
        let mut writer = client(addr).await;
        let loading = tokio::spawn(async move {
            let t = Instant::now();
            let r = writer
                .ingest(authed(tokio_stream::iter(load)))
                .await
                .expect("ingest under load")
                .into_inner();
            (r, t.elapsed().as_secs_f64())
        });
        let mut busy = Vec::new();
        let mut i = 0usize;
        while !loading.is_finished() {
            busy.push(find_similar(&mut c, &ids[(i * 7919) % ids.len()]).await);
            i += 1;
        }
        let (load_report, load_s) = loading.await.expect("load task");

        eprintln!("ingest to queryable: one-packet Ingest calls ...");
        let (single, single_ids) = packets(&bases, objects + load_objects, 200, seed, Survey::Ztf);
        let mut to_queryable = Vec::new();
        let last = single_ids
            .get(199)
            .or(single_ids.last())
            .cloned()
            .unwrap_or_default();
        for p in single.into_iter().take(200) {
            let t = Instant::now();
            c.ingest(authed(tokio_stream::iter(vec![p])))
                .await
                .expect("one-packet ingest");
            to_queryable.push(t.elapsed());
        }
        let visible = c
            .get_object(pb::GetObjectRequest {
                object_id: last,
                without_lightcurve: true,
            })
            .await
            .is_ok();
        assert!(visible, "an acknowledged packet is queryable");

        let ids = Arc::new(ids);
        let mut under_load = Vec::new();
        let mut next_object = objects + load_objects + 200;
        for &n in &client_counts {
            eprintln!("{n} clients mixing FindSimilar, GetObject, Classify under ingest ...");
            let (stream, _) = packets(&bases, next_object, load_objects, seed, Survey::Ztf);
            next_object += load_objects;
            let figures = mixed_load(addr, Arc::clone(&ids), n, load_seconds, stream).await;
            under_load.push(figures);
        }

        serde_json::json!({
            "machine_threads": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "objects": stored,
            "open_seconds": open_s,
            "anomaly_scores_first_pass_seconds": anomaly_warmup_s,
            "then_to_writable_seconds": reverse_wait_s,
            "labelled_objects": labelled,
            "fill": {
                "packets": n_fill,
                "seconds": fill_s,
                "alerts_per_s": n_fill as f64 / fill_s,
                "mb_per_s": fill_bytes as f64 / 1e6 / fill_s,
            },
            "find_similar_idle": latency(idle),
            "per_rpc_idle": per_rpc,
            "find_similar_under_ingest": latency(busy),
            "ingest_under_queries": {
                "packets": n_load,
                "objects_new": load_report.objects_new,
                "seconds": load_s,
                "alerts_per_s": n_load as f64 / load_s,
            },
            "ingest_to_queryable": latency(to_queryable),
            "clients_under_ingest": under_load,
        })
    });
    let _ = stop.send(());
    rt.block_on(server)
        .expect("server task")
        .expect("server stopped cleanly");

    let get = |path: &[&str]| -> f64 {
        let mut v = &report;
        for p in path {
            v = &v[*p];
        }
        v.as_f64().unwrap_or(f64::NAN)
    };
    eprintln!("\n{:<44} {:>12}", "figure", "value");
    for (name, path) in [
        (
            "ingest over gRPC, alerts/s (fill)",
            &["fill", "alerts_per_s"][..],
        ),
        ("FindSimilar p50 ms, idle", &["find_similar_idle", "p50_ms"]),
        ("FindSimilar p99 ms, idle", &["find_similar_idle", "p99_ms"]),
        (
            "GetObject p50 ms, idle",
            &["per_rpc_idle", "GetObject", "p50_ms"],
        ),
        (
            "GetObject p99 ms, idle",
            &["per_rpc_idle", "GetObject", "p99_ms"],
        ),
        (
            "Classify p50 ms, idle",
            &["per_rpc_idle", "Classify", "p50_ms"],
        ),
        (
            "Classify p99 ms, idle",
            &["per_rpc_idle", "Classify", "p99_ms"],
        ),
        (
            "Explain p50 ms, idle",
            &["per_rpc_idle", "Explain", "p50_ms"],
        ),
        (
            "Explain p99 ms, idle",
            &["per_rpc_idle", "Explain", "p99_ms"],
        ),
        (
            "Recommend p50 ms, idle",
            &["per_rpc_idle", "Recommend", "p50_ms"],
        ),
        (
            "Recommend p99 ms, idle",
            &["per_rpc_idle", "Recommend", "p99_ms"],
        ),
        (
            "TopAnomalies p50 ms, idle",
            &["per_rpc_idle", "TopAnomalies", "p50_ms"],
        ),
        (
            "TopAnomalies p99 ms, idle",
            &["per_rpc_idle", "TopAnomalies", "p99_ms"],
        ),
        (
            "FindSimilar p50 ms, under ingest",
            &["find_similar_under_ingest", "p50_ms"],
        ),
        (
            "FindSimilar p99 ms, under ingest",
            &["find_similar_under_ingest", "p99_ms"],
        ),
        (
            "ingest alerts/s while queried",
            &["ingest_under_queries", "alerts_per_s"],
        ),
        (
            "ingest-to-queryable p50 ms",
            &["ingest_to_queryable", "p50_ms"],
        ),
        (
            "ingest-to-queryable p99 ms",
            &["ingest_to_queryable", "p99_ms"],
        ),
    ] {
        eprintln!("{name:<44} {:>12.2}", get(path));
    }
    if let Some(load) = report["clients_under_ingest"].as_array() {
        eprintln!(
            "\n{:>7} {:>9} {:>8} {:>8} {:>8} {:>7} {:>12}",
            "clients", "calls/s", "p50 ms", "p99 ms", "max ms", "errors", "ingest a/s"
        );
        for f in load {
            let v = |k: &str| f[k].as_f64().unwrap_or(f64::NAN);
            eprintln!(
                "{:>7} {:>9.0} {:>8.2} {:>8.2} {:>8.1} {:>7} {:>12.0}",
                f["clients"].as_u64().unwrap_or(0),
                v("calls_per_s"),
                f["latency"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
                f["latency"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
                f["latency"]["max_ms"].as_f64().unwrap_or(f64::NAN),
                v("errors"),
                v("ingest_alerts_per_s"),
            );
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
}

/// `clients` concurrent clients, one connection each, calling FindSimilar, GetObject and
/// Classify in turn on objects spread through `ids` for `seconds`, while one more client
/// streams `stream` in over Ingest (in calls of 50 packets, until the time is up).
async fn mixed_load(
    addr: std::net::SocketAddr,
    ids: Arc<Vec<String>>,
    clients: usize,
    seconds: f64,
    stream: Vec<pb::IngestRequest>,
) -> serde_json::Value {
    let until = Instant::now() + std::time::Duration::from_secs_f64(seconds);
    let writer = tokio::spawn(async move {
        let mut w = client(addr).await;
        let mut alerts = 0u64;
        let t = Instant::now();
        for chunk in stream.chunks(50) {
            if Instant::now() >= until {
                break;
            }
            let r = w
                .ingest(authed(tokio_stream::iter(chunk.to_vec())))
                .await
                .expect("ingest under load")
                .into_inner();
            alerts += r.alerts_read;
        }
        (alerts, t.elapsed().as_secs_f64())
    });
    let tasks: Vec<_> = (0..clients)
        .map(|k| {
            let ids = Arc::clone(&ids);
            tokio::spawn(async move {
                let mut c = client(addr).await;
                let (mut times, mut per_op, mut errors) =
                    (Vec::new(), [Vec::new(), Vec::new(), Vec::new()], 0u64);
                let mut i = k * 1009;
                while Instant::now() < until {
                    let id = ids[(i * 7919) % ids.len()].clone();
                    let op = i % 3;
                    let t = Instant::now();
                    let ok = match op {
                        0 => c
                            .find_similar(pb::FindSimilarRequest {
                                query: Some(pb::find_similar_request::Query::ObjectId(id)),
                                k: 10,
                                ..Default::default()
                            })
                            .await
                            .is_ok(),
                        1 => c
                            .get_object(pb::GetObjectRequest {
                                object_id: id,
                                without_lightcurve: false,
                            })
                            .await
                            .is_ok(),
                        _ => c
                            .classify(pb::ClassifyRequest {
                                object_id: id,
                                ..Default::default()
                            })
                            .await
                            .is_ok(),
                    };
                    let took = t.elapsed();
                    times.push(took);
                    per_op[op].push(took);
                    errors += u64::from(!ok);
                    i += 1;
                }
                (times, per_op, errors)
            })
        })
        .collect();
    let started = Instant::now();
    let (mut all, mut ops, mut errors) = (Vec::new(), [Vec::new(), Vec::new(), Vec::new()], 0);
    for t in tasks {
        let (times, per_op, e) = t.await.expect("client task");
        all.extend(times);
        for (acc, v) in ops.iter_mut().zip(per_op) {
            acc.extend(v);
        }
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (alerts, ingest_s) = writer.await.expect("writer task");
    let [similar, object, classify] = ops;
    serde_json::json!({
        "clients": clients,
        "calls": all.len(),
        "calls_per_s": all.len() as f64 / elapsed,
        "errors": errors,
        "latency": latency(all),
        "FindSimilar": latency(similar),
        "GetObject": latency(object),
        "Classify": latency(classify),
        "ingest_alerts": alerts,
        "ingest_alerts_per_s": alerts as f64 / ingest_s,
    })
}

/// Latency of each read RPC other than FindSimilar, `n` calls each over objects spread
/// through `ids`, from one client.
async fn other_rpcs(
    c: &mut pb::asterism_client::AsterismClient<tonic::transport::Channel>,
    ids: &[String],
    n: usize,
) -> serde_json::Value {
    let id = |i: usize| ids[(i * 7919) % ids.len()].clone();
    let mut out = serde_json::Map::new();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        c.get_object(pb::GetObjectRequest {
            object_id: id(i),
            without_lightcurve: false,
        })
        .await
        .expect("GetObject");
        times.push(t.elapsed());
    }
    out.insert("GetObject".into(), serde_json::json!(latency(times)));
    let mut times = Vec::with_capacity(n);
    // How each call classified (vote, propagation or none): the paths cost differently.
    let mut methods = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..n {
        let t = Instant::now();
        let answer = c
            .classify(pb::ClassifyRequest {
                object_id: id(i),
                ..Default::default()
            })
            .await
            .expect("Classify");
        times.push(t.elapsed());
        *methods.entry(answer.into_inner().method).or_default() += 1;
    }
    out.insert("Classify".into(), serde_json::json!(latency(times)));
    out.insert("Classify_methods".into(), serde_json::json!(methods));
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        c.explain(pb::ExplainRequest {
            object_id: id(i),
            other_id: id(i + 1),
        })
        .await
        .expect("Explain");
        times.push(t.elapsed());
    }
    out.insert("Explain".into(), serde_json::json!(latency(times)));
    // The flux preset scans every object (exact), and the curves preset then fits the
    // lightcurves of the 300 nearest (100 for Classify): fewer calls.
    for preset in ["flux", "curves"] {
        let mut times = Vec::with_capacity(n);
        for i in 0..n.div_ceil(10) {
            let t = Instant::now();
            c.find_similar(pb::FindSimilarRequest {
                query: Some(pb::find_similar_request::Query::ObjectId(id(i))),
                k: 10,
                features: preset.into(),
                ..Default::default()
            })
            .await
            .expect("FindSimilar by a preset");
            times.push(t.elapsed());
        }
        out.insert(
            format!("FindSimilar_{preset}"),
            serde_json::json!(latency(times)),
        );
        let mut times = Vec::with_capacity(n);
        for i in 0..n.div_ceil(10) {
            let t = Instant::now();
            c.classify(pb::ClassifyRequest {
                object_id: id(i),
                features: preset.into(),
            })
            .await
            .expect("Classify by a preset");
            times.push(t.elapsed());
        }
        out.insert(
            format!("Classify_{preset}"),
            serde_json::json!(latency(times)),
        );
    }
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        c.recommend(pb::RecommendRequest {
            positive: vec![id(i)],
            top: 10,
            ..Default::default()
        })
        .await
        .expect("Recommend");
        times.push(t.elapsed());
    }
    out.insert("Recommend".into(), serde_json::json!(latency(times)));
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.top_anomalies(pb::TopAnomaliesRequest {
            top: 10,
            ..Default::default()
        })
        .await
        .expect("TopAnomalies");
        times.push(t.elapsed());
    }
    out.insert("TopAnomalies".into(), serde_json::json!(latency(times)));
    serde_json::Value::Object(out)
}
