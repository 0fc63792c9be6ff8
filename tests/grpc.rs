//! The gRPC service end to end: a real tonic server on 127.0.0.1:0 over a real RocksDB store,
//! the real packets of `data/` streamed in, every RPC's answer checked against the engine it
//! serves, every error code and every token rule.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use asterism::engine::{AnomalyQuery, Engine, SimilarQuery, Target};
use asterism::server::proto::asterism_client::AsterismClient;
use asterism::server::proto::{self as pb, find_similar_request::Query, neighbour_event::Kind};
use asterism::server::{serve, Access, ServerConfig};
use asterism::source;
use common::{config, data};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const WRITE: &str = "write-token";
const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";
/// The fixture's message limit; the largest file in data/ is 2.5 MB.
const MAX_MESSAGE: usize = 4 << 20;

fn access() -> Access {
    Access {
        write_token: Some(WRITE.into()),
        read_token: None,
        users: [("alice", ALICE), ("bob", BOB)]
            .into_iter()
            .map(|(u, t)| (u.to_string(), t.to_string()))
            .collect(),
    }
}

/// A server on its own thread and runtime, so it outlives any one test's runtime.
struct Served {
    addr: SocketAddr,
    engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), asterism::server::ServerError>>>,
}

fn start(db: &Path, server: ServerConfig) -> Served {
    let engine = Arc::new(Engine::open(db, config()).expect("open store"));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = Arc::clone(&engine);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addr_tx.send(listener.local_addr()?).expect("send address");
            serve(served, server, listener, async {
                let _ = stopped.await;
            })
            .await
        })
    });
    Served {
        addr: addr_rx.recv().expect("server address"),
        engine,
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Served {
    /// Graceful shutdown; returns once the server has stopped and written its index.
    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread").expect("server result");
        }
    }
}

fn server_config() -> ServerConfig {
    ServerConfig {
        access: access(),
        max_message_bytes: MAX_MESSAGE,
        ..ServerConfig::default()
    }
}

/// Every file under the given folders of data/, as packets named by their path in data/.
fn packets(rels: &[&str]) -> Vec<pb::IngestRequest> {
    let paths: Vec<PathBuf> = rels.iter().map(|r| data(r)).collect();
    let (files, bad) = source::expand(&paths);
    assert!(bad.is_empty());
    files
        .iter()
        .map(|f| pb::IngestRequest {
            name: f
                .strip_prefix(data(""))
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            packet: std::fs::read(f).unwrap(),
            strict: false,
        })
        .collect()
}

const ALL: [&str; 4] = ["ztf", "fink", "lsst", "lightcurves"];

async fn client(addr: SocketAddr) -> AsterismClient<Channel> {
    AsterismClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

async fn ingest(
    c: &mut AsterismClient<Channel>,
    packets: Vec<pb::IngestRequest>,
    token: &str,
) -> Result<pb::IngestResponse, Status> {
    c.ingest(authed(tokio_stream::iter(packets), token))
        .await
        .map(|r| r.into_inner())
}

/// The code of a call that must fail.
async fn code<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Code {
    match call.await {
        Ok(_) => panic!("the call succeeded"),
        Err(e) => e.code(),
    }
}

fn field(s: &Status) -> &str {
    s.metadata()
        .get("asterism-field")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// One server over all of data/, ingested over gRPC, labelled; shared by the read-only tests.
struct Shared {
    served: Served,
    ingested: pb::IngestResponse,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("grpc-shared");
        let _ = std::fs::remove_dir_all(&dir);
        let served = start(&dir.join("db"), server_config());
        let addr = served.addr;
        // The tests' own runtimes cannot block; ingest from a thread with its own.
        let ingested = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let mut c = client(addr).await;
                ingest(&mut c, packets(&ALL), WRITE).await.unwrap()
            })
        })
        .join()
        .unwrap();
        let rows: Vec<(String, String)> = std::fs::read_to_string(data("labels/lightcurves.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].to_string(), f[1].to_string())
            })
            .collect();
        served
            .engine
            .import_labels(&rows, "lightcurves.csv")
            .unwrap();
        Shared { served, ingested }
    })
}

async fn shared_client() -> (AsterismClient<Channel>, &'static Engine) {
    let s = shared();
    (client(s.served.addr).await, &s.served.engine)
}

fn by_id(id: &str, k: u32) -> pb::FindSimilarRequest {
    pb::FindSimilarRequest {
        query: Some(Query::ObjectId(id.into())),
        k,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_grpc_stores_what_the_cli_stores() {
    let s = shared();
    let got = &s.ingested;
    let (_dir, engine) = common::engine();
    let want = common::ingest(&engine, &ALL);
    assert_eq!(got.packets_received as usize, packets(&ALL).len());
    assert_eq!(got.alerts_read, want.alerts_read);
    assert_eq!(got.alerts_rejected, want.alerts_rejected);
    assert_eq!(got.alerts_duplicate, want.alerts_duplicate);
    assert_eq!(got.objects_new, want.objects_new);
    assert_eq!(got.detections_added, want.detections_added);
    // Each malformed packet is reported by its name, with the decoder's reason.
    assert!(got.alerts_rejected >= 6, "{got:?}");
    assert!(got
        .rejects
        .iter()
        .any(|r| r.source.starts_with("ztf/ampel_20180601/") && !r.reason.is_empty()));
    let (mut c, engine) = shared_client().await;
    let stats = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    let objects: u64 = stats.surveys.iter().map(|s| s.objects).sum();
    assert_eq!(objects, want.objects_new);
    assert_eq!(stats.dimension as usize, engine.embedder().dim());
    assert_eq!(stats.indexed_objects as usize, engine.indexed());
    assert_eq!(stats.max_k, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_object_returns_the_merged_lightcurve_class_and_anomaly() {
    let (mut c, engine) = shared_client().await;
    let o = c
        .get_object(pb::GetObjectRequest {
            object_id: "ZTF18abxhyqv".into(),
            without_lightcurve: false,
        })
        .await
        .unwrap()
        .into_inner();
    // 4 packets of this object -> 7 distinct detections and 9 upper limits.
    assert_eq!(o.detections.len(), 7);
    assert_eq!(o.upper_limits.len(), 9);
    assert_eq!(o.survey, pb::Survey::Ztf as i32);
    assert!(o.detections.iter().all(|d| d.source_id.is_some()));
    let meta = o.meta.unwrap();
    assert!(meta.ra.is_some() && meta.first_mjd <= meta.last_mjd);
    let class = o.classification.expect("classified");
    let sum: f64 = class.probabilities.values().sum();
    assert!(class.probabilities.is_empty() || (sum - 1.0).abs() < 1e-6);
    let anomaly = o.anomaly.expect("scored");
    let want = engine.anomaly_of("ZTF18abxhyqv").unwrap().unwrap();
    assert_eq!(anomaly.score, want.score);

    let rr = c
        .get_object(pb::GetObjectRequest {
            object_id: "1013184".into(),
            without_lightcurve: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rr.detections.is_empty());
    assert_eq!(rr.survey, pb::Survey::External as i32);
    assert_eq!(rr.labels[0].class_name, "RR Lyr");
    assert_eq!(
        rr.classification.unwrap().class_name.as_deref(),
        Some("RR Lyr")
    );

    let missing = c
        .get_object(pb::GetObjectRequest {
            object_id: "ZTF00nothere".into(),
            without_lightcurve: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("ZTF00nothere"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_similar_by_id_vector_and_lightcurve() {
    let (mut c, engine) = shared_client().await;
    let got = c
        .find_similar(by_id("1013184", 5))
        .await
        .unwrap()
        .into_inner()
        .neighbours;
    let want = engine.similar("1013184", 5, None).unwrap();
    let ids: Vec<&str> = got.iter().map(|n| n.object_id.as_str()).collect();
    let want_ids: Vec<&str> = want.iter().map(|n| n.object_id.as_str()).collect();
    assert_eq!(ids, want_ids);
    // An RR Lyrae star's neighbours are RR Lyrae stars.
    assert!(got
        .iter()
        .all(|n| n.class_name.as_deref() == Some("RR Lyr")));
    assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance));

    // Its own vector finds it first, at distance 0.
    let (vector, _) = engine.vector("1013184").unwrap();
    let got = c
        .find_similar(pb::FindSimilarRequest {
            query: Some(Query::Vector(pb::Vector { values: vector })),
            k: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .neighbours;
    assert_eq!(got[0].object_id, "1013184");
    assert!(got[0].distance < 1e-4);

    // So does its lightcurve, embedded by the server with the same features.
    let lightcurve = c
        .get_object(pb::GetObjectRequest {
            object_id: "1013184".into(),
            without_lightcurve: false,
        })
        .await
        .unwrap()
        .into_inner()
        .detections;
    let got = c
        .find_similar(pb::FindSimilarRequest {
            query: Some(Query::Lightcurve(pb::Lightcurve {
                detections: lightcurve,
            })),
            k: 3,
            explain: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .neighbours;
    assert_eq!(got[0].object_id, "1013184");
    assert!(got[0].distance < 1e-3, "{}", got[0].distance);
    let e = got[1].explanation.as_ref().expect("explained");
    assert!((e.distance - got[1].distance).abs() < 1e-3);
    assert!(!e.apart.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_similar_filters_and_as_of() {
    let (mut c, engine) = shared_client().await;
    // Class filter: an SN Ia's nearest RR Lyrae stars.
    let mut q = by_id("ZTF18aadzfso", 5);
    q.filters = Some(pb::Filters {
        class_name: Some("RR Lyrae".into()),
        min_detections: Some(20),
        ..Default::default()
    });
    let got = c.find_similar(q).await.unwrap().into_inner().neighbours;
    assert_eq!(got.len(), 5);
    assert!(got
        .iter()
        .all(|n| n.class_name.as_deref() == Some("RR Lyr") && n.detections >= 20));

    // Cone: only objects within 1 degree of ZTF18abxhyqv.
    let o = engine.object("ZTF18abxhyqv").unwrap();
    let (ra, dec) = (o.meta.ra.unwrap(), o.meta.dec.unwrap());
    let mut q = by_id("ZTF18abxhyqv", 10);
    q.filters = Some(pb::Filters {
        cone: Some(pb::Cone {
            ra,
            dec,
            radius: 1.0,
        }),
        ..Default::default()
    });
    let got = c.find_similar(q).await.unwrap().into_inner().neighbours;
    for n in &got {
        let r = engine.object(&n.object_id).unwrap();
        let sep = asterism::engine::separation(ra, dec, r.meta.ra.unwrap(), r.meta.dec.unwrap());
        assert!(sep <= 1.0, "{} at {sep} deg", n.object_id);
    }

    // Last detection window.
    let mut q = by_id("ZTF18abxhyqv", 10);
    q.filters = Some(pb::Filters {
        last_detection_after: Some(58_000.0),
        ..Default::default()
    });
    let got = c.find_similar(q).await.unwrap().into_inner().neighbours;
    assert!(!got.is_empty());
    for n in &got {
        assert!(engine.object(&n.object_id).unwrap().meta.last_mjd.unwrap() >= 58_000.0);
    }

    // As of a date: the engine's exact answer over the embeddings of that date.
    let mut q = by_id("ZTF18abxhyqv", 3);
    q.as_of = Some(58_427.3);
    let got = c.find_similar(q).await.unwrap().into_inner().neighbours;
    let want = engine
        .find_similar(&SimilarQuery {
            as_of: Some(58_427.3),
            ..SimilarQuery::new(Target::Object("ZTF18abxhyqv".into()), 3)
        })
        .unwrap();
    let got: Vec<(String, f32)> = got.into_iter().map(|n| (n.object_id, n.distance)).collect();
    let want: Vec<(String, f32)> = want
        .into_iter()
        .map(|n| (n.object_id, n.distance))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_invalid_argument_with_the_field() {
    let (mut c, engine) = shared_client().await;
    for (request, want_field) in [
        (by_id("1013184", 0), "k"),
        (by_id("1013184", 1001), "k"),
        (
            pb::FindSimilarRequest {
                query: Some(Query::Vector(pb::Vector {
                    values: vec![0.0; 5],
                })),
                k: 5,
                ..Default::default()
            },
            "vector",
        ),
        (
            pb::FindSimilarRequest {
                query: Some(Query::Lightcurve(pb::Lightcurve::default())),
                k: 5,
                ..Default::default()
            },
            "lightcurve",
        ),
        (
            pb::FindSimilarRequest {
                k: 5,
                ..Default::default()
            },
            "query",
        ),
        (
            pb::FindSimilarRequest {
                filters: Some(pb::Filters {
                    cone: Some(pb::Cone {
                        ra: 10.0,
                        dec: 10.0,
                        radius: -1.0,
                    }),
                    ..Default::default()
                }),
                ..by_id("1013184", 5)
            },
            "filters.cone.radius",
        ),
    ] {
        let e = c.find_similar(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert_eq!(field(&e), want_field, "{e:?}");
        assert!(e.message().starts_with(want_field), "{}", e.message());
    }
    let dim = engine.embedder().dim();
    let e = c
        .find_similar(pb::FindSimilarRequest {
            query: Some(Query::Vector(pb::Vector {
                values: vec![0.0; dim + 1],
            })),
            k: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains(&format!("the embedding has {dim}")));

    let e = c.find_similar(by_id("nothere", 5)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .top_anomalies(pb::TopAnomaliesRequest {
            top: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "top"));
    let e = c
        .find_similar(pb::FindSimilarRequest {
            features: "shape".into(),
            ..by_id("1013184", 3)
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "features"));
    let e = c
        .find_similar(pb::FindSimilarRequest {
            at_age: Some(-2.0),
            ..by_id("1013184", 3)
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "at_age"));
    let e = c
        .find_similar(pb::FindSimilarRequest {
            weights: "context=-1".into(),
            ..by_id("1013184", 3)
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "weights"));
    let e = c
        .recommend(pb::RecommendRequest {
            top: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "positive"));
    let e = c
        .classify(pb::ClassifyRequest {
            object_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "object_id"));

    // A 1 MB id is refused as an argument, not echoed back in a message that would overflow
    // the client's header limit (which ends the call with RESOURCE_EXHAUSTED or a reset).
    let huge = "Z".repeat(1 << 20);
    let e = c
        .classify(pb::ClassifyRequest {
            object_id: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "object_id"));
    assert!(e.message().len() < 200, "{}", e.message().len());
    let e = c
        .recommend(pb::RecommendRequest {
            positive: vec![huge],
            top: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "positive"));
    // An unknown id of a legal length is NOT_FOUND and named in full.
    let id = "Z".repeat(200);
    let e = c
        .classify(pb::ClassifyRequest {
            object_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_resource_exhausted() {
    let (mut c, _) = shared_client().await;
    let e = c
        .get_object(pb::GetObjectRequest {
            object_id: "x".repeat(MAX_MESSAGE + 1),
            without_lightcurve: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let big = pb::IngestRequest {
        name: "big.avro".into(),
        packet: vec![0u8; MAX_MESSAGE + 1],
        strict: false,
    };
    let e = ingest(&mut c, vec![big], WRITE).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_explain_anomalies_and_recommend() {
    let (mut c, engine) = shared_client().await;
    let class = c
        .classify(pb::ClassifyRequest {
            object_id: "1027882".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(class.class_name.as_deref(), Some("RR Lyr"));
    assert_eq!(class.method, "vote");
    assert!(!class.voters.is_empty());
    assert_eq!(
        class,
        asterism_classify(engine, "1027882"),
        "the server answers what the engine answers"
    );

    let e = c
        .explain(pb::ExplainRequest {
            object_id: "ZTF18aadzfso".into(),
            other_id: "1013184".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .explanation
        .unwrap();
    let want = engine.explain("ZTF18aadzfso", "1013184").unwrap();
    assert_eq!(e.distance, want.distance);
    assert_eq!(e.apart[0].feature, want.apart[0].feature);
    let e = c
        .explain(pb::ExplainRequest {
            object_id: "ZTF18aadzfso".into(),
            other_id: "nothere".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let top = c
        .top_anomalies(pb::TopAnomaliesRequest {
            top: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .anomalies;
    let want = engine
        .anomalies(&AnomalyQuery {
            top: 10,
            ..AnomalyQuery::default()
        })
        .unwrap();
    let got: Vec<(&str, f64)> = top
        .iter()
        .map(|a| (a.object_id.as_str(), a.score))
        .collect();
    let want: Vec<(&str, f64)> = want
        .iter()
        .map(|a| (a.object_id.as_str(), a.score))
        .collect();
    assert_eq!(got, want);

    let recs = c
        .recommend(pb::RecommendRequest {
            positive: vec!["1013184".into()],
            negative: vec!["ZTF18aadzfso".into()],
            top: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .recommendations;
    assert_eq!(recs.len(), 5);
    assert!(recs
        .iter()
        .all(|r| r.class_name.as_deref() == Some("RR Lyr") && r.object_id != "1013184"));
}

fn asterism_classify(engine: &Engine, id: &str) -> pb::ClassifyResponse {
    let c = engine.classify(id).unwrap();
    pb::ClassifyResponse {
        object_id: c.object_id,
        class_name: c.class,
        confidence: c.confidence,
        probabilities: c.probabilities.into_iter().collect(),
        method: c.method.to_string(),
        voters: c
            .voters
            .into_iter()
            .map(|v| pb::Voter {
                object_id: v.object_id,
                class_name: v.class,
                source: v.source,
                distance: v.distance,
            })
            .collect(),
        packet_snia_score: c.packet_snia_score,
        labels: c
            .labels
            .into_iter()
            .map(|l| pb::Label {
                class_name: l.class,
                source: l.source,
                raw: l.raw,
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_and_personal_rankings_need_the_users_own_token() {
    let (mut c, _) = shared_client().await;
    let vote = |user: &str| pb::VoteRequest {
        user: user.into(),
        object_id: "1013184".into(),
        up: true,
    };
    assert_eq!(
        code(c.vote(Request::new(vote("alice")))).await,
        Code::Unauthenticated
    );
    assert_eq!(
        code(c.vote(authed(vote("alice"), "guess"))).await,
        Code::Unauthenticated
    );
    assert_eq!(
        code(c.vote(authed(vote("alice"), BOB))).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code(c.vote(authed(vote("alice"), WRITE))).await,
        Code::PermissionDenied
    );
    let e = c
        .vote(authed(
            pb::VoteRequest {
                object_id: "nothere".into(),
                ..vote("alice")
            },
            ALICE,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    c.vote(authed(vote("alice"), ALICE)).await.unwrap();

    let personal = |user: &str| pb::TopAnomaliesRequest {
        top: 5,
        user: Some(user.into()),
        ..Default::default()
    };
    assert_eq!(
        code(c.top_anomalies(Request::new(personal("alice")))).await,
        Code::Unauthenticated
    );
    assert_eq!(
        code(c.top_anomalies(authed(personal("alice"), BOB))).await,
        Code::PermissionDenied
    );
    let mine = c
        .top_anomalies(authed(personal("alice"), ALICE))
        .await
        .unwrap()
        .into_inner()
        .anomalies;
    assert_eq!(mine.len(), 5);
    assert!(mine.iter().all(|a| a.object_id != "1013184"));

    let recommend = |user: &str| pb::RecommendRequest {
        user: Some(user.into()),
        top: 5,
        ..Default::default()
    };
    assert_eq!(
        code(c.recommend(authed(recommend("alice"), BOB))).await,
        Code::PermissionDenied
    );
    let recs = c
        .recommend(authed(recommend("alice"), ALICE))
        .await
        .unwrap()
        .into_inner()
        .recommendations;
    assert!(
        recs.iter()
            .filter(|r| r.class_name.as_deref() == Some("RR Lyr"))
            .count()
            >= 4
    );
    // Bob has his token but no votes.
    let e = c
        .recommend(authed(recommend("bob"), BOB))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_deadlines() {
    let addr = shared().served.addr;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "asterism.v1.Asterism".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"asterism.v1.Asterism".to_string()),
        "{names:?}"
    );

    // The same through v1alpha, which Python's grpcio-reflection, older grpcurl, Postman and
    // evans ask.
    {
        use tonic_reflection::pb::v1alpha::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let mut reflection = ServerReflectionClient::new(channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("unexpected v1alpha reflection answer {answer:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.contains(&"asterism.v1.Asterism".to_string()),
            "{names:?}"
        );
    }

    // A deadline far shorter than an exact as-of search over every object.
    let mut c = AsterismClient::new(channel);
    let mut q = by_id("ZTF18abxhyqv", 10);
    q.as_of = Some(60_000.0);
    let mut request = Request::new(q);
    request.set_timeout(Duration::from_micros(1));
    let e = c.find_similar(request).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_needs_the_write_token_and_reports_or_refuses_bad_packets() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = start(&dir.path().join("db"), server_config());
    let mut c = client(served.addr).await;
    let good = packets(&["ztf/ZTF18abxhyqv.tar.gz"]);
    for (token, code) in [
        ("", Code::Unauthenticated),
        ("nope", Code::Unauthenticated),
        (ALICE, Code::PermissionDenied),
    ] {
        let e = ingest(&mut c, good.clone(), token).await.unwrap_err();
        assert_eq!(e.code(), code);
    }
    assert_eq!(served.engine.stats().unwrap().len(), 0, "nothing stored");

    let bad = pb::IngestRequest {
        name: "truncated.avro".into(),
        packet: b"Obj\x01\x02\x16avro.schema".to_vec(),
        strict: false,
    };
    let r = ingest(&mut c, [good.clone(), vec![bad.clone()]].concat(), WRITE)
        .await
        .unwrap();
    assert_eq!(r.packets_received, 2);
    assert_eq!(
        (r.alerts_read, r.objects_new, r.detections_added),
        (4, 1, 7)
    );
    assert_eq!(r.alerts_rejected, 1);
    assert_eq!(r.rejects[0].source, "truncated.avro");
    assert!(r.rejects[0].reason.starts_with("Avro"), "{:?}", r.rejects);

    // Strict: the stream fails at the bad packet; the one before it is stored.
    let other = packets(&["ztf/ZTF18acruwxq.tar.gz"]);
    let strict = pb::IngestRequest {
        strict: true,
        ..bad
    };
    let e = ingest(&mut c, [other, vec![strict]].concat(), WRITE)
        .await
        .unwrap_err();
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "packet"));
    assert!(e.message().contains("truncated.avro"), "{}", e.message());
    assert!(served.engine.object("ZTF18acruwxq").is_ok());

    // A graceful stop loses nothing acknowledged: reopened, the store has both objects.
    served.shutdown();
    let engine = served.engine.clone();
    drop(served);
    assert_eq!(engine.object("ZTF18abxhyqv").unwrap().detections.len(), 7);
    drop(engine);
    let reopened = Engine::open(&dir.path().join("db"), config()).unwrap();
    assert!(matches!(
        reopened.index_origin(),
        asterism::engine::IndexOrigin::Loaded { replayed: 0 }
    ));
    assert_eq!(reopened.object("ZTF18abxhyqv").unwrap().detections.len(), 7);
    assert!(reopened.object("ZTF18acruwxq").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_a_neighbours_new_alert() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = start(&dir.path().join("db"), server_config());
    let mut c = client(served.addr).await;
    ingest(
        &mut c,
        packets(&["lightcurves/RRLyrae", "lightcurves/SNIa"]),
        WRITE,
    )
    .await
    .unwrap();
    let watched = "1013184";
    let mut events = c
        .watch_neighbours(pb::WatchNeighboursRequest {
            object_ids: vec![watched.into()],
        })
        .await
        .unwrap()
        .into_inner();
    let first = events.message().await.unwrap().unwrap();
    assert_eq!(first.kind, Kind::Initial as i32);
    assert_eq!(first.neighbours.len(), 10);
    let neighbour = first.neighbours[0].object_id.clone();

    // New nights of the nearest neighbour, as a lightcurve table named after it: brighter
    // and fading, so its features and its distance to the watched star change.
    let last = served
        .engine
        .object(&neighbour)
        .unwrap()
        .meta
        .last_mjd
        .unwrap();
    let mut table = String::from("time,mag,magerr,band\n");
    for i in 0..12 {
        let t = last + 1.0 + f64::from(i);
        table.push_str(&format!("{t},{:.3},0.02,g\n", 15.0 + 0.3 * f64::from(i)));
        table.push_str(&format!("{t},{:.3},0.02,r\n", 15.2 + 0.3 * f64::from(i)));
    }
    let update = pb::IngestRequest {
        name: format!("{neighbour}.csv"),
        packet: table.into_bytes(),
        strict: true,
    };
    let r = ingest(&mut c, vec![update], WRITE).await.unwrap();
    assert_eq!((r.objects_updated, r.detections_added), (1, 24));

    let event = tokio::time::timeout(Duration::from_secs(60), events.message())
        .await
        .expect("an event within a minute")
        .unwrap()
        .unwrap();
    assert_eq!(event.kind, Kind::Changed as i32);
    assert_eq!(event.object_id, watched);
    assert_eq!(event.caused_by, vec![neighbour.clone()]);
    assert_ne!(event.neighbours, first.neighbours);
    let stored = served.engine.neighbours(watched).unwrap();
    let ids: Vec<&str> = event
        .neighbours
        .iter()
        .map(|n| n.object_id.as_str())
        .collect();
    let want: Vec<&str> = stored.iter().map(|n| n.object_id.as_str()).collect();
    assert_eq!(ids, want);

    // Unknown objects cannot be watched; shutdown ends the stream.
    let e = c
        .watch_neighbours(pb::WatchNeighboursRequest {
            object_ids: vec!["nothere".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    served.shutdown();
    let end = tokio::time::timeout(Duration::from_secs(30), events.message())
        .await
        .expect("the stream ends at shutdown");
    assert!(!matches!(end, Ok(Some(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_answered_while_an_ingest_stream_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let served = start(&dir.path().join("db"), server_config());
    let mut writer = client(served.addr).await;
    let mut reader = client(served.addr).await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let ingest = tokio::spawn(async move {
        writer
            .ingest(authed(
                tokio_stream::wrappers::ReceiverStream::new(rx),
                WRITE,
            ))
            .await
            .map(|r| r.into_inner())
    });
    let all = packets(&["lightcurves/RRLyrae", "lightcurves/SNIa"]);
    let (first, rest) = all.split_at(40);
    for p in first {
        tx.send(p.clone()).await.unwrap();
    }
    // The stream stays open; what arrived is stored after the linger and can be queried.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let stored = |e: &Engine| e.stats().unwrap().values().map(|c| c.objects).sum::<u64>();
    while stored(&served.engine) < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first packets stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = reader
        .find_similar(by_id("1013184", 5))
        .await
        .unwrap()
        .into_inner()
        .neighbours;
    assert_eq!(got.len(), 5);
    assert!(!ingest.is_finished(), "the ingest stream is still open");
    for p in rest {
        tx.send(p.clone()).await.unwrap();
    }
    drop(tx);
    let r = ingest.await.unwrap().unwrap();
    assert_eq!(r.packets_received, 60);
    assert_eq!(r.objects_new, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_closes_reads_to_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config();
    config.access.read_token = Some("reader".into());
    let mut served = start(&dir.path().join("db"), config);
    let mut c = client(served.addr).await;
    let get = || pb::GetObjectRequest {
        object_id: "ZTF18abxhyqv".into(),
        without_lightcurve: true,
    };
    assert_eq!(code(c.get_object(get())).await, Code::Unauthenticated);
    assert_eq!(
        code(c.get_object(authed(get(), "nope"))).await,
        Code::Unauthenticated
    );
    // The read token, a user's token or the write token may read (here: an empty store).
    for token in ["reader", ALICE, WRITE] {
        assert_eq!(
            code(c.get_object(authed(get(), token))).await,
            Code::NotFound
        );
    }
    served.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rubin_confluent_datums_over_ingest_with_the_servers_schema() {
    let dir = tempfile::tempdir().unwrap();
    let framed = pb::IngestRequest {
        name: "alerts-lsst:0:42".into(),
        packet: common::rubin_confluent_datum(),
        strict: true,
    };
    // Without a writer schema the datum cannot be read: a strict packet fails, naming why.
    let mut plain = start(&dir.path().join("plain"), server_config());
    let mut c = client(plain.addr).await;
    let e = ingest(&mut c, vec![framed.clone()], WRITE)
        .await
        .unwrap_err();
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "packet"));
    assert!(e.message().contains("schema id 673"), "{}", e.message());
    plain.shutdown();

    let mut config = server_config();
    config.decode.confluent_schema = Some(Arc::new(
        source::load_schema(&data("schema/lsst-10.0")).unwrap(),
    ));
    let mut served = start(&dir.path().join("db"), config);
    let mut c = client(served.addr).await;
    let r = ingest(&mut c, vec![framed], WRITE).await.unwrap();
    assert_eq!((r.alerts_read, r.objects_new, r.alerts_rejected), (1, 1, 0));
    let stats = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    let lsst = stats
        .surveys
        .iter()
        .find(|s| s.survey == pb::Survey::Lsst as i32)
        .expect("an LSST object");
    assert_eq!((lsst.objects, lsst.detections), (1, 3));
    served.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_opens_as_a_sound_copy() {
    let (mut c, engine) = shared_client().await;
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("copy");
    let request = || pb::BackupRequest {
        out_dir: target.display().to_string(),
    };
    let e = c.backup(request()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let r = c
        .backup(authed(request(), WRITE))
        .await
        .unwrap()
        .into_inner();
    let objects: u64 = engine.stats().unwrap().values().map(|c| c.objects).sum();
    assert_eq!(r.objects, objects);
    assert!(r.bytes > 0);
    let e = c.backup(authed(request(), WRITE)).await.unwrap_err();
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "out_dir"));

    let copy = Engine::open(&target, config()).unwrap();
    let report = copy.check().unwrap();
    assert!(report.is_sound(), "{report:?}");
    assert_eq!(report.objects, objects);
    assert_eq!(copy.stats().unwrap(), engine.stats().unwrap());
    for id in ["1013184", "ZTF18aadzfso", "ZTF18abxhyqv"] {
        assert_eq!(copy.neighbours(id).unwrap(), engine.neighbours(id).unwrap());
        assert_eq!(copy.labels(id).unwrap(), engine.labels(id).unwrap());
    }
}

/// `--tls-cert`/`--tls-key`: a client that trusts the certificate authority of the server's
/// certificate (data/tls: a test CA and a certificate for localhost and 127.0.0.1) gets
/// answers; a plaintext client does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_connects_with_the_servers_certificate() {
    use tonic::transport::{Certificate, ClientTlsConfig};
    let dir = tempfile::tempdir().unwrap();
    let cert = std::fs::read(data("tls/localhost.crt")).unwrap();
    let mut served = start(
        &dir.path().join("db"),
        ServerConfig {
            tls: Some(asterism::server::TlsIdentity {
                cert_pem: cert.clone(),
                key_pem: std::fs::read(data("tls/localhost.key")).unwrap(),
            }),
            ..server_config()
        },
    );
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(data("tls/ca.crt")).unwrap(),
        ))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{}", served.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = AsterismClient::new(channel);
    let r = c
        .ingest(authed(tokio_stream::iter(packets(&["ztf"])), WRITE))
        .await
        .unwrap()
        .into_inner();
    assert!(r.objects_new > 0);
    let stats = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.indexed_objects, r.objects_new);

    let plain = match AsterismClient::connect(format!("http://{}", served.addr)).await {
        Ok(mut c) => c.stats(pb::StatsRequest {}).await.is_ok(),
        Err(_) => false,
    };
    assert!(!plain, "a plaintext client got an answer from a TLS server");
    served.shutdown();
}
