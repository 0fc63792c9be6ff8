//! The HTTP/JSON API end to end: a real server (gRPC and HTTP on one runtime and engine) on
//! 127.0.0.1:0 over a store built from `data/` by the real `asterism` binary; every answer
//! compared with what the CLI prints with `--json` for the same store, every error status and
//! token rule, CORS, the OpenAPI document, and a vote over HTTP seen by gRPC.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use asterism::engine::{SimilarQuery, Target};
use asterism::server::proto::asterism_client::AsterismClient;
use asterism::server::proto::{self as pb};
use asterism::server::{Access, HttpConfig};
use common::data;
use common::http::{get, post_json, request};
use common::served::{labelled_store, start};
use serde_json::{json, Value};

const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";
const HOST: &str = "http://127.0.0.1:9";

fn access() -> Access {
    Access {
        write_token: Some("write-token".into()),
        read_token: None,
        users: [("alice", ALICE), ("bob", BOB)]
            .into_iter()
            .map(|(u, t)| (u.to_string(), t.to_string()))
            .collect(),
    }
}

fn asterism(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(args)
        .output()
        .expect("run asterism");
    assert!(
        out.status.success(),
        "asterism {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A store of every real packet and table in data/, with the SN Ia / RR Lyrae labels, made
/// by the binary as a user makes it.
fn cli_store(dir: &Path) -> String {
    let db = dir.join("db").to_string_lossy().into_owned();
    let mut args = vec!["ingest".to_string(), "--db".into(), db.clone()];
    for d in ["ztf", "fink", "lsst", "lightcurves"] {
        args.push(data(d).to_string_lossy().into_owned());
    }
    args.push("--json".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    asterism(&args);
    let labels = data("labels/lightcurves.csv")
        .to_string_lossy()
        .into_owned();
    asterism(&["labels", "--db", &db, &labels, "--json"]);
    db
}

fn ok(addr: SocketAddr, path: &str) -> Value {
    let a = get(addr, path);
    assert_eq!(a.status, 200, "{path}: {}", a.text());
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{path}"
    );
    a.json()
}

#[test]
fn every_answer_equals_the_clis_json_for_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = cli_store(dir.path());
    let mut served = start(Path::new(&db), Access::default(), HttpConfig::default());
    let h = served.http;

    // (HTTP path, the CLI's arguments after --db).
    let cases: Vec<(&str, Vec<&str>)> =
        vec![
        ("/api/v1/objects/ZTF18abxhyqv", vec!["object", "ZTF18abxhyqv"]),
        (
            "/api/v1/objects/170028485706776685",
            vec!["object", "170028485706776685"],
        ),
        ("/api/v1/objects/1013184/similar", vec!["similar", "1013184"]),
        (
            "/api/v1/objects/ZTF18aadzfso/similar?k=5",
            vec!["similar", "ZTF18aadzfso", "-k", "5"],
        ),
        (
            "/api/v1/objects/ZTF18abxhyqv/similar?k=3&as_of=58427.3",
            vec!["similar", "ZTF18abxhyqv", "-k", "3", "--as-of", "58427.3"],
        ),
        (
            "/api/v1/objects/ZTF18aadzfso/similar?k=4&class=SN%20Ia&min_detections=10&since=58000",
            vec![
                "similar",
                "ZTF18aadzfso",
                "-k",
                "4",
                "--class",
                "SN Ia",
                "--min-detections",
                "10",
                "--since",
                "58000",
            ],
        ),
        ("/api/v1/objects/ZTF18aadzfso/classify", vec!["classify", "ZTF18aadzfso"]),
        ("/api/v1/anomalies?top=5", vec!["anomalies", "--top", "5"]),
        (
            "/api/v1/recommend?like=1013184,ZTF18aadzfso&unlike=ZTF18aahatvc&top=6",
            vec![
                "recommend",
                "--like",
                "1013184",
                "ZTF18aadzfso",
                "--unlike",
                "ZTF18aahatvc",
                "--top",
                "6",
            ],
        ),
        (
            "/api/v1/explain?a=ZTF18aadzfso&b=1013184",
            vec!["explain", "ZTF18aadzfso", "1013184"],
        ),
        ("/api/v1/stats", vec!["stats"]),
    ];
    let answers: Vec<Value> = cases.iter().map(|(path, _)| ok(h, path)).collect();

    // The same question to the engine the server holds.
    let mut q = SimilarQuery::new(Target::Object("ZTF18aadzfso".into()), 5);
    q.filters.class = None;
    let hits = served.engine().find_similar(&q).unwrap();
    let ids: Vec<&str> = answers[3]["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["object_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        hits.iter()
            .map(|h| h.object_id.as_str())
            .collect::<Vec<_>>()
    );
    assert_eq!(ids.len(), 5);
    assert!(answers[5]["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["class"] == "SN Ia" && n["detections"].as_u64().unwrap() >= 10));

    // The lightcurve holds every detection and upper limit of the object, per band.
    let object = &answers[0];
    let lc = ok(h, "/api/v1/objects/ZTF18abxhyqv/lightcurve");
    let series = lc["series"].as_array().unwrap();
    let count = |limit: bool| -> usize {
        series
            .iter()
            .filter(|s| s["kind"] == "detection")
            .flat_map(|s| s["is_limit"].as_array().unwrap())
            .filter(|l| l.as_bool() == Some(limit))
            .count()
    };
    assert_eq!(count(false), object["detections"].as_array().unwrap().len());
    assert_eq!(
        count(true),
        object["upper_limits"].as_array().unwrap().len()
    );
    assert!(count(true) > 0);
    for s in series {
        assert_eq!(s["unit"], "diff_mag");
        let mjd: Vec<f64> = s["mjd"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap())
            .collect();
        assert!(mjd.windows(2).all(|w| w[0] <= w[1]), "sorted by time");
        assert_eq!(s["value"].as_array().unwrap().len(), mjd.len());
    }
    let rubin = ok(h, "/api/v1/objects/170028485706776685/lightcurve");
    assert!(rubin["series"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["unit"] == "flux_njy" && s["magnitude"] == false));

    served.shutdown();
    for ((path, args), answer) in cases.iter().zip(&answers) {
        let mut full = vec![args[0], "--db", &db];
        full.extend(&args[1..]);
        full.push("--json");
        assert_eq!(*answer, asterism(&full), "{path} vs asterism {full:?}");
    }
}

#[test]
fn errors_have_the_grpc_codes_http_status_and_tokens_are_the_grpc_ones() {
    let dir = labelled_store(&[]);
    let served = start(
        &dir.path().join("db"),
        access(),
        HttpConfig {
            cors_origins: vec![HOST.into()],
            ..HttpConfig::default()
        },
    );
    let h = served.http;
    let error = |path: &str, status: u16, field: Option<&str>| {
        let a = get(h, path);
        assert_eq!(a.status, status, "{path}: {}", a.text());
        let body = a.json();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert_eq!(body["field"].as_str(), field, "{path}: {body}");
        body
    };
    let body = error("/api/v1/objects/ZTF99nothing", 404, None);
    assert_eq!(body["code"], "NOT_FOUND");
    assert_eq!(body["error"], "unknown object `ZTF99nothing`");
    error("/api/v1/objects/ZTF99nothing/similar", 404, None);
    let body = error("/api/v1/objects/1013184/similar?k=0", 400, Some("k"));
    assert_eq!(body["code"], "INVALID_ARGUMENT");
    error("/api/v1/objects/1013184/similar?k=1001", 400, Some("k"));
    error("/api/v1/objects/1013184/similar?k=ten", 400, Some("k"));
    error("/api/v1/objects/1013184/similar?kk=3", 400, Some("kk"));
    error("/api/v1/anomalies?top=0", 400, Some("top"));
    error("/api/v1/recommend", 400, Some("positive"));
    error("/api/v1/explain?a=1013184", 400, Some("b"));
    error("/api/v1/no/such/path", 404, None);
    // Similarity presets, group weights and ages are checked as over gRPC; a lightcurve
    // table has no packet context to rank by.
    error(
        "/api/v1/objects/1013184/similar?features=shape",
        400,
        Some("features"),
    );
    error(
        "/api/v1/objects/1013184/similar?features=context",
        400,
        Some("features"),
    );
    error(
        "/api/v1/objects/1013184/similar?weights=context%3D-1",
        400,
        Some("weights"),
    );
    error(
        "/api/v1/objects/1013184/similar?at_age=-1",
        400,
        Some("at_age"),
    );
    error(
        "/api/v1/recommend?like=1013184&features=shape",
        400,
        Some("features"),
    );
    let a = get(
        h,
        "/api/v1/objects/1013184/similar?k=3&features=lightcurve&at_age=30",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["neighbours"].as_array().map(Vec::len), Some(3));
    let a = get(
        h,
        "/api/v1/recommend?like=1013184&top=2&weights=lightcurve%3D2",
    );
    assert_eq!(a.status, 200, "{}", a.text());

    // Votes need the user's own token, as over gRPC.
    let vote = |token: Option<&str>, object: &str, direction: &str| {
        post_json(
            h,
            "/api/v1/votes",
            token,
            &json!({"user": "alice", "object_id": object, "vote": direction}),
        )
    };
    let a = vote(None, "1013184", "up");
    assert_eq!(a.status, 401, "{}", a.text());
    assert_eq!(a.json()["code"], "UNAUTHENTICATED");
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    assert_eq!(vote(Some("stolen"), "1013184", "up").status, 401);
    let a = vote(Some(BOB), "1013184", "up");
    assert_eq!(a.status, 403, "{}", a.text());
    assert_eq!(a.json()["code"], "PERMISSION_DENIED");
    let a = vote(Some(ALICE), "1013184", "sideways");
    assert_eq!((a.status, a.json()["field"].clone()), (400, json!("vote")));
    assert_eq!(vote(Some(ALICE), "ZTF99nothing", "up").status, 404);
    let a = post_json(h, "/api/v1/votes", Some(ALICE), &json!({"user": "alice"}));
    assert_eq!((a.status, a.json()["field"].clone()), (400, json!("body")));
    // Before any vote alice has no ranking of her own.
    let auth = format!("Bearer {ALICE}");
    let alice = [("Authorization", auth.as_str())];
    let mine = |path: &str| request(h, "GET", path, &alice, None);
    assert_eq!(mine("/api/v1/recommend?user=alice&top=5").status, 404);
    assert_eq!(get(h, "/api/v1/recommend?user=alice&top=5").status, 401);

    // A vote, then her recommendations follow it; gRPC sees the same.
    let a = vote(Some(ALICE), "1013184", "up");
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.json(),
        json!({"user": "alice", "object_id": "1013184", "vote": "up"})
    );
    let first = mine("/api/v1/recommend?user=alice&top=5").json();
    let first_ids: Vec<&str> = first
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["object_id"].as_str().unwrap())
        .collect();
    assert_eq!(first_ids.len(), 5);
    assert!(
        !first_ids.contains(&"1013184"),
        "a voted object is not recommended"
    );
    assert!(first
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["class"] == "RR Lyr"));
    let voted = first_ids[0].to_string();
    assert_eq!(vote(Some(ALICE), &voted, "down").status, 200);
    let second = mine("/api/v1/recommend?user=alice&top=5").json();
    assert_ne!(second, first);
    assert!(second
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["object_id"] != voted.as_str()));
    let personal = mine("/api/v1/anomalies?user=alice&top=5");
    assert_eq!(personal.status, 200, "{}", personal.text());
    assert_eq!(
        request(
            h,
            "GET",
            "/api/v1/anomalies?user=alice",
            &[("Authorization", "Bearer bob-token")],
            None
        )
        .status,
        403
    );

    let grpc = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut c = AsterismClient::connect(format!("http://{}", served.grpc))
                .await
                .unwrap();
            let mut r = tonic::Request::new(pb::RecommendRequest {
                user: Some("alice".into()),
                top: 5,
                ..Default::default()
            });
            r.metadata_mut()
                .insert("authorization", auth.parse().unwrap());
            c.recommend(r).await.unwrap().into_inner().recommendations
        });
    assert_eq!(
        grpc.iter()
            .map(|r| r.object_id.as_str())
            .collect::<Vec<_>>(),
        second
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["object_id"].as_str().unwrap())
            .collect::<Vec<_>>()
    );

    // CORS: the configured origin may read answers and preflight; another may not.
    let a = request(h, "GET", "/api/v1/stats", &[("Origin", HOST)], None);
    assert_eq!(a.header("access-control-allow-origin"), Some(HOST));
    let a = request(
        h,
        "OPTIONS",
        "/api/v1/votes",
        &[
            ("Origin", HOST),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        None,
    );
    assert_eq!(a.status, 204);
    assert!(a
        .header("access-control-allow-headers")
        .is_some_and(|v| v.contains("authorization")));
    let a = request(
        h,
        "GET",
        "/api/v1/stats",
        &[("Origin", "http://evil.example")],
        None,
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.header("access-control-allow-origin"), None);
    let a = request(
        h,
        "OPTIONS",
        "/api/v1/votes",
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        None,
    );
    assert_eq!(a.status, 403);
}

#[test]
fn the_openapi_document_lists_every_path_and_each_answers() {
    let dir = labelled_store(&[]);
    let served = start(&dir.path().join("db"), access(), HttpConfig::default());
    let h = served.http;
    let doc = ok(h, "/api/v1/openapi.json");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "/anomalies",
            "/explain",
            "/objects/{id}",
            "/objects/{id}/classify",
            "/objects/{id}/lightcurve",
            "/objects/{id}/panel",
            "/objects/{id}/similar",
            "/recommend",
            "/stats",
            "/votes",
        ]
    );
    for (path, ops) in paths {
        let url = format!("/api/v1{}", path.replace("{id}", "ZTF18aadzfso"))
            + if path == "/explain" {
                "?a=ZTF18aadzfso&b=1013184"
            } else if path == "/recommend" {
                "?like=ZTF18aadzfso"
            } else {
                ""
            };
        if ops.get("get").is_some() {
            let a = get(h, &url);
            assert_eq!(a.status, 200, "{url}: {}", a.text());
            // Every query parameter it lists is accepted.
            for p in ops["get"]["parameters"].as_array().unwrap() {
                if p["in"] == "query" && p["name"] != "user" {
                    let a = get(
                        h,
                        &format!(
                            "{url}{}{}=",
                            if url.contains('?') { "&" } else { "?" },
                            p["name"].as_str().unwrap()
                        ),
                    );
                    assert!(
                        !a.text().contains("unknown parameter"),
                        "{url}: {}",
                        a.text()
                    );
                }
            }
        } else {
            let a = post_json(
                h,
                &url,
                Some(ALICE),
                &json!({"user": "alice", "object_id": "ZTF18aadzfso", "vote": "up"}),
            );
            assert_eq!(a.status, 200, "{url}: {}", a.text());
        }
    }
    // The panel's data: the object, k neighbours with lightcurves and labels, the vote.
    let panel = ok(h, "/api/v1/objects/ZTF18aadzfso/panel?k=4");
    let neighbours = panel["neighbours"].as_array().unwrap();
    assert_eq!(neighbours.len(), 4);
    let similar = ok(h, "/api/v1/objects/ZTF18aadzfso/similar?k=4&explain=true");
    assert_eq!(panel["similar"], similar);
    for (n, s) in neighbours
        .iter()
        .zip(similar["neighbours"].as_array().unwrap())
    {
        assert_eq!(n["object_id"], s["object_id"]);
        assert_eq!(n["lightcurve"]["object_id"], s["object_id"]);
        assert!(!s["explanation"]["closest"].as_array().unwrap().is_empty());
    }
    assert!(panel["classification"]["probabilities"].is_object());
    assert!(panel["anomaly"]["score"].is_number());
}

/// With `--tls-cert`/`--tls-key` the HTTP listener speaks TLS with the gRPC certificate: a
/// client trusting the test CA (data/tls) gets the API and the panel; a plaintext request gets
/// no HTTP answer; a client that does not finish its handshake holds up nobody.
#[test]
fn http_is_served_over_tls_with_the_grpc_certificate() {
    let dir = labelled_store(&[]);
    let identity = asterism::server::TlsIdentity {
        cert_pem: std::fs::read(data("tls/localhost.crt")).unwrap(),
        key_pem: std::fs::read(data("tls/localhost.key")).unwrap(),
    };
    let mut served = common::served::start_with(
        &dir.path().join("db"),
        asterism::server::ServerConfig {
            access: access(),
            tls: Some(identity),
            ..Default::default()
        },
        HttpConfig::default(),
    );
    let ca = std::fs::read(data("tls/ca.crt")).unwrap();
    // A silent client: connected, never says hello.
    let _silent = std::net::TcpStream::connect(served.http).unwrap();

    let stats = common::http::https_get(served.http, &ca, "localhost", "/api/v1/stats");
    assert_eq!(stats.status, 200, "{}", stats.text());
    assert_eq!(stats.json()["objects"], 60);
    let panel = common::http::https_get(served.http, &ca, "127.0.0.1", "/panel/1013184");
    assert_eq!(panel.status, 200);
    assert!(panel.text().contains("1013184"));

    // Plaintext HTTP to the TLS port: the server answers with a TLS alert, not HTTP.
    let mut plain = std::net::TcpStream::connect(served.http).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    use std::io::{Read, Write};
    plain
        .write_all(b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    served.shutdown();
}
