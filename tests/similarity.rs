//! Embeddings, the HNSW index and the kNN graph on the real data (and on real lightcurves
//! augmented to a few thousand objects for recall).

mod common;

use std::collections::BTreeMap;

use asterism::embed::l2;
use asterism::engine::{Engine, EngineConfig, IndexOrigin, SimilarQuery, Target};
use asterism::index::{exact_knn, numbered, recall, Hit, HnswParams, IndexBackend, PointId};
use asterism::model::{Alert, ObjectRecord, VectorVersion};
use asterism::synth::{augment, truncate, Augment};
use common::{config, decode, engine, ingest};

/// The test configuration with the given index backend.
fn config_for(backend: IndexBackend) -> EngineConfig {
    EngineConfig {
        index: Some(backend),
        ..config()
    }
}

/// The real lightcurves of `data/lightcurves` as records.
fn real_lightcurves() -> Vec<ObjectRecord> {
    let (_dir, engine) = engine();
    ingest(&engine, &["lightcurves/SNIa", "lightcurves/RRLyrae"]);
    let mut out = Vec::new();
    engine
        .store()
        .for_each_object(|r| {
            out.push(r);
            true
        })
        .unwrap();
    out
}

fn synthetic(n: u64, seed: u64) -> Vec<Alert> {
    let bases = real_lightcurves();
    (0..n)
        .map(|i| {
            augment(
                &bases[(i as usize) % bases.len()],
                i,
                seed,
                &Augment::default(),
            )
        })
        .collect()
}

/// The `k` hits nearest `object_id`'s current vector, itself first, each reporting the
/// detections its stored record has, and a last-detection window that admits what the
/// records' dates admit: the live index keeps both, so that such a search reads no record.
fn assert_hits_count_their_records(engine: &Engine, object_id: &str, k: usize) {
    let (vector, _) = engine.vector(object_id).unwrap();
    let q = SimilarQuery::new(Target::Vector(vector), k);
    let hits = engine.find_similar(&q).unwrap();
    assert_eq!(hits.len(), k);
    assert_eq!(hits[0].object_id, object_id);
    for h in &hits {
        let record = engine.object(&h.object_id).unwrap();
        assert_eq!(h.n_detections, record.detections.len(), "{}", h.object_id);
    }
    // The last-detection window tests the date the live index keeps against the records'.
    let last = |id: &str| engine.object(id).unwrap().meta.last_mjd.unwrap();
    let t = last(&hits[k / 2].object_id);
    let mut q = q;
    q.filters.last_after = Some(t);
    let got = engine.find_similar(&q).unwrap();
    assert!(!got.is_empty());
    assert!(got.iter().all(|h| last(&h.object_id) >= t));
    for h in hits.iter().filter(|h| last(&h.object_id) >= t) {
        assert!(
            got.iter().any(|g| g.object_id == h.object_id),
            "{} passes the window",
            h.object_id
        );
    }
}

/// Recall@k of the engine's `similar` against exact search over the same current vectors.
fn engine_recall(engine: &Engine, k: usize, queries: usize) -> f64 {
    let (ids, vectors) = engine.vectors();
    let points = numbered(vectors);
    let index: BTreeMap<&str, PointId> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as PointId))
        .collect();
    let step = (ids.len() / queries).max(1);
    let (mut approx, mut exact) = (Vec::new(), Vec::new());
    for q in (0..ids.len()).step_by(step) {
        let got = engine.similar(&ids[q], k, None).unwrap();
        approx.push(
            got.iter()
                .map(|n| Hit {
                    point: index[n.object_id.as_str()],
                    distance: n.distance,
                })
                .collect::<Vec<_>>(),
        );
        exact.push(exact_knn(
            points.iter().collect::<Vec<_>>(),
            &points[q].1,
            k,
            &|p| p != q as PointId,
        ));
    }
    recall(&approx, &exact)
}

#[test]
fn every_object_in_data_gets_a_finite_embedding() {
    let (_dir, engine) = engine();
    ingest(&engine, &["ztf", "fink", "lsst", "lightcurves"]);
    let mut n = 0;
    engine
        .store()
        .for_each_object(|r| {
            let (v, mask) = engine.vector(&r.object_id).unwrap();
            assert_eq!(v.len(), engine.embedder().dim());
            assert_eq!(mask.len(), v.len());
            assert!(v.iter().all(|x| x.is_finite()), "{}", r.object_id);
            n += 1;
            true
        })
        .unwrap();
    assert_eq!(n, 199);
    let spec = engine.spec();
    assert!(
        spec.fitted_on >= 100,
        "the scaler was fitted: {}",
        spec.fitted_on
    );
    // Every object has a neighbour list of GRAPH_K entries, itself excluded.
    let list = engine.neighbours("ZTF18abxhyqv").unwrap();
    assert_eq!(list.len(), asterism::graph::GRAPH_K);
    assert!(list.iter().all(|n| n.object_id != "ZTF18abxhyqv"));
}

#[test]
fn the_same_lightcurve_gives_the_same_vector() {
    let (_d1, a) = engine();
    let (_d2, b) = engine();
    ingest(&a, &["lightcurves"]);
    ingest(&b, &["lightcurves"]);
    for id in ["1013184", "ZTF18aadzfso", "light-curve-3/1"] {
        assert_eq!(a.vector(id).unwrap(), b.vector(id).unwrap(), "{id}");
    }
    let r = a.object("1013184").unwrap();
    let e = a.embedder();
    assert_eq!(
        format!("{:?}", e.features(&r, None)),
        format!("{:?}", e.features(&r, None))
    );
}

#[test]
fn two_halves_end_at_the_vector_of_one_ingest_and_as_of_sees_the_first_half() {
    let mut packets = decode("ztf/ZTF18abxhyqv.tar.gz").alerts;
    packets.sort_by(|x, y| x.mjd.total_cmp(&y.mjd));
    let (first, second) = packets.split_at(2);
    let mid = first.last().unwrap().mjd;

    let (_d1, whole) = engine();
    ingest(&whole, &["lightcurves", "fink"]);
    whole.apply(&packets).unwrap();

    let (_d2, halves) = engine();
    ingest(&halves, &["lightcurves", "fink"]);
    halves.apply(first).unwrap();
    let early_neighbours = halves.similar("ZTF18abxhyqv", 5, None).unwrap();
    halves.apply(second).unwrap();

    let id = "ZTF18abxhyqv";
    let versions = halves.store().vector_versions(id).unwrap();
    assert_eq!(
        versions.len(),
        2,
        "re-embedded when the second half arrived"
    );
    assert_hits_count_their_records(&halves, id, 10);
    let latest_whole = whole.store().vector_versions(id).unwrap().pop().unwrap().1;
    assert_eq!(versions[1].1.raw.len(), latest_whole.raw.len());
    assert_eq!(
        format!("{:?}", versions[1].1.raw),
        format!("{:?}", latest_whole.raw),
        "same raw features"
    );
    // With the same scaler (both refitted on the same objects) the vectors are equal.
    whole
        .reindex(&asterism::engine::ReindexOptions::default())
        .unwrap();
    halves
        .reindex(&asterism::engine::ReindexOptions::default())
        .unwrap();
    assert_eq!(whole.vector(id).unwrap(), halves.vector(id).unwrap());

    // As of the first half, the earlier vector is the query: the oracle below searches the
    // versions valid at `mid` exactly.
    let spec = halves.spec();
    let mut at: BTreeMap<String, VectorVersion> = BTreeMap::new();
    halves
        .store()
        .for_each_vector(|oid, _, v| {
            if v.from_mjd <= mid {
                at.insert(oid.to_string(), v);
            }
        })
        .unwrap();
    // Objects whose whole history came in one batch are embedded as they were at `mid`.
    halves
        .store()
        .for_each_object(|r| {
            if !at.contains_key(&r.object_id) && r.meta.first_mjd.is_some_and(|f| f <= mid) {
                let raw = halves.embedder().features(&r, Some(mid));
                let v = VectorVersion {
                    point: 0,
                    from_mjd: mid,
                    n_detections: 0,
                    raw: raw.into_iter().map(|x| x as f32).collect(),
                };
                at.insert(r.object_id.clone(), v);
            }
            true
        })
        .unwrap();
    let q = spec.scale(&at[id].raw).0;
    let mut expected: Vec<(f32, String)> = at
        .iter()
        .filter(|(oid, _)| oid.as_str() != id)
        .map(|(oid, v)| (l2(&q, &spec.scale(&v.raw).0), oid.clone()))
        .collect();
    expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let got = halves.similar(id, 5, Some(mid)).unwrap();
    let got_ids: Vec<&str> = got.iter().map(|n| n.object_id.as_str()).collect();
    let want: Vec<&str> = expected.iter().take(5).map(|(_, o)| o.as_str()).collect();
    assert_eq!(got_ids, want);
    assert!((got[0].distance - expected[0].0).abs() < 1e-4);
    let now = halves.similar(id, 5, None).unwrap();
    assert_ne!(
        format!("{got:?}"),
        format!("{now:?}"),
        "as-of and current differ"
    );
    assert!(!early_neighbours.is_empty());
    // Before its first detection an object has no embedding.
    assert!(halves.similar(id, 5, Some(first[0].mjd - 100.0)).is_err());
}

#[test]
fn recall_at_10_fresh_and_after_churn_hnsw_rs() {
    recall_at_10_fresh_and_after_churn(IndexBackend::HnswRs);
}

#[test]
fn recall_at_10_fresh_and_after_churn_usearch() {
    recall_at_10_fresh_and_after_churn(IndexBackend::Usearch);
}

fn recall_at_10_fresh_and_after_churn(backend: IndexBackend) {
    let dir = tempfile::tempdir().unwrap();
    let config = || config_for(backend);
    let engine = Engine::open(&dir.path().join("db"), config()).unwrap();
    assert_eq!(engine.index_backend(), backend);
    let alerts = synthetic(3000, 11);
    // Objects first appear with 40% of their lightcurve, then grow twice: every object is
    // re-embedded, twice, leaving two tombstones per live point.
    for fraction in [0.4, 0.7] {
        let early: Vec<Alert> = alerts.iter().map(|a| truncate(a, fraction)).collect();
        for chunk in early.chunks(500) {
            engine.apply(chunk).unwrap();
        }
    }
    let fresh_spec = engine.spec();
    for chunk in alerts.chunks(500) {
        engine.apply(chunk).unwrap();
    }
    engine.wait_for_rebuild();
    if backend == IndexBackend::Usearch {
        // Superseded points were removed from the graph, not left as tombstones.
        assert_eq!(engine.tombstones(), 0);
    }
    let churned = engine_recall(&engine, 10, 300);
    assert!(
        churned >= 0.95,
        "{backend}: recall@10 after churn {churned}"
    );
    assert!(engine.spec().version >= fresh_spec.version);

    // A fresh index over the same store.
    drop(engine);
    std::fs::remove_dir_all(dir.path().join("db").join("index")).ok();
    let reopened = Engine::open(&dir.path().join("db"), config()).unwrap();
    assert_eq!(reopened.index_origin(), IndexOrigin::Rebuilt);
    assert_eq!(reopened.index_backend(), backend);
    let fresh = engine_recall(&reopened, 10, 300);
    assert!(fresh >= 0.95, "{backend}: recall@10 fresh {fresh}");
    assert!(
        (fresh - churned).abs() <= 0.03,
        "fresh {fresh} churned {churned}"
    );
}

#[test]
fn restart_loads_the_dump_and_replays_newer_vectors_hnsw_rs() {
    restart_loads_the_dump_and_replays_newer_vectors(IndexBackend::HnswRs);
}

#[test]
fn restart_loads_the_dump_and_replays_newer_vectors_usearch() {
    restart_loads_the_dump_and_replays_newer_vectors(IndexBackend::Usearch);
}

fn restart_loads_the_dump_and_replays_newer_vectors(backend: IndexBackend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // Only the store's creation names the backend: every later open takes the recorded one.
    let config = common::config;
    drop(Engine::open(&path, config_for(backend)).unwrap());
    let alerts = synthetic(400, 5);
    {
        let engine = Engine::open(&path, config()).unwrap();
        engine.apply(&alerts[..300]).unwrap();
        engine.checkpoint().unwrap();
    }
    let expected = {
        let engine = Engine::open(&path, config()).unwrap();
        // As the CLI does: the index is left to the exit, the store still closes on drop.
        engine.skip_index_teardown();
        assert_eq!(engine.index_origin(), IndexOrigin::Loaded { replayed: 0 });
        let e = engine.similar(&alerts[7].object_id, 10, None).unwrap();
        assert_eq!(e.len(), 10);
        // Newer vectors, not in the dump (no checkpoint).
        engine.apply(&alerts[300..]).unwrap();
        engine.similar(&alerts[7].object_id, 10, None).unwrap()
    };
    let engine = Engine::open(&path, config()).unwrap();
    assert_eq!(
        engine.index_origin(),
        IndexOrigin::Loaded { replayed: 100 },
        "the dump is loaded and only the newer vectors inserted"
    );
    // The loaded slots and the replayed ones report their records' detections.
    assert_hits_count_their_records(&engine, &alerts[7].object_id, 10);
    assert_hits_count_their_records(&engine, &alerts[350].object_id, 10);
    let got = engine.similar(&alerts[7].object_id, 10, None).unwrap();
    let overlap = got
        .iter()
        .filter(|n| expected.iter().any(|e| e.object_id == n.object_id))
        .count();
    assert!(overlap >= 9, "{got:?} vs {expected:?}");
    drop(engine);

    // A missing dump: rebuilt, same answers.
    for f in std::fs::read_dir(path.join("index")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let engine = Engine::open(&path, config()).unwrap();
    assert_eq!(engine.index_origin(), IndexOrigin::Rebuilt);
    let got = engine.similar(&alerts[7].object_id, 10, None).unwrap();
    assert!(
        got.iter()
            .filter(|n| expected.iter().any(|e| e.object_id == n.object_id))
            .count()
            >= 9
    );
    engine.checkpoint().unwrap();
    drop(engine);

    // A stale dump (the store moved on to a new scaler after it was written): rebuilt.
    {
        let engine = Engine::open(&path, config()).unwrap();
        assert!(matches!(engine.index_origin(), IndexOrigin::Loaded { .. }));
        engine
            .reindex(&asterism::engine::ReindexOptions::default())
            .unwrap();
    }
    let engine = Engine::open(&path, config()).unwrap();
    assert_eq!(engine.index_origin(), IndexOrigin::Rebuilt);
    assert_eq!(
        engine
            .similar(&alerts[7].object_id, 10, None)
            .unwrap()
            .len(),
        10
    );
}

#[test]
fn clusters_and_export() {
    let (dir, engine) = engine();
    ingest(&engine, &["lightcurves"]);
    let report = engine.clusters(Some(2), 42).unwrap();
    assert_eq!(report.objects, 71);
    assert_eq!(report.clusters.iter().map(|c| c.size).sum::<usize>(), 71);
    assert_eq!(report.component_sizes.iter().sum::<usize>(), 71);
    // SN Ia (ZTF) and RR Lyrae (Stripe 82) fall apart: each cluster is dominated by one survey.
    for c in &report.clusters {
        let top = c.surveys.values().max().unwrap();
        assert!(*top as f64 >= 0.8 * c.size as f64, "{c:?}");
    }

    let out = dir.path().join("objects.parquet");
    let rows = asterism::export::export_parquet(&engine, &out).unwrap();
    assert_eq!(rows, 71);
    let file = std::fs::File::open(&out).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut n = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let emb = batch
            .column_by_name("embedding")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .unwrap();
        for i in 0..batch.num_rows() {
            assert_eq!(emb.value(i).len(), engine.embedder().dim());
        }
        n += batch.num_rows();
    }
    assert_eq!(n, 71);
}

#[test]
fn bad_requests_are_clear_errors() {
    let (_dir, engine) = engine();
    ingest(&engine, &["lightcurves/RRLyrae"]);
    assert!(matches!(
        engine.similar("1013184", 0, None),
        Err(asterism::EngineError::InvalidArgument { field: "k", .. })
    ));
    assert!(matches!(
        engine.similar("nope", 5, None),
        Err(asterism::EngineError::UnknownObject { .. })
    ));
    let bad = EngineConfig {
        hnsw: HnswParams {
            m: 0,
            ..HnswParams::default()
        },
        ..config()
    };
    let dir = tempfile::tempdir().unwrap();
    assert!(Engine::open(&dir.path().join("db"), bad).is_err());
}

#[test]
fn reindex_builds_the_graph_with_more_candidates_and_records_them() {
    use asterism::engine::ReindexOptions;
    let alerts = synthetic(300, 5);
    for backend in [IndexBackend::Usearch, IndexBackend::HnswRs] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let engine = Engine::open(&path, config_for(backend)).unwrap();
        engine.apply(&alerts).unwrap();
        let default = match backend {
            IndexBackend::Usearch => asterism::index::BULK_EXPANSION_ADD,
            IndexBackend::HnswRs => HnswParams::default().ef_construction,
        };
        assert_eq!(
            engine.index_config().build_expansion(),
            default,
            "{backend}"
        );
        let spec_before = engine.spec().version;
        // Fewer candidates than links, or more than the limit: a clear error before any work.
        for bad in [3, asterism::index::MAX_BUILD_EXPANSION + 1] {
            let err = engine
                .reindex(&ReindexOptions {
                    build_expansion: Some(bad),
                    ..ReindexOptions::default()
                })
                .expect_err("out of range");
            assert!(
                err.to_string().contains("invalid index parameter"),
                "{backend} {bad}: {err}"
            );
        }
        assert_eq!(engine.index_config().build_expansion(), default);
        assert_eq!(engine.spec().version, spec_before, "nothing rebuilt");

        let report = engine
            .reindex(&ReindexOptions {
                build_expansion: Some(300),
                ..ReindexOptions::default()
            })
            .unwrap();
        assert_eq!(report.build_expansion, 300);
        assert_eq!(report.objects, 300);
        assert_eq!(engine.index_config().build_expansion(), 300);
        let recall = engine_recall(&engine, 10, 60);
        assert!(recall >= 0.95, "{backend}: recall {recall}");
        engine.checkpoint().unwrap();
        drop(engine);

        // Recorded: a reopened store and a later reindex without the option keep it.
        let engine = Engine::open(&path, config()).unwrap();
        assert_eq!(engine.index_config().build_expansion(), 300);
        let report = engine.reindex(&ReindexOptions::default()).unwrap();
        assert_eq!(report.build_expansion, 300);
    }
}

#[test]
fn the_index_backend_is_recorded_at_creation_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let alerts = synthetic(200, 3);
    {
        let engine = Engine::open(&path, config_for(IndexBackend::Usearch)).unwrap();
        engine.apply(&alerts).unwrap();
        engine.checkpoint().unwrap();
    }
    // Reopened without naming one: the recorded backend, its dump loaded.
    let engine = Engine::open(&path, config()).unwrap();
    assert_eq!(engine.index_backend(), IndexBackend::Usearch);
    assert_eq!(engine.index_origin(), IndexOrigin::Loaded { replayed: 0 });
    let dump = engine.store().index_dump().unwrap().unwrap();
    assert_eq!(dump.backend, IndexBackend::Usearch);
    let before = engine.similar(&alerts[3].object_id, 10, None).unwrap();
    drop(engine);

    // Asking for the other backend is a clear error, and changes nothing.
    let err = Engine::open(&path, config_for(IndexBackend::HnswRs))
        .err()
        .expect("another backend is refused");
    let message = err.to_string();
    assert!(
        message.contains("hnsw_rs was asked for") && message.contains("created with usearch"),
        "{message}"
    );
    assert_eq!(
        Engine::open(&path, config()).unwrap().index_backend(),
        IndexBackend::Usearch
    );

    // A dump record naming another backend is not loaded: the index is rebuilt.
    {
        let engine = Engine::open(&path, config()).unwrap();
        let mut other = engine.store().index_dump().unwrap().unwrap();
        other.backend = IndexBackend::HnswRs;
        engine.store().set_index_dump(&other).unwrap();
    }
    let engine = Engine::open(&path, config()).unwrap();
    assert_eq!(engine.index_origin(), IndexOrigin::Rebuilt);
    let after = engine.similar(&alerts[3].object_id, 10, None).unwrap();
    let same = after
        .iter()
        .filter(|n| before.iter().any(|b| b.object_id == n.object_id))
        .count();
    assert!(same >= 9, "{after:?} vs {before:?}");
}

#[test]
fn a_store_without_a_recorded_backend_is_hnsw_rs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let alerts = synthetic(100, 4);
    {
        // Stores from before backends were recorded were all hnsw_rs.
        let engine = Engine::open(&path, config_for(IndexBackend::HnswRs)).unwrap();
        assert_eq!(engine.index_backend(), IndexBackend::HnswRs);
        engine.apply(&alerts).unwrap();
    }
    // As a store written before backends were recorded: vectors but no record.
    {
        use asterism::store::cf;
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, cf::ALL).unwrap();
        let meta = db.cf_handle(cf::META).unwrap();
        assert!(db.get_cf(meta, b"index_settings").unwrap().is_some());
        db.delete_cf(meta, b"index_settings").unwrap();
    }
    assert!(Engine::open(&path, config_for(IndexBackend::Usearch)).is_err());
    let engine = Engine::open(&path, config()).unwrap();
    assert_eq!(engine.index_backend(), IndexBackend::HnswRs);
    assert_eq!(
        engine.similar(&alerts[0].object_id, 5, None).unwrap().len(),
        5
    );
}
