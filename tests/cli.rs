//! The `asterism` binary: JSON output of ingest, object and stats; clear errors; and a process
//! killed with SIGKILL mid-ingest that, run again, ends with the store of an uninterrupted run.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use asterism::engine::Engine;
use asterism::index::IndexBackend;
use common::{config, data};
use serde_json::Value;

fn asterism(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(args)
        .output()
        .expect("run asterism");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn db_arg(dir: &Path) -> String {
    dir.join("db").to_string_lossy().into_owned()
}

#[test]
fn ingest_object_and_stats_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_arg(dir.path());
    let ztf = data("ztf").to_string_lossy().into_owned();
    let (ok, summary, err) = asterism(&["ingest", "--db", &db, &ztf, "--json"]);
    assert!(ok, "{err}");
    for key in [
        "alerts_read",
        "alerts_rejected",
        "objects_new",
        "objects_updated",
        "detections_added",
        "rejects",
    ] {
        assert!(summary.get(key).is_some(), "missing {key} in {summary}");
    }
    // 1 + 1 + 4 (+5 bad) + 1 (+1 bad) + 21 + 30 + 4 + 3 + 1 good alerts.
    assert_eq!(summary["alerts_read"], 66);
    let rejects = summary["rejects"].as_array().unwrap();
    for bad in [
        "516401801315010009",
        "516434762915010006",
        "516442330015015017",
        "516442805615015004",
        "516476004815015005",
        "121540793515135009",
    ] {
        let r = rejects
            .iter()
            .find(|r| r["source"].as_str().unwrap().contains(bad))
            .unwrap_or_else(|| panic!("{bad} not rejected: {rejects:?}"));
        assert!(!r["reason"].as_str().unwrap().is_empty());
    }

    let (ok, obj, err) = asterism(&["object", "--db", &db, "ZTF18abxhyqv", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(obj["object_id"], "ZTF18abxhyqv");
    assert_eq!(obj["survey"], "ztf");
    assert_eq!(obj["n_detections"], 7);
    let dets = obj["detections"].as_array().unwrap();
    assert_eq!(dets.len(), 7);
    let named = dets
        .iter()
        .find(|d| d["source_id"] == 673285273115015035i64)
        .expect("the 3.1 packet's candidate");
    assert_eq!(named["band"], "i");
    assert!((named["value"].as_f64().unwrap() - 18.883150100708008).abs() < 1e-9);
    assert!(named["error"].as_f64().is_some());
    assert!(named["mjd"].as_f64().is_some());
    assert_eq!(obj["upper_limits"].as_array().unwrap().len(), 9);
    assert!(obj["annotations"].is_object());

    let (ok, stats, _) = asterism(&["stats", "--db", &db, "--json"]);
    assert!(ok);
    assert_eq!(stats["surveys"]["ztf"]["alerts"], 66);
    assert_eq!(stats["alerts"], 66);

    // Again, with a smaller block cache: the same store, nothing new.
    let (ok, again, err) = asterism(&[
        "ingest",
        "--db",
        &db,
        &ztf,
        "--block-cache-mib",
        "8",
        "--json",
    ]);
    assert!(ok, "{err}");
    assert_eq!(again["objects_new"], 0);
    assert_eq!(again["objects_updated"], 0);
    assert_eq!(again["detections_added"], 0);
    let (ok, _, err) = asterism(&["ingest", "--db", &db, &ztf, "--block-cache-mib", "lots"]);
    assert!(!ok && err.contains("--block-cache-mib"), "{err}");
}

#[test]
fn unknown_objects_and_bad_paths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_arg(dir.path());
    let one = data("ztf/472263571115115000.avro")
        .to_string_lossy()
        .into_owned();
    assert!(asterism(&["ingest", "--db", &db, &one]).0);
    let (ok, _, err) = asterism(&["object", "--db", &db, "ZTF00nothing"]);
    assert!(!ok);
    assert_eq!(err.trim(), "error: unknown object `ZTF00nothing`");

    let missing = dir.path().join("nowhere").to_string_lossy().into_owned();
    let (ok, _, err) = asterism(&["stats", "--db", &missing]);
    assert!(!ok);
    assert!(err.contains("no database at"), "{err}");

    let (ok, _, err) = asterism(&["ingest", "--db", &one, &one]);
    assert!(!ok);
    assert!(err.contains("cannot open the database"), "{err}");
    assert!(!err.contains("panicked"));

    let (ok, summary, _) = asterism(&["ingest", "--db", &db, &missing, "--json"]);
    assert!(ok, "a missing input is a reject, not a failure");
    assert_eq!(summary["alerts_rejected"], 1);
    assert!(summary["rejects"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("No such file"));
}

/// Kills `asterism ingest` with SIGKILL after a few committed batches, runs it again on the
/// same input, and compares every key and value with a store that was never interrupted.
#[test]
fn sigkill_mid_ingest_then_rerun_equals_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = data(".").to_string_lossy().into_owned();
    let args = |db: &str| {
        vec![
            "ingest".to_string(),
            "--db".into(),
            db.into(),
            input.clone(),
            "--batch-size".into(),
            "3".into(),
            "--json".into(),
        ]
    };

    let reference = db_arg(&dir.path().join("reference"));
    let out = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(args(&reference))
        .output()
        .unwrap();
    assert!(out.status.success());

    let crashed = db_arg(&dir.path().join("crashed"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(args(&crashed))
        .env("RUST_LOG", "asterism=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut committed = 0;
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().contains("committed batch") {
            committed += 1;
            if committed == 20 {
                child.kill().unwrap(); // SIGKILL on Unix
                break;
            }
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(committed, 20, "the ingest ended before it could be killed");
    assert!(!status.success(), "the child was killed mid-ingest");

    let partial = Engine::open(Path::new(&crashed), config()).unwrap();
    let partial_entries = partial.store().raw_entries().unwrap().len();
    drop(partial);
    assert!(partial_entries > 3, "batches before the kill are durable");

    let out = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(args(&crashed))
        .output()
        .unwrap();
    assert!(out.status.success());

    let a = Engine::open(Path::new(&reference), config()).unwrap();
    let b = Engine::open(Path::new(&crashed), config()).unwrap();
    let (ea, eb) = (
        a.store().raw_entries().unwrap(),
        b.store().raw_entries().unwrap(),
    );
    assert!(ea.len() > partial_entries);
    assert_eq!(ea.len(), eb.len());
    // Objects, alerts, counts, embedding versions, the spec: byte for byte. The neighbour lists
    // come from approximate (randomised) HNSW searches, so they are compared by overlap.
    let exact = |entries: &[asterism::store::RawEntry]| -> Vec<asterism::store::RawEntry> {
        entries
            .iter()
            .filter(|(cf, k, _)| *cf != "neighbours" && k.as_slice() != b"index_dump")
            .cloned()
            .collect()
    };
    assert!(
        exact(&ea) == exact(&eb),
        "the resumed store differs from the uninterrupted one"
    );
    let (mut shared, mut total) = (0usize, 0usize);
    a.store()
        .for_each_neighbours(|id, list| {
            let other = b.store().neighbours(id).unwrap().unwrap_or_default();
            total += list.len();
            shared += list
                .iter()
                .filter(|n| other.iter().any(|o| o.object_id == n.object_id))
                .count();
            true
        })
        .unwrap();
    assert!(total > 0);
    assert!(
        shared as f64 >= 0.95 * total as f64,
        "neighbour lists agree on {shared} of {total}"
    );
}

/// `check` passes a store as ingested, and names the damage after a neighbour list is made to
/// name an object that does not exist (exit status 1).
#[test]
fn check_passes_a_sound_store_and_names_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_arg(dir.path());
    let ztf = data("ztf").to_string_lossy().into_owned();
    let lightcurves = data("lightcurves").to_string_lossy().into_owned();
    let (ok, _, err) = asterism(&["ingest", "--db", &db, &ztf, &lightcurves]);
    assert!(ok, "{err}");
    let (ok, report, err) = asterism(&["check", "--db", &db, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(report["problem_count"], 0, "{report}");
    assert!(report["objects"].as_u64().unwrap() > 60);
    assert_eq!(report["objects"], report["indexed"]);

    {
        let engine = Engine::open(Path::new(&db), config()).unwrap();
        let mut list = engine.neighbours("1013184").unwrap();
        list[0].object_id = "ghost".into();
        let batch = asterism::store::Batch {
            neighbours: vec![("1013184".into(), list)],
            ..Default::default()
        };
        engine.store().write(&batch).unwrap();
    }
    let (ok, report, _) = asterism(&["check", "--db", &db, "--json"]);
    assert!(!ok);
    assert_eq!(report["problem_count"], 1, "{report}");
    let problem = report["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("1013184") && problem.contains("ghost"),
        "{problem}"
    );

    // An offline backup of the (damaged) store is a faithful copy: the same damage.
    let copy = dir.path().join("copy").to_string_lossy().into_owned();
    let (ok, backup, err) = asterism(&["backup", "--db", &db, "--out", &copy, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(backup["index_dump"], true);
    let (ok, again, _) = asterism(&["check", "--db", &copy, "--json"]);
    assert!(!ok);
    assert_eq!(again["problems"], report["problems"]);
}

/// `generate` run outside the repository says where it looked for its default inputs.
#[test]
fn generate_outside_the_repository_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(["generate", "--out", "gen", "--objects", "3"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("looked for data/lightcurves, data/ztf, data/fink under"),
        "{err}"
    );
    assert!(err.contains("repository root"), "{err}");
}

/// A USearch store of `data/lightcurves` made by `ingest --index usearch`: its folder, its
/// `--db` and the lightcurves' path.
fn usearch_store_of_lightcurves() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = db_arg(dir.path());
    let curves = data("lightcurves").to_string_lossy().into_owned();
    let (ok, _, err) = asterism(&["ingest", "--db", &db, &curves, "--index", "usearch"]);
    assert!(ok, "{err}");
    (dir, db, curves)
}

/// `similar` answers five neighbours of an SN Ia of `data/lightcurves` from the store at `db`.
fn assert_five_similar(db: &str) {
    let (ok, hits, err) = asterism(&["similar", "--db", db, "1013184", "-k", "5", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(
        hits["neighbours"].as_array().map(Vec::len),
        Some(5),
        "{hits}"
    );
}

/// `--index usearch` makes a USearch store; later commands use it without the flag, and naming
/// the other backend on it is an error that says which backend the store has.
#[test]
fn the_index_backend_is_chosen_at_creation() {
    let (dir, db, curves) = usearch_store_of_lightcurves();
    assert!(dir.path().join("db/index").read_dir().unwrap().any(|f| f
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".usearch")));
    assert_five_similar(&db);
    let (ok, _, err) = asterism(&["ingest", "--db", &db, &curves, "--index", "hnsw_rs"]);
    assert!(!ok);
    assert!(err.contains("created with usearch"), "{err}");
    let (ok, _, err) = asterism(&["ingest", "--db", &db, &curves, "--index", "usearch"]);
    assert!(ok, "{err}");
    let (ok, _, err) = asterism(&["ingest", "--db", &db, &curves, "--index", "faiss"]);
    assert!(!ok && err.contains("hnsw_rs"), "{err}");
    let engine = Engine::open(&dir.path().join("db"), config()).unwrap();
    assert_eq!(engine.index_backend(), IndexBackend::Usearch);
}

/// `reindex --build-expansion N` rebuilds the graph with N candidates and records them; an N
/// out of range is refused before anything changes.
#[test]
fn reindex_records_the_build_expansion_it_is_given() {
    let (dir, db, _) = usearch_store_of_lightcurves();
    let (ok, _, err) = asterism(&["reindex", "--db", &db, "--build-expansion", "2"]);
    assert!(!ok);
    assert!(
        err.contains("invalid index parameter") && err.contains(">= connectivity"),
        "{err}"
    );
    let (ok, report, err) =
        asterism(&["reindex", "--db", &db, "--build-expansion", "300", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(report["build_expansion"], 300, "{report}");
    assert!(report["objects"].as_u64().unwrap() > 50, "{report}");
    let (ok, report, err) = asterism(&["reindex", "--db", &db, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(report["build_expansion"], 300, "kept: {report}");
    assert_five_similar(&db);
    let engine = Engine::open(&dir.path().join("db"), config()).unwrap();
    assert_eq!(engine.index_config().build_expansion(), 300);
}

/// A new store's backend without `--index`: USearch (the measured winner), or the one
/// `ASTERISM_INDEX` names; a name that is no backend is refused before anything is written.
#[test]
fn the_default_index_is_usearch_unless_the_environment_names_another() {
    let curves = data("lightcurves").to_string_lossy().into_owned();
    for (env, expected) in [
        (None, IndexBackend::Usearch),
        (Some("hnsw_rs"), IndexBackend::HnswRs),
        (Some("usearch"), IndexBackend::Usearch),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = db_arg(dir.path());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_asterism"));
        cmd.args(["ingest", "--db", &db, &curves]);
        match env {
            Some(name) => cmd.env("ASTERISM_INDEX", name),
            None => cmd.env_remove("ASTERISM_INDEX"),
        };
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let engine = Engine::open(&dir.path().join("db"), config()).unwrap();
        assert_eq!(engine.index_backend(), expected, "ASTERISM_INDEX={env:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = db_arg(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_asterism"))
        .args(["ingest", "--db", &db, &curves])
        .env("ASTERISM_INDEX", "faiss")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ASTERISM_INDEX=faiss is not an index backend"),
        "{err}"
    );
    assert!(!dir.path().join("db").exists(), "nothing written");
}

/// A full disk, simulated with a file size limit (`ulimit -f`, SIGXFSZ ignored: the write
/// fails with EFBIG as it would with ENOSPC): `ingest` stops with an error naming the store and
/// saying the batch was not stored; the store passes `check`; run again with room, it ends
/// equal to a store that never ran out.
#[test]
fn a_full_disk_stops_ingest_with_a_clear_error_and_no_damage() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_arg(dir.path());
    let inputs: Vec<String> = ["ztf", "fink", "lightcurves"]
        .iter()
        .map(|d| data(d).to_string_lossy().into_owned())
        .collect();
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -f 500; trap '' XFSZ; exec "$@""#)
        .arg("bash")
        .arg(env!("CARGO_BIN_EXE_asterism"))
        .args(["ingest", "--db", &db, "--batch-size", "50"])
        .args(&inputs)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ingest succeeded past the limit");
    assert!(
        err.contains(&format!("cannot write to the database at {db}"))
            && err.contains("File too large")
            && err.contains("the batch being written was not stored"),
        "{err}"
    );
    let (ok, report, err) = asterism(&["check", "--db", &db, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(report["problem_count"], 0, "{report}");
    let partial = report["objects"].as_u64().unwrap();
    assert!(
        partial > 0,
        "some batches were stored before the disk filled"
    );

    let mut again = vec!["ingest", "--db", &db];
    again.extend(inputs.iter().map(String::as_str));
    let (ok, _, err) = asterism(&again);
    assert!(ok, "{err}");
    let clean = db_arg(&dir.path().join("clean"));
    let mut fresh = vec!["ingest", "--db", &clean];
    fresh.extend(inputs.iter().map(String::as_str));
    let (ok, _, err) = asterism(&fresh);
    assert!(ok, "{err}");
    let (_, resumed, _) = asterism(&["stats", "--db", &db, "--json"]);
    let (_, expected, _) = asterism(&["stats", "--db", &clean, "--json"]);
    assert_eq!(resumed, expected);
    assert!(resumed["objects"].as_u64().unwrap() > partial);
    let (ok, report, _) = asterism(&["check", "--db", &db, "--json"]);
    assert!(ok && report["problem_count"] == 0, "{report}");
}

/// A store whose directory the user cannot write: commands fail at open with an error that
/// says so, and nothing in it changes. (As root, the command runs as `nobody` via setpriv:
/// root writes through permission bits.)
#[test]
fn a_read_only_store_gives_a_clear_error_and_stays_unchanged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = db_arg(dir.path());
    let ztf = data("ztf").to_string_lossy().into_owned();
    let (ok, _, err) = asterism(&["ingest", "--db", &db, &ztf]);
    assert!(ok, "{err}");
    let listing = |path: &Path| -> Vec<(String, u64)> {
        let mut files: Vec<(String, u64)> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let before = listing(Path::new(&db));
    let set_mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set_mode(dir.path(), 0o755);
    set_mode(Path::new(&db), 0o555);
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let run = |args: &[&str]| {
        let mut command = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_asterism"));
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_asterism"))
        };
        command.args(args).output().unwrap()
    };
    for args in [
        vec!["stats", "--db", &db],
        vec!["ingest", "--db", &db, &ztf],
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(&format!("cannot open the database at {db}"))
                && err.contains("not writable by this user"),
            "{args:?}: {err}"
        );
    }
    set_mode(Path::new(&db), 0o755);
    assert_eq!(listing(Path::new(&db)), before);
    let (ok, report, err) = asterism(&["check", "--db", &db, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(report["problem_count"], 0, "{report}");
}

/// `ingest --bulk` seeds an empty store (its JSON adds what the second pass did), and refuses
/// a store that already holds embeddings, saying what to run instead.
#[test]
fn ingest_bulk_seeds_an_empty_store_and_refuses_a_filled_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_arg(dir.path());
    let ztf = data("ztf").to_string_lossy().into_owned();
    let curves = data("lightcurves").to_string_lossy().into_owned();
    let (ok, report, err) = asterism(&["ingest", "--bulk", "--db", &db, &ztf, &curves, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(report["seed"]["objects"], report["objects_new"]);
    assert!(
        report["seed"]["links"].as_u64().unwrap() >= 10 * report["objects_new"].as_u64().unwrap()
    );
    let (ok, check, _) = asterism(&["check", "--db", &db, "--json"]);
    assert!(ok && check["problem_count"] == 0, "{check}");
    let (ok, _, err) = asterism(&["ingest", "--bulk", "--db", &db, &ztf]);
    assert!(!ok);
    assert!(err.contains("ingest without --bulk"), "{err}");
}

/// `serve --ef-search N` answers with that many search candidates on a USearch store; a zero
/// and an hnsw_rs store are clear errors before anything is served.
#[test]
fn serve_takes_an_ef_search_on_usearch_stores_only() {
    use asterism::server::proto::asterism_client::AsterismClient;
    use asterism::server::proto::{self as pb, find_similar_request::Query};

    let dir = tempfile::tempdir().unwrap();
    let db = db_arg(dir.path());
    let ztf = data("ztf").to_string_lossy().into_owned();
    assert!(asterism(&["ingest", "--db", &db, &ztf, "--index", "usearch"]).0);
    let (ok, _, err) = asterism(&["serve", "--db", &db, "--ef-search", "0"]);
    assert!(!ok && err.contains("--ef-search"), "{err}");

    let (mut child, addr) = common::serve_process(Path::new(&db), &["--ef-search", "8"], &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let mut c = AsterismClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let q = pb::FindSimilarRequest {
            query: Some(Query::ObjectId("ZTF18abxhyqv".into())),
            k: 3,
            ..Default::default()
        };
        c.find_similar(q).await.unwrap().into_inner().neighbours
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance));

    let other = dir.path().join("hnsw").to_string_lossy().into_owned();
    assert!(asterism(&["ingest", "--db", &other, &ztf, "--index", "hnsw_rs"]).0);
    let (ok, _, err) = asterism(&["serve", "--db", &other, "--ef-search", "32"]);
    assert!(!ok, "an hnsw_rs store refuses it");
    assert!(
        err.contains("--ef-search") && err.contains("hnsw_rs"),
        "{err}"
    );
}
