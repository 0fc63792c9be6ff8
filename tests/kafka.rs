//! `asterism consume` against a real Kafka-protocol broker (Tansu, started by each test; see
//! tests/common/kafka.rs), with real ZTF, Fink and Rubin packets from data/: stored exactly as
//! an ingest of the same packets stores them, SIGKILL at random moments with nothing lost and
//! nothing twice, poison messages quarantined, a group's partitions split between consumers,
//! and a second run reading only what is new.

#![cfg(feature = "kafka")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use asterism::alert::{self, DecodeOptions};
use asterism::engine::Engine;
use asterism::store::RawEntry;
use asterism::stream::{self, ConsumeConfig};
use common::kafka::{rubin_messages, ztf_messages, Broker};
use common::{config, data};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const TOPIC: &str = "alerts";

/// The schema tree `rubin_messages` writes under a test's temp dir.
fn tree(dir: &Path) -> PathBuf {
    dir.join("schemas")
}

fn rubin_options(dir: &Path) -> DecodeOptions {
    asterism::source::schema_options(&tree(dir)).unwrap()
}

/// `asterism consume` of `topic` into `db` until idle for `idle` seconds; its JSON summary.
fn consume(broker: &Broker, db: &Path, group: &str, extra: &[&str]) -> Value {
    std::fs::create_dir_all(tree(db.parent().unwrap())).unwrap();
    let out = consume_command(broker, db, group, extra).output().unwrap();
    summary(&out)
}

fn consume_command(broker: &Broker, db: &Path, group: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_asterism"));
    c.args(["consume", "--db"])
        .arg(db)
        .args([
            "--brokers",
            &broker.addr,
            "--topic",
            TOPIC,
            "--group",
            group,
        ])
        .arg("--schema")
        .arg(tree(db.parent().unwrap()))
        .args(["--exit-when-idle", "4", "--no-sync", "--json"])
        .args(["--kafka-option", "session.timeout.ms=6000"])
        .args(extra);
    c
}

fn summary(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "consume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The store an uninterrupted ingest of `messages` gives, one message per input, in order,
/// and the inputs it rejected (data/ztf holds real malformed packets).
fn reference(dir: &Path, messages: &[(String, Vec<u8>)]) -> (Engine, u64) {
    let engine = Engine::open(&dir.join("reference"), config()).unwrap();
    let opts = rubin_options(dir);
    let mut session = engine.session();
    for (name, bytes) in messages {
        session.add(alert::decode(name, bytes, &opts)).unwrap();
    }
    let report = session.finish().unwrap();
    let rejected: std::collections::HashSet<&str> = report
        .rejects
        .iter()
        .map(|r| r.source.split('#').next().unwrap_or_default())
        .collect();
    (engine, rejected.len() as u64)
}

/// Objects, alert ids and per-survey counts, byte for byte: what depends neither on how the
/// stream was cut into batches (vector versions and neighbour lists do) nor on the order in
/// which Kafka's partitions interleave the packets (merging is order-independent).
fn kept(engine: &Engine) -> Vec<RawEntry> {
    engine
        .store()
        .raw_entries()
        .unwrap()
        .into_iter()
        .filter(|(cf, k, _)| {
            *cf == "objects" || *cf == "alerts" || (*cf == "meta" && k.starts_with(b"counts"))
        })
        .collect()
}

/// The ZTF and Fink packets, then the Rubin ones (whose schema goes under `dir`).
fn all_messages(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut m = ztf_messages();
    m.extend(rubin_messages(&tree(dir)));
    m
}

/// Each partition's stored next offset.
fn stored_offsets(engine: &Engine) -> Vec<(i32, i64)> {
    engine
        .store()
        .offsets()
        .unwrap()
        .iter()
        .map(|o| (o.partition, o.next))
        .collect()
}

#[test]
fn consumed_alerts_are_stored_as_ingest_stores_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3);
    let messages = all_messages(dir.path());
    broker.produce(TOPIC, &messages);

    let db = dir.path().join("consumed");
    let s = consume(&broker, &db, "g", &[]);
    assert_eq!(s["messages"], messages.len() as u64);
    let (reference, rejected) = reference(dir.path(), &messages);
    assert!(rejected > 0, "data/ztf's malformed packets");
    assert_eq!(s["quarantined"], rejected, "{s}");
    let partitions = s["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3, "{s}");
    let next: i64 = partitions.iter().map(|p| p["next"].as_i64().unwrap()).sum();
    assert_eq!(next, messages.len() as i64);
    for p in partitions {
        assert_eq!(p["high_watermark"], p["next"], "caught up: {p}");
    }

    let consumed = Engine::open(&db, config()).unwrap();
    let (a, b) = (kept(&reference), kept(&consumed));
    assert!(a.len() > 100);
    assert!(
        a == b,
        "the consumed store differs from an ingest of the same packets"
    );
    assert!(consumed.check().unwrap().is_sound());
    // The Rubin objects came through the Confluent framing.
    let stats = consumed.stats().unwrap();
    assert!(stats.contains_key(&asterism::Survey::Lsst), "{stats:?}");
}

#[test]
fn a_consumer_killed_at_random_moments_loses_nothing_and_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3);
    // The real packets three times over: a replayed message must add nothing.
    let messages: Vec<_> = (0..3).flat_map(|_| all_messages(dir.path())).collect();
    broker.produce(TOPIC, &messages);

    let db = dir.path().join("crashed");
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(15);
    let mut killed = 0;
    let mut last: Vec<(i32, i64)> = Vec::new();
    for trial in 0..10 {
        let mut child = consume_command(&broker, &db, "crash", &["--batch-size", "3"])
            .env("RUST_LOG", "asterism::stream=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the partitions, then kill somewhere in the stream.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut lines = stderr.lines();
        let assigned = lines.any(|l| l.is_ok_and(|l| l.contains("assigned")));
        assert!(
            assigned,
            "trial {trial}: the consumer never got its partitions"
        );
        std::thread::spawn(move || lines.for_each(drop));
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..1500)));
        let running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        killed += usize::from(running);

        let engine = Engine::open(&db, config()).unwrap();
        let report = engine.check().unwrap();
        assert!(report.is_sound(), "trial {trial}: {:?}", report.problems);
        let now = stored_offsets(&engine);
        // Stored offsets only move forward.
        for (p, next) in &last {
            let after = now.iter().find(|(q, _)| q == p).map_or(0, |(_, n)| *n);
            assert!(after >= *next, "trial {trial}: partition {p} went back");
        }
        last = now;
    }
    assert!(
        killed >= 8,
        "only {killed} of 10 consumers were killed mid-run"
    );

    let s = consume(&broker, &db, "crash", &[]);
    let consumed = Engine::open(&db, config()).unwrap();
    let total: i64 = stored_offsets(&consumed).iter().map(|(_, n)| n).sum();
    assert_eq!(total, messages.len() as i64, "{s}");
    let (reference, _) = reference(dir.path(), &messages);
    assert!(
        kept(&reference) == kept(&consumed),
        "the store after 10 kills differs from an uninterrupted ingest"
    );
    assert!(consumed.check().unwrap().is_sound());
}

#[test]
fn poison_messages_are_quarantined_while_the_good_ones_land() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1);
    let good_ztf = std::fs::read(data("ztf/ZTF20abyfpze.avro")).unwrap();
    // The schema tree (`MAJOR/MINOR/*.avsc`) knows schema id 1000 and no other.
    let good_rubin = rubin_messages(&tree(dir.path())).remove(0).1;
    let mut unknown_id = good_rubin.clone();
    unknown_id[1..5].copy_from_slice(&999u32.to_be_bytes());
    let mut wrong_magic = good_rubin.clone();
    wrong_magic[0] = 7;
    let messages = vec![
        ("ztf".to_string(), good_ztf.clone()),
        ("garbage".to_string(), b"not an alert at all".to_vec()),
        (
            "truncated".to_string(),
            good_ztf[..good_ztf.len() / 2].to_vec(),
        ),
        ("unknown-id".to_string(), unknown_id),
        ("wrong-magic".to_string(), wrong_magic),
        ("rubin".to_string(), good_rubin),
    ];
    broker.produce(TOPIC, &messages);

    let db = dir.path().join("db");
    let out = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(["consume", "--db"])
        .arg(&db)
        .args(["--brokers", &broker.addr, "--topic", TOPIC, "--group", "g"])
        .arg("--schema")
        .arg(tree(dir.path()))
        .args(["--exit-when-idle", "4", "--json"])
        .args(["--kafka-option", "session.timeout.ms=6000"])
        .output()
        .unwrap();
    let s = summary(&out);
    assert_eq!(s["messages"], 6);
    assert_eq!(s["quarantined"], 4, "{s}");
    assert_eq!(s["objects_new"], 2, "{s}");
    assert_eq!(
        s["partitions"][0]["next"], 6,
        "the offsets moved past the poison"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(["quarantine", "--db"])
        .arg(&db)
        .arg("--json")
        .arg("--dump")
        .arg(dir.path().join("dump"))
        .output()
        .unwrap();
    let list = summary(&out);
    let list = list.as_array().unwrap();
    let offsets: Vec<i64> = list.iter().map(|q| q["offset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, [1, 2, 3, 4]);
    let reason = |i: usize| list[i]["reason"].as_str().unwrap().to_string();
    assert!(reason(0).contains("unrecognised format"), "{}", reason(0));
    assert!(reason(1).contains("Avro"), "{}", reason(1));
    assert!(reason(2).contains("schema id 999"), "{}", reason(2));
    assert!(reason(3).contains("unrecognised format"), "{}", reason(3));
    // The bytes are kept as they came.
    let kept = std::fs::read(dir.path().join(format!("dump/{TOPIC}-0-1.bin"))).unwrap();
    assert_eq!(kept, b"not an alert at all");

    let engine = Engine::open(&db, config()).unwrap();
    assert!(engine.object("ZTF20abyfpze").is_ok());
}

#[test]
fn two_consumers_of_one_group_split_the_partitions_and_store_every_alert_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3);
    let messages = all_messages(dir.path());
    let engine = Arc::new(Engine::open(&dir.path().join("db"), config()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let mut config = ConsumeConfig::new(&broker.addr, vec![TOPIC.to_string()], "pair");
    config.decode = rubin_options(dir.path());
    config.exit_when_idle = Some(Duration::from_secs(12));
    config.kafka_options = vec![("session.timeout.ms".into(), "6000".into())];
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (engine, config, stop) = (Arc::clone(&engine), config.clone(), Arc::clone(&stop));
            std::thread::spawn(move || stream::consume(&engine, &config, &stop, |_| {}).unwrap())
        })
        .collect();
    // Both members join (and the group settles) before anything is produced.
    std::thread::sleep(Duration::from_secs(8));
    broker.produce(TOPIC, &messages);
    let reports: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let counts: Vec<u64> = reports.iter().map(|r| r.messages).collect();
    assert!(
        counts.iter().all(|&n| n > 0),
        "one consumer read nothing: {counts:?}"
    );
    assert_eq!(counts.iter().sum::<u64>(), messages.len() as u64);
    // Usually each partition is read by one member; on a loaded machine a member can miss its
    // session and a rebalance hand its partitions to the other mid-run (a member's report then
    // names only what it held at the end, possibly none of them). Every partition's offset is
    // stored, and the sum above says no message was read twice.
    let mut partitions: Vec<i32> = engine
        .store()
        .offsets()
        .unwrap()
        .iter()
        .map(|p| p.partition)
        .collect();
    partitions.sort_unstable();
    partitions.dedup();
    assert_eq!(partitions, [0, 1, 2], "every partition read");
    assert!(reports.iter().all(|r| r
        .partitions
        .iter()
        .all(|p| partitions.contains(&p.partition))));
    let (reference, _) = reference(dir.path(), &messages);
    assert!(kept(&reference) == kept(&engine));
}

#[test]
fn a_second_run_reads_only_new_messages_even_under_another_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3);
    rubin_messages(&tree(dir.path())); // for its schema: `consume` is given one
    let ztf = ztf_messages();
    let (first, later) = ztf.split_at(40);
    broker.produce(TOPIC, first);
    let db = dir.path().join("db");
    let s = consume(&broker, &db, "g", &[]);
    assert_eq!(s["messages"], first.len() as u64);

    broker.produce(TOPIC, later);
    let s = consume(&broker, &db, "g", &[]);
    assert_eq!(s["messages"], later.len() as u64, "{s}");
    assert_eq!(s["alerts_duplicate"], 0, "{s}");

    // A new group starts where the store stands, not at the beginning of the topic.
    let s = consume(&broker, &db, "another", &[]);
    assert_eq!(s["messages"], 0, "{s}");

    // `stats` shows each partition with no lag.
    let out = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(["stats", "--json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let stats = summary(&out);
    let parts = stats["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p["lag"] == 0), "{stats}");
    let next: i64 = parts
        .iter()
        .map(|p| p["next_offset"].as_i64().unwrap())
        .sum();
    assert_eq!(next, ztf.len() as i64);
}

#[test]
fn serve_ingests_a_topic_while_it_answers_and_stores_its_last_batch_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3);
    let messages = all_messages(dir.path());
    let db = dir.path().join("db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(["serve", "--db"])
        .arg(&db)
        .args(["--addr", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--kafka-brokers", &broker.addr, "--kafka-topic", TOPIC])
        .args(["--kafka-group", "server", "--no-sync"])
        .arg("--schema")
        .arg(tree(dir.path()))
        .args(["--kafka-option", "session.timeout.ms=6000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let http: std::net::SocketAddr = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.strip_prefix("asterism HTTP API on http://") {
            break rest.split('/').next().unwrap().parse().unwrap();
        }
    };
    broker.produce(TOPIC, &messages);
    // The server's HTTP stats show the partitions filling up to the end of the topic.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stats = common::http::get(http, "/api/v1/stats").json();
        let stored: i64 = stats["partitions"].as_array().map_or(0, |ps| {
            ps.iter().map(|p| p["next_offset"].as_i64().unwrap()).sum()
        });
        if stored == messages.len() as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stuck at {stored}: {stats}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let object = common::http::get(http, "/api/v1/objects/ZTF20abyfpze").json();
    assert_eq!(object["object_id"], "ZTF20abyfpze", "{object}");

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(child.wait().unwrap().success());
    let engine = Engine::open(&db, config()).unwrap();
    let total: i64 = stored_offsets(&engine).iter().map(|(_, n)| n).sum();
    assert_eq!(total, messages.len() as i64);
    let (reference, _) = reference(dir.path(), &messages);
    assert!(kept(&reference) == kept(&engine));
}

/// A Confluent-compatible registry on 127.0.0.1:0 holding one schema (id 1000), counting the
/// lookups of each id. (Confluent's Schema Registry is a JVM service that cannot be installed
/// here; this answers its `GET /schemas/ids/{id}` contract over real HTTP.)
fn registry(schema: String) -> (String, Arc<std::sync::Mutex<Vec<u32>>>) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::StatusCode;
    use axum::Json;
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let state = (schema, Arc::clone(&asked));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/schemas/ids/{id}",
                    axum::routing::get(
                        |State((schema, asked)): State<(
                            String,
                            Arc<std::sync::Mutex<Vec<u32>>>,
                        )>,
                         UrlPath(id): UrlPath<u32>| async move {
                            asked.lock().unwrap().push(id);
                            if id == 1000 {
                                (
                                    StatusCode::OK,
                                    Json(serde_json::json!({ "schema": schema })),
                                )
                            } else {
                                (
                                    StatusCode::NOT_FOUND,
                                    Json(serde_json::json!({
                                        "error_code": 40403, "message": "Schema not found"
                                    })),
                                )
                            }
                        },
                    ),
                )
                .route(
                    "/subjects/{subject}/versions",
                    axum::routing::post(
                        |State((_, asked)): State<(String, Arc<std::sync::Mutex<Vec<u32>>>)>,
                         UrlPath(subject): UrlPath<String>,
                         body: String| async move {
                            // The registration of the published records' schema: id 7.
                            let parsed: Value = serde_json::from_str(&body).unwrap();
                            assert!(parsed["schema"].as_str().unwrap().contains("ObjectUpdate"));
                            assert_eq!(subject, "updates-value");
                            asked.lock().unwrap().push(7);
                            Json(serde_json::json!({ "id": 7 }))
                        },
                    ),
                )
                .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), asked)
}

#[test]
fn schemas_come_from_a_registry_once_per_id() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1);
    broker.create_topic("updates", 1);
    let mut messages = rubin_messages(&tree(dir.path()));
    let mut unknown = messages[0].1.clone();
    unknown[1..5].copy_from_slice(&1100u32.to_be_bytes());
    messages.push(("unknown".into(), unknown.clone()));
    messages.push(("unknown-again".into(), unknown));
    broker.produce(TOPIC, &messages);
    let schema =
        std::fs::read_to_string(tree(dir.path()).join("10").join("0").join("alert.avsc")).unwrap();
    let (url, asked) = registry(schema);

    let out = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(["consume", "--db"])
        .arg(dir.path().join("db"))
        .args(["--brokers", &broker.addr, "--topic", TOPIC, "--group", "g"])
        .args(["--schema-registry", &url, "--exit-when-idle", "4", "--json"])
        .args(["--publish-topic", "updates"])
        .args(["--kafka-option", "session.timeout.ms=6000"])
        .output()
        .unwrap();
    let s = summary(&out);
    assert_eq!(s["messages"], messages.len() as u64);
    assert_eq!(s["quarantined"], 2, "{s}");
    assert!(s["objects_new"].as_u64().unwrap() >= 5, "{s}");
    assert!(
        s["rejects"][0]["reason"].as_str().unwrap().contains("1100"),
        "{s}"
    );
    // The update schema registered first (id 7); then each id asked for once: 1000 found and
    // cached, 1100 not found.
    assert_eq!(*asked.lock().unwrap(), [7, 1000, 1100]);
    // With a registry, the updates are Confluent-framed datums under the registered id.
    let published = s["published"].as_u64().unwrap() as usize;
    assert!(published >= 5);
    let updates = broker.read_all("updates", published);
    assert_eq!(updates.len(), published);
    let schema = apache_avro::Schema::parse_str(asterism::stream::OBJECT_UPDATE_SCHEMA).unwrap();
    for (key, payload) in updates {
        assert_eq!(payload[..5], [0, 0, 0, 0, 7]);
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .unwrap();
        let value = reader.read_value(&mut &payload[5..]).unwrap();
        assert_eq!(update_fields(value)["objectId"], key.as_str());
    }
}

/// The fields of a published object update, as a downstream reader decodes them.
fn update_fields(value: apache_avro::types::Value) -> std::collections::HashMap<String, Value> {
    let json: Value = apache_avro::from_value(&value).unwrap();
    json.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn each_object_a_batch_changed_is_published_for_downstream_readers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3);
    broker.create_topic("updates", 3);
    let messages = all_messages(dir.path());
    broker.produce(TOPIC, &messages);
    let db = dir.path().join("db");
    // Every message in one batch, so the published state is the final one.
    let s = consume(
        &broker,
        &db,
        "g",
        &[
            "--publish-topic",
            "updates",
            "--batch-size",
            "100000",
            "--max-batch-delay-ms",
            "4000",
        ],
    );
    let engine = Engine::open(&db, config()).unwrap();
    let objects: u64 = engine.stats().unwrap().values().map(|c| c.objects).sum();
    assert_eq!(s["published"], objects, "{s}");

    let updates = broker.read_all("updates", objects as usize);
    assert_eq!(updates.len() as u64, objects);
    let schema = apache_avro::Schema::parse_str(asterism::stream::OBJECT_UPDATE_SCHEMA).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (key, payload) in updates {
        // A one-record Avro container, readable by any Avro library.
        let mut reader = apache_avro::Reader::new(&payload[..]).unwrap();
        assert_eq!(reader.writer_schema(), &schema);
        let u = update_fields(reader.next().unwrap().unwrap());
        assert!(reader.next().is_none());
        assert_eq!(u["objectId"], key.as_str());
        let record = engine.object(&key).unwrap();
        assert_eq!(u["nDetections"], record.detections.len());
        assert_eq!(u["survey"], record.survey.as_str());
        let neighbours: Vec<(String, f64)> = engine
            .neighbours(&key)
            .unwrap()
            .into_iter()
            .map(|n| (n.object_id, f64::from(n.distance)))
            .collect();
        let published: Vec<(String, f64)> = u["neighbours"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let n = n.as_object().unwrap();
                (
                    n["objectId"].as_str().unwrap().to_string(),
                    n["distance"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(published, neighbours, "{key}");
        match engine.classify(&key) {
            Ok(c) => {
                let pc = &u["classification"];
                assert_eq!(pc["method"], c.method, "{key}");
                assert_eq!(pc["class"], serde_json::json!(c.class), "{key}");
            }
            Err(_) => assert!(u["classification"].is_null(), "{key}"),
        }
        let version = engine.store().vector_versions(&key).unwrap();
        assert_eq!(
            u["embeddingVersion"],
            serde_json::json!(version.last().map(|(seq, _)| *seq)),
            "{key}"
        );
        assert!(seen.insert(key), "published twice");
    }
}

#[test]
fn the_watchdog_ends_a_consumer_whose_broker_stops_answering() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1);
    broker.produce(TOPIC, &ztf_messages()[..5]);
    let db = dir.path().join("db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(["consume", "--db"])
        .arg(&db)
        .args(["--brokers", &broker.addr, "--topic", TOPIC, "--group", "g"])
        .args([
            "--watchdog",
            "3",
            "--kafka-option",
            "session.timeout.ms=6000",
        ])
        .env("RUST_LOG", "asterism::stream=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("assigned"))));
    let rest = std::thread::spawn(move || lines.map_while(|l| l.ok()).collect::<Vec<_>>());
    // Caught up, then the broker goes away.
    std::thread::sleep(Duration::from_secs(3));
    drop(broker);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the consumer did not give up on a dead broker");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!status.success());
    let log = rest.join().unwrap().join("\n");
    assert!(log.contains("the broker does not answer"), "{log}");
    // What it read before is stored.
    let engine = Engine::open(&db, config()).unwrap();
    assert_eq!(stored_offsets(&engine), [(0, 5)]);
}

#[test]
fn replicas_and_consumer_threads_store_the_same_objects_and_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3);
    let messages = all_messages(dir.path());
    broker.produce(TOPIC, &messages);
    // Two replicas, a group each: one with one consumer thread, one with three threads
    // sharing the partitions and the store.
    let (db_a, db_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = consume(&broker, &db_a, "replica-a", &[]);
    let b = consume(&broker, &db_b, "replica-b", &["--consumers", "3"]);
    for s in [&a, &b] {
        assert_eq!(s["messages"], messages.len() as u64, "{s}");
        assert_eq!(s["partitions"].as_array().unwrap().len(), 3, "{s}");
    }
    assert_eq!(a["objects_new"], b["objects_new"]);
    assert_eq!(a["alerts_read"], b["alerts_read"]);
    let (ea, eb) = (
        Engine::open(&db_a, config()).unwrap(),
        Engine::open(&db_b, config()).unwrap(),
    );
    assert!(kept(&ea) == kept(&eb), "the replicas differ");
    assert!(eb.check().unwrap().is_sound());
    // The scaler is fitted when a store reaches its fitting sizes, on the objects it holds
    // then, which depends on how the partitions interleaved; refitted on the same objects
    // (`reindex`, or the automatic refit as the store doubles), the replicas answer alike:
    // the same exact similarity answers (`as_of` after every detection: exact search over
    // the current vectors; each replica's HNSW graph depends on its insertion order, and
    // USearch's may miss a neighbour the other finds) and, but for a few boundary objects,
    // the same classes.
    ea.reindex(&asterism::engine::ReindexOptions::default())
        .unwrap();
    eb.reindex(&asterism::engine::ReindexOptions::default())
        .unwrap();
    assert_eq!(ea.spec().scaler, eb.spec().scaler);
    let ids: Vec<String> = ea
        .store()
        .raw_entries()
        .unwrap()
        .into_iter()
        .filter(|(cf, _, _)| *cf == "objects")
        .map(|(_, k, _)| String::from_utf8(k).unwrap())
        .collect();
    assert!(ids.len() > 50);
    let mut compared = 0;
    let mut differing = Vec::new();
    for id in &ids {
        let after_all = Some(100_000.0);
        let (Ok(na), Ok(nb)) = (ea.similar(id, 5, after_all), eb.similar(id, 5, after_all)) else {
            continue;
        };
        // Equal distances, and equal neighbours but for ties in distance (two objects at the
        // same distance may come in either order, or either may make the cut at k).
        let answer = |v: &[asterism::model::Neighbour]| -> (Vec<String>, Vec<String>) {
            let last = v.last().map(|n| format!("{:.5}", n.distance));
            let distances: Vec<String> = v.iter().map(|n| format!("{:.5}", n.distance)).collect();
            let mut inside: Vec<String> = v
                .iter()
                .filter(|n| Some(format!("{:.5}", n.distance)) != last)
                .map(|n| format!("{:.5} {}", n.distance, n.object_id))
                .collect();
            inside.sort();
            (distances, inside)
        };
        assert_eq!(answer(&na), answer(&nb), "{id}");
        // The vote reads its candidates from each replica's approximate index, whose graph
        // depends on the insertion order: an object on a class boundary may get another
        // candidate and flip. Nearly every class must agree.
        let (ca, cb) = (ea.classify(id).unwrap(), eb.classify(id).unwrap());
        if (&ca.class, &ca.method) != (&cb.class, &cb.method) {
            differing.push(format!("{id}: {:?} vs {:?}", ca.class, cb.class));
        }
        compared += 1;
    }
    assert!(compared > 50, "{compared}");
    assert!(
        differing.len() * 20 <= compared,
        "{} of {compared} classes differ: {differing:?}",
        differing.len()
    );
}

#[test]
fn sigterm_ends_consume_with_its_last_batch_stored_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3);
    let messages = ztf_messages();
    let db = dir.path().join("db");
    // No idle exit: it runs until told to stop; a long batch delay keeps a batch pending.
    let mut child = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(["consume", "--db"])
        .arg(&db)
        .args(["--brokers", &broker.addr, "--topic", TOPIC, "--group", "g"])
        .arg("--json")
        .args(["--max-batch-delay-ms", "600000", "--batch-size", "100000"])
        .args(["--kafka-option", "session.timeout.ms=6000"])
        .env("RUST_LOG", "asterism::stream=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("assigned"))));
    std::thread::spawn(move || lines.for_each(drop));
    broker.produce(TOPIC, &messages);
    std::thread::sleep(Duration::from_secs(3));
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().unwrap();
    let s = summary(&out);
    assert_eq!(s["messages"], messages.len() as u64, "{s}");
    let engine = Engine::open(&db, config()).unwrap();
    let total: i64 = stored_offsets(&engine).iter().map(|(_, n)| n).sum();
    assert_eq!(
        total,
        messages.len() as i64,
        "the pending batch was stored on SIGTERM"
    );
}
