//! Classification, evaluation, anomalies, personalisation, recommendations and explanations on
//! the real lightcurves (ZTF SNe Ia and SDSS Stripe 82 RR Lyrae) in `data/`.

mod common;

use std::collections::BTreeMap;

use asterism::embed::{l2, FeatureGroup};
use asterism::engine::{
    AnomalyQuery, Engine, EngineError, EvaluateOptions, Filters, RecommendQuery, ReindexOptions,
    SimilarQuery, Target, DEFAULT_FOLDS, LEARNED_METHOD,
};
use asterism::model::Vote;
use common::{data, engine, ingest};

/// `data/labels/lightcurves.csv`: objectId -> SN Ia / RR Lyr.
fn truth() -> BTreeMap<String, String> {
    std::fs::read_to_string(data("labels/lightcurves.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            (f.next().unwrap().to_string(), f.next().unwrap().to_string())
        })
        .collect()
}

/// The real lightcurves of `data/lightcurves` (ZTF SNe Ia, SDSS RR Lyrae) as records, decoded
/// by the real decoders: the bases of generated objects.
fn lightcurve_records() -> Vec<asterism::model::ObjectRecord> {
    let (files, _) =
        asterism::source::expand(&[data("lightcurves/SNIa"), data("lightcurves/RRLyrae")]);
    let alerts: Vec<_> = files
        .iter()
        .flat_map(|f| {
            asterism::source::decode_file(f, &asterism::alert::DecodeOptions::default()).alerts
        })
        .collect();
    asterism::synth::records(&alerts)
}

/// Options of the k-fold evaluation of a learned metric.
fn learned(folds: usize) -> EvaluateOptions {
    EvaluateOptions {
        learned: true,
        folds,
        at_age: None,
    }
}

fn labelled_engine() -> (tempfile::TempDir, Engine) {
    let (dir, engine) = engine();
    ingest(
        &engine,
        &["lightcurves/SNIa", "lightcurves/RRLyrae", "fink"],
    );
    let rows: Vec<(String, String)> = truth().into_iter().collect();
    let report = engine.import_labels(&rows, "lightcurves.csv").unwrap();
    assert_eq!(report.imported, 60);
    (dir, engine)
}

#[test]
fn leave_one_out_vote_separates_sn_ia_from_rr_lyrae() {
    let (_dir, engine) = labelled_engine();
    let report = engine
        .evaluate(&truth(), &EvaluateOptions::default())
        .unwrap();
    let e = &report.evaluation;
    assert_eq!(e.n, 60);
    assert_eq!(report.missing, 0);
    assert!(e.accuracy >= 0.95, "accuracy {}", e.accuracy);
    assert!(e.macro_f1 > e.baseline_macro_f1);
    assert_eq!(e.baseline_accuracy, 0.5);
    assert_eq!(e.per_class["RR Lyr"].support, 30);
    let total: usize = e.confusion.values().flat_map(|m| m.values()).sum();
    assert_eq!(total, 60);
}

#[test]
fn classify_gives_probabilities_voters_and_the_right_class() {
    let (_dir, engine) = labelled_engine();
    let c = engine.classify("1013184").unwrap();
    assert_eq!(c.class.as_deref(), Some("RR Lyr"));
    assert_eq!(c.method, "vote");
    let total: f64 = c.probabilities.values().sum();
    assert!((total - 1.0).abs() < 1e-9);
    assert!(c.confidence > 0.8, "{c:?}");
    assert!(c.voters.iter().all(|v| v.object_id != "1013184"));
    assert_eq!(
        c.labels[0].class, "RR Lyr",
        "its own imported label is reported"
    );

    // Fink objects carry packet SN Ia scores and SIMBAD cross-matches in their annotations.
    let fink = engine.classify("ZTF19acmbvwi").unwrap();
    assert!(fink.packet_snia_score.is_none() || fink.packet_snia_score.unwrap() <= 1.0);
    assert!(!fink.probabilities.is_empty());
}

#[test]
fn votes_personalise_recommendations_and_anomalies_per_user() {
    let (_dir, engine) = labelled_engine();
    let t = truth();
    let rr: Vec<&String> = t
        .iter()
        .filter(|(_, c)| *c == "RR Lyr")
        .map(|(id, _)| id)
        .collect();
    let sn: Vec<&String> = t
        .iter()
        .filter(|(_, c)| *c == "SN Ia")
        .map(|(id, _)| id)
        .collect();

    engine.vote("bob", sn[0], Vote::Up).unwrap();
    let query = |user: &str| RecommendQuery {
        user: Some(user.into()),
        top: 10,
        ..RecommendQuery::default()
    };
    let bob_before = engine.recommend(&query("bob")).unwrap();
    let bob_anomalies = engine
        .anomalies(&AnomalyQuery {
            top: 20,
            user: Some("bob".into()),
            ..AnomalyQuery::default()
        })
        .unwrap();

    for id in &rr[..3] {
        engine.vote("alice", id, Vote::Up).unwrap();
    }
    let alice = engine.recommend(&query("alice")).unwrap();
    let rr_share = alice
        .iter()
        .filter(|r| r.class.as_deref() == Some("RR Lyr"))
        .count();
    assert!(rr_share >= 8, "alice's up-votes on RR Lyrae: {alice:?}");
    assert!(
        alice.iter().all(|r| !rr[..3].contains(&&r.object_id)),
        "never the voted objects"
    );
    let bob_sn = bob_before
        .iter()
        .filter(|r| r.class.as_deref() == Some("SN Ia"))
        .count();
    assert!(bob_sn >= 6, "bob's up-vote on an SN Ia: {bob_before:?}");

    // Alice's votes leave Bob's results untouched.
    assert_eq!(engine.recommend(&query("bob")).unwrap(), bob_before);
    let bob_after = engine
        .anomalies(&AnomalyQuery {
            top: 20,
            user: Some("bob".into()),
            ..AnomalyQuery::default()
        })
        .unwrap();
    assert_eq!(bob_after, bob_anomalies);

    // Alice's own anomaly ranking moved toward RR Lyrae.
    let plain = engine
        .anomalies(&AnomalyQuery {
            top: 60,
            ..AnomalyQuery::default()
        })
        .unwrap();
    let mine = engine
        .anomalies(&AnomalyQuery {
            top: 60,
            user: Some("alice".into()),
            ..AnomalyQuery::default()
        })
        .unwrap();
    let rank_of = |list: &[asterism::engine::AnomalyScore], id: &str| {
        list.iter().position(|a| a.object_id == id)
    };
    let moved_up = rr[3..]
        .iter()
        .filter(|id| match (rank_of(&mine, id), rank_of(&plain, id)) {
            (Some(a), Some(b)) => a < b,
            (Some(_), None) => true,
            _ => false,
        })
        .count();
    assert!(
        moved_up >= 10,
        "{moved_up} RR Lyrae rose in alice's ranking"
    );

    // Like/unlike examples, with filters.
    let recs = engine
        .recommend(&RecommendQuery {
            like: vec![sn[1].clone()],
            unlike: vec![rr[0].clone()],
            top: 5,
            filters: Filters {
                class: Some("SN Ia".into()),
                min_detections: Some(5),
                ..Filters::default()
            },
            ..RecommendQuery::default()
        })
        .unwrap();
    assert_eq!(recs.len(), 5);
    assert!(recs
        .iter()
        .all(|r| r.class.as_deref() == Some("SN Ia") && r.n_detections >= 5));
    assert!(recs.iter().all(|r| &r.object_id != sn[1]));
}

/// Many workers of the global thread pool asking for scores at once, before any exist (as
/// `--publish-topic`'s parallel updates do): one computes them on the anomaly pool while the
/// others wait, and none waits forever (a worker that held the lock used to run a sibling job
/// that asked for the lock again).
#[test]
fn scores_asked_from_the_global_pool_at_once_are_computed_once_without_a_deadlock() {
    use rayon::prelude::*;
    let (_dir, engine) = labelled_engine();
    let ids: Vec<String> = engine.vectors().0;
    let scores: Vec<f64> = ids
        .par_iter()
        .map(|id| engine.anomaly_of(id).unwrap().expect("a score").score)
        .collect();
    assert_eq!(scores.len(), ids.len());
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
}

#[test]
fn anomaly_scores_rank_and_filter() {
    let (_dir, engine) = labelled_engine();
    let all = engine
        .anomalies(&AnomalyQuery {
            top: 1000,
            ..AnomalyQuery::default()
        })
        .unwrap();
    assert!(all.len() > 60);
    assert!(all.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(all.iter().all(|a| (0.0..=1.0).contains(&a.score)));
    let recent = engine
        .anomalies(&AnomalyQuery {
            top: 1000,
            since: Some(58800.0),
            ..AnomalyQuery::default()
        })
        .unwrap();
    assert!(!recent.is_empty() && recent.len() < all.len());
    for a in &recent {
        assert!(engine.object(&a.object_id).unwrap().meta.last_mjd.unwrap() >= 58800.0);
    }
}

#[test]
fn explain_names_what_separates_an_sn_ia_from_an_rr_lyrae() {
    let (_dir, engine) = labelled_engine();
    let e = engine.explain("ZTF18aadzfso", "1013184").unwrap();
    assert!(e.distance > 0.0);
    let shares: f32 = e.by_band.values().sum();
    assert!((shares - 1.0).abs() < 1e-3);
    assert_eq!(e.apart.len(), 8);
    assert!(e
        .apart
        .windows(2)
        .all(|w| w[0].contribution >= w[1].contribution));
    // Variability statistics separate a periodic star sampled for years from a supernova.
    let names: Vec<&str> = e.apart.iter().map(|c| c.feature.as_str()).collect();
    assert!(
        names.iter().any(|n| n.contains("chi2")
            || n.contains("anderson_darling")
            || n.contains("cusum")
            || n.contains("eta_e")
            || n.contains("period")
            || n.contains("time_span")),
        "{names:?}"
    );
    let same = engine.explain("1013184", "1013184").unwrap();
    assert_eq!(same.distance, 0.0);
}

#[test]
fn unknown_objects_and_users_are_clear_errors() {
    let (_dir, engine) = labelled_engine();
    assert!(matches!(
        engine.classify("ZTF00nothing"),
        Err(EngineError::UnknownObject { .. })
    ));
    assert!(matches!(
        engine.explain("1013184", "ZTF00nothing"),
        Err(EngineError::UnknownObject { .. })
    ));
    assert!(matches!(
        engine.vote("carol", "ZTF00nothing", Vote::Up),
        Err(EngineError::UnknownObject { .. })
    ));
    assert_eq!(
        engine
            .recommend(&RecommendQuery {
                user: Some("nobody".into()),
                top: 5,
                ..RecommendQuery::default()
            })
            .unwrap_err(),
        EngineError::UnknownUser {
            user: "nobody".into()
        }
    );
    assert!(matches!(
        engine.anomalies(&AnomalyQuery {
            top: 5,
            user: Some("nobody".into()),
            ..AnomalyQuery::default()
        }),
        Err(EngineError::UnknownUser { .. })
    ));
    assert_eq!(
        engine.recommend(&RecommendQuery {
            top: 5,
            ..RecommendQuery::default()
        }),
        Err(EngineError::NoPositiveExamples)
    );
}

/// With no labelled object among its nearest, an object is classified by label spreading over
/// its neighbourhood in the kNN graph: the objects reached by following neighbour lists from it,
/// bounded so a call costs the same at any store size. On this small store no neighbourhood
/// reaches the bound, so the answer must equal label spreading over the reachable subgraph,
/// computed here from the lists the engine serves.
#[test]
fn classify_spreads_labels_over_the_neighbourhood_when_no_neighbour_is_labelled() {
    let (_dir, engine) = engine();
    ingest(&engine, &["lightcurves", "ztf"]);
    let rows = vec![
        ("1013184".to_string(), "RR Lyr".to_string()),
        ("ZTF18aadzfso".to_string(), "SN Ia".to_string()),
    ];
    engine.import_labels(&rows, "two.csv").unwrap();
    let (ids, _) = engine.vectors();
    assert!(ids.len() < asterism::engine::SPREAD_NEIGHBOURHOOD);
    let lists: BTreeMap<String, Vec<String>> = ids
        .iter()
        .map(|id| {
            let list = engine.neighbours(id).unwrap();
            (id.clone(), list.into_iter().map(|n| n.object_id).collect())
        })
        .collect();

    let mut propagated = 0;
    for id in &ids {
        let c = engine.classify(id).unwrap();
        if c.method != "propagation" {
            continue;
        }
        propagated += 1;
        // Breadth first from `id` over the lists: its neighbourhood, `id` first.
        let mut reached = vec![id.clone()];
        let mut i = 0;
        while i < reached.len() {
            for n in &lists[&reached[i]] {
                if !reached.contains(n) {
                    reached.push(n.clone());
                }
            }
            i += 1;
        }
        let at = |x: &str| reached.iter().position(|r| r == x);
        let mut edges = Vec::new();
        for (i, x) in reached.iter().enumerate() {
            for n in engine.neighbours(x).unwrap() {
                edges.push((i, at(&n.object_id).unwrap(), n.distance));
            }
        }
        let classes = ["RR Lyr", "SN Ia"];
        let seeds: Vec<(usize, usize)> = rows
            .iter()
            .filter(|(s, _)| s != id)
            .filter_map(|(s, class)| Some((at(s)?, classes.iter().position(|c| c == class)?)))
            .collect();
        let f = asterism::science::spread_labels(reached.len(), &edges, &seeds, classes.len());
        let want: BTreeMap<String, f64> = classes
            .iter()
            .zip(&f[0])
            .filter(|(_, p)| **p > 0.0)
            .map(|(c, p)| (c.to_string(), *p))
            .collect();
        assert_eq!(c.probabilities.len(), want.len(), "{id}: {c:?} vs {want:?}");
        for (class, p) in &want {
            assert!(
                (c.probabilities[class] - p).abs() < 1e-9,
                "{id} {class}: {c:?} vs {want:?}"
            );
        }
    }
    assert!(propagated > 0, "no object was classified by spreading");
}

/// In a store larger than [`SPREAD_NEIGHBOURHOOD`], spreading stops at the bound: the answer
/// equals label spreading over the first objects reached breadth first from the classified one
/// (lists in their stored order; the outer ring's lists add only edges between objects already
/// reached). An object whose bounded neighbourhood holds no labelled object gets no class, which
/// the engine answers without reading the outer ring's lists: it must answer the same.
#[test]
fn bounded_spreading_matches_label_spreading_over_the_breadth_first_neighbourhood() {
    use asterism::engine::SPREAD_NEIGHBOURHOOD;
    use asterism::model::Alert;
    use asterism::synth::{augment, Augment};

    // Many versions of one SN Ia and one RR Lyrae: neighbourhoods larger than the bound.
    let truth = truth();
    let classes = ["RR Lyr", "SN Ia"];
    let records = lightcurve_records();
    let bases: Vec<_> = classes
        .iter()
        .map(|class| {
            records
                .iter()
                .find(|b| truth.get(&b.object_id).map(String::as_str) == Some(*class))
                .unwrap()
        })
        .collect();
    let generated: Vec<Alert> = (0..8 * SPREAD_NEIGHBOURHOOD)
        .map(|i| augment(bases[i % 2], i as u64, 3, &Augment::default()))
        .collect();
    let (_dir, engine) = engine();
    engine.apply(&generated).unwrap();
    engine.relink_unlinked().unwrap();
    // One labelled version of each.
    let rows: Vec<(String, String)> = (0..2)
        .map(|i| (generated[i].object_id.clone(), classes[i].to_string()))
        .collect();
    engine.import_labels(&rows, "two.csv").unwrap();

    let (mut spread, mut none) = (0, 0);
    for a in generated.iter().step_by(7) {
        let id = &a.object_id;
        let c = engine.classify(id).unwrap();
        if c.method == "vote" {
            continue;
        }
        // The engine's walk: breadth first, a list's first GRAPH_K entries, new objects until
        // the bound, edges to every object already reached.
        let mut reached = vec![id.clone()];
        let mut edges = Vec::new();
        let mut frontier = vec![0usize];
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for &i in &frontier {
                for n in engine.neighbours(&reached[i]).unwrap() {
                    let j = match reached.iter().position(|r| *r == n.object_id) {
                        Some(j) => j,
                        None if reached.len() < SPREAD_NEIGHBOURHOOD => {
                            reached.push(n.object_id);
                            next.push(reached.len() - 1);
                            reached.len() - 1
                        }
                        None => continue,
                    };
                    edges.push((i, j, n.distance));
                }
            }
            frontier = next;
        }
        assert_eq!(
            reached.len(),
            SPREAD_NEIGHBOURHOOD,
            "{id}: the bound is reached"
        );
        let seeds: Vec<(usize, usize)> = rows
            .iter()
            .filter(|(s, _)| s != id)
            .filter_map(|(s, class)| {
                let at = reached.iter().position(|r| r == s)?;
                Some((at, classes.iter().position(|c| c == class)?))
            })
            .collect();
        if seeds.is_empty() {
            none += 1;
            assert_eq!(c.method, "none", "{id}: {c:?}");
            assert!(c.probabilities.is_empty(), "{id}: {c:?}");
            continue;
        }
        spread += 1;
        let f = asterism::science::spread_labels(reached.len(), &edges, &seeds, classes.len());
        let want: BTreeMap<&str, f64> = classes
            .iter()
            .zip(&f[0])
            .filter(|(_, p)| **p > 0.0)
            .map(|(c, p)| (*c, *p))
            .collect();
        assert_eq!(c.probabilities.len(), want.len(), "{id}: {c:?} vs {want:?}");
        for (class, p) in &want {
            assert!(
                (c.probabilities[*class] - p).abs() < 1e-9,
                "{id} {class}: {c:?} vs {want:?}"
            );
        }
    }
    assert!(spread > 0 && none > 0, "spread {spread}, none {none}");
}

/// A store knows at once whether anything in it is labelled (`Store::any_labels`): not while
/// it holds only unannotated lightcurves, when every classification is "none" without a walk
/// over the graph; yes once one label is imported, which the others' classifications then
/// use; yes for a store of packets that carry a broker's cross-match classes.
#[test]
fn a_store_knows_whether_anything_is_labelled() {
    let (_dir, engine) = engine();
    ingest(&engine, &["lightcurves/SNIa", "lightcurves/RRLyrae"]);
    assert!(!engine.store().any_labels().unwrap());
    let (ids, _) = engine.vectors();
    for id in &ids {
        let c = engine.classify(id).unwrap();
        assert_eq!(c.method, "none", "{id}");
        assert!(c.voters.is_empty(), "{id}");
    }
    let truth = truth();
    let labelled = ids.iter().find(|id| truth.contains_key(*id)).unwrap();
    engine
        .import_labels(&[(labelled.clone(), truth[labelled].clone())], "one.csv")
        .unwrap();
    assert!(engine.store().any_labels().unwrap());
    let classified = ids
        .iter()
        .filter(|id| *id != labelled)
        .filter(|id| engine.classify(id).unwrap().method != "none")
        .count();
    assert!(classified > 0);

    let (_d2, brokered) = common::engine();
    ingest(&brokered, &["fink"]);
    assert!(brokered.store().any_labels().unwrap());
}

/// Votes and label spreading read each neighbour's labels from the `record_labels` column (a
/// few bytes), not its record. A store written before the column existed fills it once at
/// open, and then votes with the labels the records carry; `check` compares the column with
/// the records and names a value that disagrees.
#[test]
fn record_labels_column_is_filled_for_older_stores_and_checked() {
    let (dir, engine) = engine();
    ingest(&engine, &["ztf", "fink", "lightcurves/SNIa"]);
    let (ids, _) = engine.vectors();
    assert!(ids.len() > 50, "{}", ids.len());
    // Every voter's class and source, which must be its record's most trusted label (the
    // voters themselves may differ after a reopen: the rebuilt HNSW graph is approximate).
    let voters_of = |engine: &Engine| -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for id in &ids {
            for v in engine.classify(id).unwrap().voters {
                let label = engine.labels(&v.object_id).unwrap().remove(0);
                assert_eq!((&v.class, &v.source), (&label.class, &label.source));
                out.push((v.object_id, v.class, v.source));
            }
        }
        out
    };
    let before = voters_of(&engine);
    let mut carried = 0;
    engine
        .store()
        .for_each_record_labels(|_, labels| {
            assert!(!labels.is_empty());
            carried += 1;
        })
        .unwrap();
    assert!(
        carried >= 5,
        "objects whose annotations carry a class: {carried}"
    );
    assert!(before.len() >= 100, "voters: {}", before.len());
    assert!(engine.check().unwrap().is_sound());
    drop(engine);

    // As a store written before the column: no entry, no completeness mark.
    let path = dir.path().join("db");
    {
        use asterism::store::cf;
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, cf::ALL).unwrap();
        let column = db.cf_handle(cf::RECORD_LABELS).unwrap();
        let keys: Vec<Box<[u8]>> = db
            .iterator_cf(column, rocksdb::IteratorMode::Start)
            .map(|kv| kv.unwrap().0)
            .collect();
        assert_eq!(keys.len(), carried);
        for k in keys {
            db.delete_cf(column, k).unwrap();
        }
        let meta = db.cf_handle(cf::META).unwrap();
        db.delete_cf(meta, b"record_labels_complete").unwrap();
    }
    let engine = Engine::open(&path, common::config()).unwrap();
    assert!(engine.store().record_labels_complete().unwrap());
    let after = voters_of(&engine);
    assert!(
        after.len() * 10 >= before.len() * 9,
        "{} voters before, {} after",
        before.len(),
        after.len()
    );
    assert!(engine.check().unwrap().is_sound());

    // A value that disagrees with its record is named by `check`.
    let batch = asterism::store::Batch {
        record_labels: vec![(
            ids[0].clone(),
            vec![asterism::model::Label {
                class: "SN Ia".into(),
                source: "TNS".into(),
                raw: "SN Ia".into(),
            }],
        )],
        ..Default::default()
    };
    engine.store().write(&batch).unwrap();
    let report = engine.check().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].starts_with(&format!("record labels of {}:", ids[0])),
        "{:?}",
        report.problems
    );
}

/// TopAnomalies walks the objects by unpersonalised score and stops once no object further
/// down can enter the top: for a user with up- and down-votes, with and without `since`, every
/// short ranking is the head of the full one (which walks every object).
#[test]
fn top_anomalies_stop_early_and_equal_the_head_of_the_full_ranking() {
    let (_dir, engine) = labelled_engine();
    let (ids, _) = engine.vectors();
    engine.vote("carol", &ids[3], Vote::Up).unwrap();
    engine.vote("carol", &ids[40], Vote::Up).unwrap();
    engine.vote("carol", &ids[17], Vote::Down).unwrap();
    for user in [None, Some("carol".to_string())] {
        for since in [None, Some(58_000.0)] {
            let query = |top| AnomalyQuery {
                top,
                since,
                user: user.clone(),
            };
            let full = engine.anomalies(&query(ids.len())).unwrap();
            assert!(full.len() > 20, "{}", full.len());
            for pair in full.windows(2) {
                assert!(pair[0].score >= pair[1].score);
            }
            for top in [1, 3, 10] {
                assert_eq!(engine.anomalies(&query(top)).unwrap(), full[..top]);
            }
        }
    }
}

#[test]
fn a_learned_metric_is_fitted_on_labels_refitted_on_import_and_scored_on_held_out_folds() {
    let (_dir, engine) = labelled_engine();
    let before = engine.spec();
    assert!(before.metric.learned.is_none());
    let loo = engine
        .evaluate(&truth(), &EvaluateOptions::default())
        .unwrap();
    assert_eq!(loo.method, "leave-one-out over the index");

    // What a learned metric would give, fitted on 4 folds and scored on the fifth.
    let kfold = engine.evaluate(&truth(), &learned(DEFAULT_FOLDS)).unwrap();
    assert!(
        kfold.method.starts_with("stratified 5-fold"),
        "{}",
        kfold.method
    );
    assert_eq!(kfold.evaluation.n, 60);
    assert_eq!(kfold.evaluation.per_class["SN Ia"].support, 30);
    assert!(kfold.evaluation.accuracy >= 0.95, "{:?}", kfold.evaluation);
    assert_eq!(engine.spec(), before, "evaluating changes nothing");
    let e = engine.evaluate(&truth(), &learned(1)).unwrap_err();
    assert!(
        matches!(e, EngineError::InvalidArgument { field: "folds", .. }),
        "{e:?}"
    );

    // Fitted on every labelled object (the imported ones and the Fink objects' own
    // cross-match labels), stored with the spec, applied to every stored vector.
    let report = engine
        .reindex(&ReindexOptions {
            learn_metric: true,
            ..ReindexOptions::default()
        })
        .unwrap();
    let m = report.metric.expect("a metric was learned");
    assert!(m.labelled_objects >= 60, "{m:?}");
    assert!(m.classes.iter().any(|c| c == "SN Ia") && m.classes.iter().any(|c| c == "RR Lyr"));
    let spec = engine.spec();
    assert_eq!(spec.version, m.spec_version);
    let learned = spec.metric.learned.as_ref().unwrap();
    assert_eq!(learned.method, LEARNED_METHOD);
    assert_eq!(learned.labelled_objects as usize, m.labelled_objects);
    assert!(spec.weights.iter().all(|w| w.is_finite() && *w >= 0.0));
    assert_ne!(spec.weights, spec.unlearned().weights);
    assert!(
        m.zero_weight_features > 0,
        "features no class differs in get no weight"
    );
    // `check` compares every indexed vector with the stored raw features scaled by the spec.
    let check = engine.check().unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(
        engine.classify("1013184").unwrap().class.as_deref(),
        Some("RR Lyr")
    );

    // A store with a learned metric is always evaluated on held-out folds.
    let again = engine
        .evaluate(&truth(), &EvaluateOptions::default())
        .unwrap();
    assert!(again.method.starts_with("stratified 5-fold"));

    // New labels refit it.
    let rows = vec![("1013184".to_string(), "RR Lyr".to_string())];
    let import = engine.import_labels(&rows, "more.csv").unwrap();
    let refit = import.metric.expect("refitted after the import");
    assert!(refit.spec_version > m.spec_version);
    assert_eq!(engine.spec().version, refit.spec_version);
}

#[test]
fn presets_rank_neighbours_by_one_group_of_features() {
    let (_dir, engine) = labelled_engine();
    let spec = engine.spec();
    let (ids, vectors) = engine.vectors();
    // A Fink ZTF alert object: it has both lightcurve and packet context.
    let target = "ZTF19acmbvwi";
    let me = ids.iter().position(|i| i == target).unwrap();
    let mut answers = Vec::new();
    for group in [
        FeatureGroup::Lightcurve,
        FeatureGroup::Context,
        FeatureGroup::Flux,
    ] {
        let mask = spec.group_mask(group);
        let cut = |v: &[f32]| -> Vec<f32> { v.iter().zip(&mask).map(|(x, m)| x * m).collect() };
        let mut q = SimilarQuery::new(Target::Object(target.into()), 5);
        q.features = group;
        q.explain = true;
        let hits = engine.find_similar(&q).unwrap();
        assert_eq!(hits.len(), 5);
        // Each explanation splits the distance the preset ranked by, over its features.
        for h in &hits {
            let e = h.explanation.as_ref().expect("explained");
            assert!((e.distance - h.distance).abs() < 1e-4, "{group:?} {e:?}");
            assert!(!e.closest.is_empty());
            for c in &e.closest {
                assert!(group.contains(&c.feature), "{group:?}: {}", c.feature);
            }
        }
        // Fewer objects than the preset's candidates: the answer is the exact ranking.
        let mut exact: Vec<(f32, &String)> = ids
            .iter()
            .zip(&vectors)
            .filter(|(id, _)| *id != target)
            .map(|(id, v)| (l2(&cut(&vectors[me]), &cut(v)), id))
            .collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        for (h, (d, id)) in hits.iter().zip(&exact) {
            assert!(
                (h.distance - d).abs() < 1e-4,
                "{group:?}: {} {} vs {d}",
                h.object_id,
                h.distance
            );
            assert_eq!(&h.object_id, *id, "{group:?}");
        }
        answers.push(hits.iter().map(|h| h.object_id.clone()).collect::<Vec<_>>());

        // recommend scores with the preset's features: one positive, score 1/(1 + d).
        let recs = engine
            .recommend(&RecommendQuery {
                like: vec![target.into()],
                top: 3,
                features: group,
                ..RecommendQuery::default()
            })
            .unwrap();
        for r in &recs {
            let v = &vectors[ids.iter().position(|i| *i == r.object_id).unwrap()];
            let d = l2(&cut(&vectors[me]), &cut(v));
            assert!(
                (r.score - 1.0 / (1.0 + f64::from(d))).abs() < 1e-5,
                "{group:?} {r:?}"
            );
        }
        assert_eq!(recs[0].object_id, exact[0].1.as_str(), "{group:?}");
    }
    assert_ne!(
        answers[0], answers[1],
        "shape and context are different questions"
    );
    assert_ne!(answers[0], answers[2]);
    assert_ne!(answers[1], answers[2]);
    // The query's own group weights: context weighed 3 against 1, ranked exactly here.
    let weights: asterism::embed::GroupWeights = "lightcurve=1,context=3".parse().unwrap();
    let mult = spec.group_multipliers(FeatureGroup::All, Some(weights));
    let times = |v: &[f32]| -> Vec<f32> { v.iter().zip(&mult).map(|(x, m)| x * m).collect() };
    let mut q = SimilarQuery::new(Target::Object(target.into()), 5);
    q.weights = Some(weights);
    q.explain = true;
    let hits = engine.find_similar(&q).unwrap();
    for h in &hits {
        let v = &vectors[ids.iter().position(|i| *i == h.object_id).unwrap()];
        let d = l2(&times(&vectors[me]), &times(v));
        let e = h.explanation.as_ref().expect("explained");
        assert!((e.distance - d).abs() < 1e-4, "{e:?} vs {d}");
        assert!(
            (h.distance - d).abs() < 1e-4,
            "{} {} vs {d}",
            h.object_id,
            h.distance
        );
    }
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));

    // A lightcurve table carries no packet context and no difference fluxes: those presets
    // are refused, by similar and by classify.
    for group in [FeatureGroup::Context, FeatureGroup::Flux] {
        let mut q = SimilarQuery::new(Target::Object("1013184".into()), 5);
        q.features = group;
        let e = engine.find_similar(&q).unwrap_err();
        assert!(
            matches!(
                e,
                EngineError::InvalidArgument {
                    field: "features",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = engine.classify_by("1013184", group).unwrap_err();
        assert!(
            matches!(
                e,
                EngineError::InvalidArgument {
                    field: "features",
                    ..
                }
            ),
            "{e:?}"
        );
    }
    // classify by the flux preset: its voters are the nearest labelled objects in that space.
    let c = engine.classify_by(target, FeatureGroup::Flux).unwrap();
    let flux = spec.group_mask(FeatureGroup::Flux);
    let cut = |v: &[f32]| -> Vec<f32> { v.iter().zip(&flux).map(|(x, m)| x * m).collect() };
    for v in &c.voters {
        let other = &vectors[ids.iter().position(|i| *i == v.object_id).unwrap()];
        let d = l2(&cut(&vectors[me]), &cut(other));
        assert!((v.distance - d).abs() < 1e-4, "{v:?} vs {d}");
    }
    assert!(c.voters.windows(2).all(|w| w[0].distance <= w[1].distance));
}

/// Early-lightcurve analogs: at an age past every lightcurve's end, `--at-age` is the exact
/// search over the current embeddings; at 5 days each object keeps only its first 5 days.
#[test]
fn at_age_compares_every_object_as_it_was_days_after_its_first_detection() {
    let (_dir, engine) = labelled_engine();
    let truth = truth();
    let late = EvaluateOptions {
        at_age: Some(1e6),
        ..EvaluateOptions::default()
    };
    let report = engine.evaluate(&truth, &late).unwrap();
    assert_eq!(
        report.method,
        "leave-one-out, exact, every object at age 1000000 d"
    );
    assert_eq!(report.evaluation.n, 60);
    // The same vote by hand: each object's 10 nearest other labelled objects, exactly.
    let (ids, vectors) = engine.vectors();
    let labelled: Vec<(&String, &Vec<f32>)> = ids
        .iter()
        .zip(&vectors)
        .filter(|(id, _)| truth.contains_key(*id))
        .collect();
    let mut correct = 0;
    for (id, v) in &labelled {
        let mut near: Vec<(f32, &String)> = labelled
            .iter()
            .filter(|(other, _)| other != id)
            .map(|(other, w)| (l2(v, w), *other))
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        let voters: Vec<(String, f32)> = near
            .iter()
            .take(10)
            .map(|(d, other)| (truth[*other].clone(), *d))
            .collect();
        let best = asterism::science::vote(&voters)
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .unwrap()
            .0;
        correct += usize::from(best == truth[*id]);
    }
    assert_eq!(report.evaluation.accuracy, correct as f64 / 60.0);

    // similar: at a late age, the as-of answer; at 5 days, 5-day lightcurves.
    let mut at_age = SimilarQuery::new(Target::Object("1013184".into()), 5);
    at_age.at_age = Some(1e6);
    let mut as_of = SimilarQuery::new(Target::Object("1013184".into()), 5);
    as_of.as_of = Some(1e9);
    let a = engine.find_similar(&at_age).unwrap();
    let b = engine.find_similar(&as_of).unwrap();
    assert_eq!(a, b);
    at_age.at_age = Some(5.0);
    let early = engine.find_similar(&at_age).unwrap();
    assert_eq!(early.len(), 5);
    for h in &early {
        let r = engine.object(&h.object_id).unwrap();
        let first = r.meta.first_mjd.unwrap();
        let within = r.detections.iter().filter(|d| d.mjd <= first + 5.0).count();
        assert_eq!(h.n_detections, within, "{}", h.object_id);
        assert!(within < r.detections.len(), "{} was cut", h.object_id);
    }
    at_age.as_of = Some(60000.0);
    let e = engine.find_similar(&at_age).unwrap_err();
    assert!(
        matches!(
            e,
            EngineError::InvalidArgument {
                field: "at_age",
                ..
            }
        ),
        "{e:?}"
    );

    // classify: the labelled objects nearest at the same age vote.
    let c = engine.classify_at_age("1013184", 1e6).unwrap();
    assert_eq!(c.method, "vote at age");
    assert_eq!(c.class.as_deref(), Some("RR Lyr"));
    assert_eq!(c.voters.len(), 10);
    assert!(c.voters.iter().all(|v| v.object_id != "1013184"));
    assert!(c.voters.windows(2).all(|w| w[0].distance <= w[1].distance));
    let e = engine.classify_at_age("1013184", -1.0).unwrap_err();
    assert!(
        matches!(
            e,
            EngineError::InvalidArgument {
                field: "at_age",
                ..
            }
        ),
        "{e:?}"
    );
}

/// One space for ZTF and Rubin (issue 16): the same generated objects, observed by each survey
/// as it would (its cadence, bands and depth; `Cadence::Survey`) and read back through the
/// real packet writers and decoders, find their twin among their 10 nearest by the flux
/// preset three times as often as by the index's metric (0.68 against 0.20 here); and a vote
/// over the flux preset by the labelled ZTF versions classifies the Rubin twins.
#[test]
fn the_flux_preset_finds_the_same_object_seen_by_the_other_survey() {
    use asterism::alert::write::PacketWriter;
    use asterism::alert::{decode, DecodeOptions};
    use asterism::model::{Alert, Survey};
    use asterism::synth::{self, AlertStream, Cadence, StreamSpec};

    let bases = lightcurve_records();
    let n = 120;
    let observe = |survey: Survey| -> (Vec<Alert>, Vec<String>) {
        let spec = StreamSpec {
            objects: n,
            seed: 7,
            backfill: true,
            cadence: Cadence::Survey,
            ..StreamSpec::for_survey(survey)
        };
        let writer = PacketWriter::new(survey).unwrap();
        let mut stream = AlertStream::new(&bases, spec);
        let alerts: Vec<Alert> = stream
            .by_ref()
            .flat_map(|p| {
                let out = decode(
                    "p.avro",
                    &writer.write(&p).unwrap(),
                    &DecodeOptions::default(),
                );
                assert!(out.rejects.is_empty(), "{:?}", out.rejects);
                out.alerts
            })
            .collect();
        let base_of = (0..n)
            .map(|i| stream.base_of(i).unwrap().to_string())
            .collect();
        (alerts, base_of)
    };
    let (ztf, ztf_bases) = observe(Survey::Ztf);
    let (rubin, rubin_bases) = observe(Survey::Lsst);
    assert_eq!(ztf_bases, rubin_bases, "twins are made from the same base");
    let (_dir, engine) = engine();
    engine.apply(&ztf).unwrap();
    engine.apply(&rubin).unwrap();
    let twin = |i: usize| {
        (
            synth::object_id(Survey::Ztf, i as u64),
            synth::object_id(Survey::Lsst, i as u64),
        )
    };
    // Objects the survey never detected are not stored.
    let pairs: Vec<usize> = (0..n)
        .filter(|&i| {
            let (z, r) = twin(i);
            engine.object(&z).is_ok() && engine.object(&r).is_ok()
        })
        .collect();
    assert!(pairs.len() >= 100, "{} pairs", pairs.len());
    let found = |features: FeatureGroup| -> f64 {
        let mut hits = 0;
        for &i in &pairs {
            let (z, r) = twin(i);
            let mut q = SimilarQuery::new(Target::Object(z), 10);
            q.features = features;
            let near = engine.find_similar(&q).unwrap();
            hits += usize::from(near.iter().any(|h| h.object_id == r));
        }
        hits as f64 / pairs.len() as f64
    };
    let (by_all, by_flux) = (found(FeatureGroup::All), found(FeatureGroup::Flux));
    assert!(
        by_flux >= 0.55 && by_flux >= 2.5 * by_all,
        "twins found: flux {by_flux}, all {by_all}"
    );
    // Ranked by how well the lightcurves fit, the flux scan's nearest give the twin more often:
    // at least 90% (issue 16's target; 0.981 on these 108 pairs with 300 candidates and a cost
    // on time shifts, 0.954 with 100 and free shifts, 0.907 before the fit counted the points
    // the other curve does not span and the limits of visits that detected nothing).
    let by_curves = found(FeatureGroup::Curves);
    assert!(
        by_curves >= 0.9 && by_curves >= by_flux + 0.2,
        "twins found: curves {by_curves}, flux {by_flux}"
    );
    // Recommendations from a ZTF version by the curves preset: its Rubin twin among the first
    // ten for most of them, as the similarity search finds it.
    let recommended = pairs
        .iter()
        .filter(|&&i| {
            let (z, r) = twin(i);
            let got = engine
                .recommend(&RecommendQuery {
                    like: vec![z],
                    top: 10,
                    features: FeatureGroup::Curves,
                    ..Default::default()
                })
                .unwrap();
            got.iter().any(|h| h.object_id == r)
        })
        .count() as f64
        / pairs.len() as f64;
    assert!(
        recommended >= by_curves - 0.05,
        "recommended {recommended}, found {by_curves}"
    );
    // A vector has no lightcurve to fit.
    let mut q = SimilarQuery::new(Target::Vector(vec![0.0; 87]), 10);
    q.features = FeatureGroup::Curves;
    assert!(matches!(
        engine.find_similar(&q),
        Err(EngineError::InvalidArgument {
            field: "features",
            ..
        })
    ));

    // The ZTF versions labelled with their base's class; the Rubin twins voted on by them.
    let truth = truth();
    let rows: Vec<(String, String)> = pairs
        .iter()
        .map(|&i| (twin(i).0, truth[&ztf_bases[i]].clone()))
        .collect();
    engine.import_labels(&rows, "ztf.csv").unwrap();
    for features in [FeatureGroup::Flux, FeatureGroup::Curves] {
        let right = pairs
            .iter()
            .filter(|&&i| {
                let c = engine.classify_by(&twin(i).1, features).unwrap();
                c.class.as_deref() == Some(truth[&ztf_bases[i]].as_str())
            })
            .count();
        assert!(
            right as f64 >= 0.85 * pairs.len() as f64,
            "{right} of {} Rubin twins classified by the ZTF labels ({features:?})",
            pairs.len()
        );
    }
}
