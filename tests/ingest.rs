//! Objects in a real RocksDB: merging successive packets, de-duplication across packets and
//! formats, idempotent re-ingest, rejects that lose nothing.

mod common;

use std::io::Write;

use asterism::alert::DecodeOptions;
use asterism::engine::{Engine, EngineError};
use asterism::model::Survey;
use asterism::source;
use asterism::store::StoreError;
use common::{config, data, decode, engine, ingest};

#[test]
fn successive_ztf_packets_become_one_object_with_each_detection_once() {
    let (_dir, engine) = engine();
    let report = ingest(&engine, &["ztf/ZTF18abxhyqv.tar.gz"]);
    assert_eq!(report.alerts_read, 4);
    assert_eq!(report.objects_new, 1);
    let o = engine.object("ZTF18abxhyqv").unwrap();
    // 7 distinct (jd, fid) detections and 9 distinct limits across the 4 packets (fastavro).
    assert_eq!(o.detections.len(), 7);
    assert_eq!(o.upper_limits.len(), 9);
    assert_eq!(report.detections_added, 7);
    assert!(o.detections.windows(2).all(|w| w[0].mjd <= w[1].mjd));
    assert_eq!(o.meta.first_mjd, Some(o.detections[0].mjd));
    let stats = engine.stats().unwrap();
    let ztf = stats[&Survey::Ztf];
    assert_eq!((ztf.objects, ztf.alerts, ztf.detections), (1, 4, 7));
}

#[test]
fn the_21_tde_alerts_become_one_lightcurve() {
    let (_dir, engine) = engine();
    let report = ingest(&engine, &["fink/tde_ZTF20abfcszi_202008.parquet"]);
    assert_eq!(report.alerts_read, 21);
    assert_eq!(report.objects_new, 1);
    let o = engine.object("ZTF20abfcszi").unwrap();
    assert_eq!(o.detections.len(), 57);
    let ids: std::collections::BTreeSet<i64> =
        o.detections.iter().filter_map(|d| d.source_id).collect();
    assert_eq!(ids.len(), 57, "each candid once");
    // Annotations are dated by the alert that carried them: the latest alert's.
    let last_alert = decode("fink/tde_ZTF20abfcszi_202008.parquet")
        .alerts
        .iter()
        .map(|a| a.mjd)
        .fold(f64::MIN, f64::max);
    assert_eq!(o.annotations["cdsxmatch"].mjd, last_alert);
}

#[test]
fn out_of_order_packets_give_the_same_object() {
    let mut alerts = decode("ztf/ZTF18abxhyqv.tar.gz").alerts;
    alerts.sort_by(|a, b| a.mjd.total_cmp(&b.mjd));
    let (_d1, in_order) = engine();
    for a in &alerts {
        in_order.apply(std::slice::from_ref(a)).unwrap();
    }
    let (_d2, reversed) = engine();
    for a in alerts.iter().rev() {
        reversed.apply(std::slice::from_ref(a)).unwrap();
    }
    assert_eq!(
        in_order.object("ZTF18abxhyqv").unwrap(),
        reversed.object("ZTF18abxhyqv").unwrap()
    );
    // Objects and alerts byte for byte; the embedding history differs (it records what was
    // known when), but the current vector does not.
    let stored = |e: &asterism::Engine| {
        let mut v = e.store().raw_entries().unwrap();
        v.retain(|(cf, _, _)| *cf == "objects" || *cf == "alerts");
        v
    };
    assert_eq!(stored(&in_order), stored(&reversed));
    let latest = |e: &asterism::Engine| {
        let v = e.store().vector_versions("ZTF18abxhyqv").unwrap();
        format!("{:?}", v.last().unwrap().1.raw)
    };
    assert_eq!(latest(&in_order), latest(&reversed));
}

#[test]
fn a_detection_seen_in_a_table_and_in_packets_is_stored_once() {
    let (dir, engine) = engine();
    ingest(&engine, &["ztf/ZTF18abxhyqv.tar.gz"]);
    let before = engine.object("ZTF18abxhyqv").unwrap();
    // The same photometry as a data release would ship it: a CSV, times in MJD, mags rounded.
    let csv = dir.path().join("ZTF18abxhyqv.csv");
    let mut f = std::fs::File::create(&csv).unwrap();
    writeln!(f, "mjd,band,mag,magerr").unwrap();
    for d in &before.detections {
        writeln!(f, "{:.7},{},{:.4},{:.4}", d.mjd, d.band, d.value, d.error).unwrap();
    }
    drop(f);
    let mut session = engine.session();
    session
        .add(source::decode_file(&csv, &DecodeOptions::default()))
        .unwrap();
    let report = session.finish().unwrap();
    assert_eq!(report.alerts_read, 1);
    assert_eq!(report.detections_added, 0);
    assert_eq!(engine.object("ZTF18abxhyqv").unwrap(), before);
}

#[test]
fn reingesting_everything_changes_nothing() {
    let (_dir, engine) = engine();
    let first = ingest(&engine, &["."]);
    assert!(first.objects_new > 150, "{first:?}");
    let snapshot = engine.store().raw_entries().unwrap();
    let second = ingest(&engine, &["."]);
    assert_eq!(second.objects_new, 0);
    assert_eq!(second.objects_updated, 0);
    assert_eq!(second.detections_added, 0);
    assert_eq!(second.alerts_read, first.alerts_read);
    assert_eq!(second.alerts_rejected, first.alerts_rejected);
    assert_eq!(engine.store().raw_entries().unwrap(), snapshot);
}

#[test]
fn each_lightcurve_file_becomes_one_object() {
    let (_dir, engine) = engine();
    let report = ingest(&engine, &["lightcurves"]);
    let files = source::expand(&[data("lightcurves")]).0;
    assert_eq!(files.len(), 71);
    assert!(report.rejects.is_empty(), "{:?}", report.rejects);
    assert_eq!(report.objects_new, 71);
    let stats = engine.stats().unwrap();
    assert_eq!(stats[&Survey::Ztf].objects, 30, "SN Ia from ZTF");
    assert_eq!(
        stats[&Survey::External].objects,
        41,
        "Stripe 82 and the edge cases"
    );
    let rr = engine.object("1013184").unwrap();
    let rows = std::fs::read_to_string(data("lightcurves/RRLyrae/1013184.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(rr.detections.len(), rows);
    assert_eq!(rr.meta.n_per_band.len(), 5, "ugriz");
}

#[test]
fn rubin_alerts_merge_their_multiband_histories() {
    let (_dir, engine) = engine();
    let report = ingest(&engine, &["lsst/rubin_v10_0_fink.avro"]);
    assert_eq!(report.alerts_read, 7);
    assert!(report.rejects.is_empty(), "{:?}", report.rejects);
    // 6 objects per fastavro; the two diaObjectId = 0 sources are Solar System objects.
    let o = engine.object("170028485706776685").unwrap();
    assert_eq!(o.survey, Survey::Lsst);
    assert_eq!(o.detections.len(), 346);
    assert!(o.meta.n_per_band.len() >= 3, "{:?}", o.meta.n_per_band);
    let lsst = engine.stats().unwrap()[&Survey::Lsst];
    assert_eq!(lsst.alerts, 7);
}

#[test]
fn bad_input_is_rejected_with_reasons_and_loses_nothing() {
    let (dir, engine) = engine();
    ingest(&engine, &["ztf/ZTF18abxhyqv.tar.gz"]);
    let before = engine.store().raw_entries().unwrap();

    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let good = std::fs::read(data("ztf/472263571115115000.avro")).unwrap();
    std::fs::write(bad.join("truncated.avro"), &good[..good.len() / 2]).unwrap();
    std::fs::write(bad.join("empty.avro"), b"").unwrap();
    std::fs::write(bad.join("notes.txt"), b"observing log: clouds all night\n").unwrap();
    std::fs::write(
        bad.join("ZTF00nan.csv"),
        b"mjd,band,mag,magerr\n60000.1,g,NaN,0.1\n60000.2,r,,0.1\n",
    )
    .unwrap();
    let tgz = std::fs::read(data("ztf/ZTF18acruwxq.tar.gz")).unwrap();
    std::fs::write(bad.join("cut.tar.gz"), &tgz[..tgz.len() / 2]).unwrap();
    for name in ["516401801315010009.avro", "516434762915010006.avro"] {
        std::fs::copy(data(&format!("ztf/ampel_20180601/{name}")), bad.join(name)).unwrap();
    }
    let report = {
        let (files, _) = source::expand(std::slice::from_ref(&bad));
        let mut s = engine.session();
        for f in files {
            s.add(source::decode_file(&f, &DecodeOptions::default()))
                .unwrap();
        }
        s.finish().unwrap()
    };
    let reason = |file: &str| {
        report
            .rejects
            .iter()
            .filter(|r| r.source.contains(file))
            .map(|r| r.reason.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert!(reason("truncated.avro").contains("Avro"), "{report:?}");
    assert_eq!(reason("empty.avro"), "empty file");
    assert!(reason("notes.txt").contains("unrecognised format"));
    assert!(reason("ZTF00nan.csv").contains("not a finite measurement"));
    assert!(reason("ZTF00nan.csv").contains("mag is missing"));
    assert!(reason("cut.tar.gz").contains("gzip"), "{report:?}");
    assert!(!reason("516401801315010009").is_empty());
    assert!(!reason("516434762915010006").is_empty());
    assert_eq!(report.alerts_read, 0);
    assert_eq!(engine.store().raw_entries().unwrap(), before);

    // Good packets in the same run as bad ones are stored.
    std::fs::copy(data("ztf/472263571115115000.avro"), bad.join("good.avro")).unwrap();
    let (files, _) = source::expand(&[bad]);
    let mut s = engine.session();
    for f in files {
        s.add(source::decode_file(&f, &DecodeOptions::default()))
            .unwrap();
    }
    let report = s.finish().unwrap();
    assert_eq!(report.alerts_read, 1);
    assert_eq!(report.objects_new, 1);
    assert!(report.alerts_rejected >= 8);
    assert!(engine.object("ZTF17aaajnnn").is_ok());
    assert!(engine.object("ZTF18abxhyqv").is_ok());
}

#[test]
fn an_unusable_database_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    match Engine::open(&file, config()) {
        Err(EngineError::Store(StoreError::Open { detail, .. })) => {
            assert_eq!(detail, "not a directory")
        }
        other => panic!("expected an open error, got {:?}", other.err()),
    }
    let (_d, engine) = engine();
    assert_eq!(
        engine.object("ZTF00nothing").unwrap_err(),
        EngineError::UnknownObject {
            object_id: "ZTF00nothing".into()
        }
    );
}

/// Every real alert of data/ merged into its object in file order, in reverse and in three
/// seeded shuffles gives the same records, field for field: the order Kafka's partitions
/// interleave packets in must not show in the store.
#[test]
fn merging_is_independent_of_the_order_of_all_real_alerts() {
    use asterism::model::ObjectRecord;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use std::collections::BTreeMap;

    let mut alerts = Vec::new();
    for dir in ["ztf", "fink", "lsst"] {
        let (files, _) = source::expand(&[data(dir)]);
        for f in files {
            alerts.extend(source::decode_file(&f, &DecodeOptions::default()).alerts);
        }
    }
    assert!(alerts.len() > 80);
    let merged = |order: &[&asterism::Alert]| -> BTreeMap<String, String> {
        let mut records: BTreeMap<String, ObjectRecord> = BTreeMap::new();
        for a in order {
            records
                .entry(a.object_id.clone())
                .or_insert_with(|| ObjectRecord::new(a.object_id.clone(), a.survey))
                .merge(a);
        }
        // Debug text: NaN-safe, every field.
        records
            .into_iter()
            .map(|(id, r)| (id, format!("{r:?}")))
            .collect()
    };
    let forward: Vec<&asterism::Alert> = alerts.iter().collect();
    let reference = merged(&forward);
    let mut reversed = forward.clone();
    reversed.reverse();
    let rev = merged(&reversed);
    for (id, r) in &reference {
        assert!(
            rev[id] == *r,
            "reverse order: {id} differs:\n{r}\n{}",
            rev[id]
        );
    }
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(15);
    for round in 0..3 {
        let mut shuffled = forward.clone();
        shuffled.shuffle(&mut rng);
        let got = merged(&shuffled);
        for (id, r) in &reference {
            assert!(
                got[id] == *r,
                "shuffle {round}: {id} differs:\n{r}\n{}",
                got[id]
            );
        }
    }
}

/// The inputs of the bulk-seed tests: every real packet and lightcurve of data/.
fn seed_inputs() -> Vec<asterism::alert::Decoded> {
    seed_inputs_of(&[data("ztf"), data("fink"), data("lightcurves")])
}

fn seed_inputs_of(paths: &[std::path::PathBuf]) -> Vec<asterism::alert::Decoded> {
    let (files, bad) = source::expand(paths);
    assert!(bad.is_empty());
    files
        .iter()
        .map(|f| source::decode_file(f, &DecodeOptions::default()))
        .collect()
}

/// Recall@10 of the stored neighbour lists against exact search over the current vectors.
fn list_recall(engine: &Engine) -> f64 {
    let (ids, vectors) = engine.vectors();
    let mut found = 0usize;
    let mut wanted = 0usize;
    for (i, v) in vectors.iter().enumerate() {
        let mut exact: Vec<(f32, &str)> = vectors
            .iter()
            .zip(&ids)
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (w, id))| (asterism::embed::l2(v, w), id.as_str()))
            .collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: std::collections::HashSet<&str> =
            exact.iter().take(10).map(|(_, id)| *id).collect();
        let listed = engine.neighbours(&ids[i]).unwrap();
        found += listed
            .iter()
            .take(10)
            .filter(|n| truth.contains(n.object_id.as_str()))
            .count();
        wanted += truth.len();
    }
    found as f64 / wanted as f64
}

/// `ingest --bulk` on an empty store: every object stored, embedded once, indexed in one pass
/// and linked; the records equal those of an incremental ingest of the same inputs, the store
/// passes `check`, the lists' recall@10 against exact search is at least as good, and later
/// incremental ingest works on top. A seeded store refuses a second seed.
#[test]
fn a_bulk_seed_equals_an_incremental_ingest_and_links_every_object() {
    let (_a, seeded) = engine();
    let mut seed = seeded.seed().unwrap();
    for d in seed_inputs() {
        seed.add(d).unwrap();
    }
    let (report, pass) = seed.finish().unwrap();
    let (_b, incremental) = engine();
    let mut session = incremental.session();
    for d in seed_inputs() {
        session.add(d).unwrap();
    }
    let expected = session.finish().unwrap();
    assert_eq!(report.objects_new, expected.objects_new);
    assert_eq!(report.alerts_read, expected.alerts_read);
    assert_eq!(report.detections_added, expected.detections_added);
    assert_eq!(pass.objects as u64, expected.objects_new);
    assert!(pass.links >= pass.objects * 10, "{pass:?}");

    let (ids, _) = seeded.vectors();
    assert_eq!(ids.len() as u64, expected.objects_new);
    for id in &ids {
        assert_eq!(seeded.object(id).unwrap(), incremental.object(id).unwrap());
        assert_eq!(seeded.neighbours(id).unwrap().len(), 10.min(ids.len() - 1));
    }
    assert!(seeded.check().unwrap().is_sound());
    let (bulk, live) = (list_recall(&seeded), list_recall(&incremental));
    assert!(
        bulk >= 0.95 && bulk >= live - 0.01,
        "recall@10 bulk {bulk}, incremental {live}"
    );

    // Incremental ingest on top of a seed, and no second seed.
    let more = lsst();
    assert!(!more.alerts.is_empty());
    seeded.ingest(more).unwrap();
    assert!(seeded.check().unwrap().is_sound());
    let now = seeded.indexed();
    assert!(now > ids.len());
    assert!(matches!(
        seeded.seed(),
        Err(EngineError::NotEmpty { embedded }) if embedded == now
    ));
}

/// A seed interrupted after its first pass (objects stored, nothing embedded) leaves the store
/// marked: other writes are refused with a message saying what to do, even after a reopen;
/// running the seed again (its alerts are now duplicates) finishes it.
#[test]
fn an_interrupted_seed_blocks_other_writes_until_it_is_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let engine = Engine::open(&path, config()).unwrap();
        let mut seed = engine.seed().unwrap();
        for d in seed_inputs() {
            seed.add(d).unwrap();
        }
        // Dropped without its second pass: the process died here.
    }
    let engine = Engine::open(&path, config()).unwrap();
    let err = engine.ingest(lsst()).unwrap_err();
    assert_eq!(err, EngineError::SeedUnfinished);
    assert!(err.to_string().contains("asterism ingest --bulk"), "{err}");

    let mut seed = engine.seed().unwrap();
    for d in seed_inputs() {
        seed.add(d).unwrap();
    }
    let (report, pass) = seed.finish().unwrap();
    assert_eq!((report.objects_new, report.objects_updated), (0, 0));
    assert!(report.alerts_duplicate > 100, "{report:?}");
    assert!(pass.objects > 150, "{pass:?}");
    assert!(engine.check().unwrap().is_sound());
    engine.ingest(lsst()).unwrap();
    assert!(engine.check().unwrap().is_sound());
}

/// Every real Rubin alert of data/lsst, decoded.
fn lsst() -> asterism::alert::Decoded {
    let mut all = asterism::alert::Decoded::default();
    for d in seed_inputs_of(&[data("lsst")]) {
        all.alerts.extend(d.alerts);
        all.rejects.extend(d.rejects);
    }
    all
}

#[test]
fn one_packet_files_are_stored_in_full_batches_across_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let config = asterism::engine::EngineConfig {
        batch_size: 3,
        ..config()
    };
    let engine = Engine::open(&dir.path().join("db"), config.clone()).unwrap();
    let (files, _) = source::expand(&[data("ztf/ampel_20180601")]);
    let inputs = || {
        files
            .iter()
            .map(|f| source::decode_file(f, &DecodeOptions::default()))
    };
    let alerts: usize = inputs().map(|d| d.alerts.len()).sum();
    assert!(alerts > 3 && !alerts.is_multiple_of(3), "{alerts} alerts");
    let mut session = engine.session();
    let mut counted = Vec::new();
    for input in inputs() {
        session.add(input).unwrap();
        counted.push(session.report().alerts_read);
    }
    // One packet per file, and yet every batch holds three: each count is a whole number of
    // batches, the last alerts wait for `finish`.
    assert!(counted.iter().all(|n| n % 3 == 0), "{counted:?}");
    assert_eq!(counted.last(), Some(&(alerts as u64 / 3 * 3)));
    let report = session.finish().unwrap();
    assert_eq!(report.alerts_read, alerts as u64);
    // The same store as the files' alerts given in one input.
    let one = Engine::open(&dir.path().join("one"), config).unwrap();
    let mut all = asterism::alert::Decoded::default();
    for input in inputs() {
        all.alerts.extend(input.alerts);
        all.rejects.extend(input.rejects);
    }
    let whole = one.ingest(all).unwrap();
    assert_eq!(
        (
            report.objects_new,
            report.detections_added,
            report.alerts_rejected
        ),
        (
            whole.objects_new,
            whole.detections_added,
            whole.alerts_rejected
        )
    );
    assert_eq!(
        engine.store().raw_entries().unwrap(),
        one.store().raw_entries().unwrap()
    );
}
