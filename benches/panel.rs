//! W7, the panel: "the page and its data for k = 10" timed from a client on this machine,
//! over a real server (gRPC and HTTP on one engine, 127.0.0.1:0) on an existing store (for
//! example one seeded by `benches/seed.rs --keep-db DIR`). Per object: `GET /panel/{id}` (the
//! HTML) then `GET /api/v1/objects/{id}/panel?k=10` (what the page's script fetches: the
//! object, its lightcurve, its 10 neighbours with theirs, the vote, the anomaly score and the
//! explanations), one after the other, as a browser with the assets cached does; the assets
//! (`panel.js`, `panel.css`, uPlot) are fetched once and reported apart. Objects are spread
//! through the store; each is asked once.
//!
//! Usage: cargo bench --bench panel -- --db DIR [--queries Q]
//! Prints one JSON document on stdout.

mod support;

#[allow(dead_code)]
#[path = "../tests/common/http.rs"]
mod http;

use std::sync::Arc;
use std::time::{Duration, Instant};

use asterism::engine::{Engine, EngineConfig};
use asterism::server::{serve_with_http, Access, HttpConfig, ServerConfig};
use serde_json::json;
use support::{arg, latency};

fn main() {
    let queries = arg("--queries", 300);
    let db: std::path::PathBuf = std::env::args()
        .skip_while(|a| a != "--db")
        .nth(1)
        .expect("--db DIR: a store to serve")
        .into();
    let engine = Arc::new(Engine::open(&db, EngineConfig::default()).expect("open"));
    engine.skip_index_teardown();
    let (ids, _) = engine.vectors();
    assert!(!ids.is_empty(), "the store has no embedded object");
    // The anomaly scores (a pass over every object) are computed once after a start; the
    // panel shows them, so that pass is timed apart, before the panels.
    let anomaly_warmup_s = support::anomaly_first_pass(&engine);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (grpc, web) = rt.block_on(async {
        (
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        )
    });
    let addr = web.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve_with_http(
        Arc::clone(&engine),
        ServerConfig {
            access: Access::default(),
            ..ServerConfig::default()
        },
        grpc,
        Some((web, HttpConfig::default())),
        async {
            let _ = stopped.await;
        },
    ));

    let assets: Vec<(String, usize, f64)> = [
        "/assets/panel.js",
        "/assets/panel.css",
        "/assets/uplot/uPlot.iife.min.js",
        "/assets/uplot/uPlot.min.css",
    ]
    .iter()
    .map(|path| {
        let t = Instant::now();
        let a = http::get(addr, path);
        assert_eq!(a.status, 200, "{path}");
        (
            path.to_string(),
            a.body.len(),
            t.elapsed().as_secs_f64() * 1e3,
        )
    })
    .collect();

    let step = (ids.len() / queries.max(1)).max(1);
    let (mut page, mut data, mut both) = (Vec::new(), Vec::new(), Vec::new());
    let mut data_bytes = 0usize;
    for i in (0..ids.len()).step_by(step).take(queries) {
        let id = &ids[i];
        let t = Instant::now();
        let html = http::get(addr, &format!("/panel/{id}"));
        let p = t.elapsed();
        let d0 = Instant::now();
        let panel = http::get(addr, &format!("/api/v1/objects/{id}/panel?k=10"));
        let d = d0.elapsed();
        assert_eq!(html.status, 200);
        assert_eq!(panel.status, 200, "{}", panel.text());
        data_bytes += panel.body.len();
        page.push(p);
        data.push(d);
        both.push(p + d);
    }
    let n = both.len();
    let within: usize = both
        .iter()
        .filter(|t| **t <= Duration::from_millis(200))
        .count();
    let doc = json!({
        "objects_in_store": ids.len(),
        "anomaly_scores_first_pass_seconds": anomaly_warmup_s,
        "panels": n,
        "page": latency(page),
        "data_k10": latency(data),
        "page_and_data": latency(both),
        "share_within_200_ms": within as f64 / n as f64,
        "mean_data_bytes": data_bytes as f64 / n as f64,
        "assets_once": assets.iter().map(|(p, b, ms)| json!({"path": p, "bytes": b, "ms": ms})).collect::<Vec<_>>(),
    });
    let _ = stop.send(());
    rt.block_on(server)
        .expect("server task")
        .expect("server stopped cleanly");
    println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
}
