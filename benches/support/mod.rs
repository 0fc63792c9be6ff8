//! Helpers shared by the benches (each bench uses some of them).
#![allow(dead_code)]

mod alloc;
#[allow(unused_imports)] // only the benches that count the heap use them
pub use alloc::{heap, Counting};

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use asterism::alert::write::PacketWriter;
use asterism::alert::DecodeOptions;
use asterism::model::{ObjectRecord, Survey};
use asterism::server::proto::asterism_client::AsterismClient;
use asterism::server::proto::{self as pb, find_similar_request::Query};
use asterism::synth::{AlertStream, StreamSpec};
use asterism::{source, synth};
use rayon::prelude::*;
use tonic::transport::Channel;
use tonic::Request;

/// The write token the benches start their servers with.
pub const TOKEN: &str = "bench";

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The text after `name` on the command line, or `default`.
pub fn arg_text(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// One record per real object in the given folders of data/.
pub fn real_records(folders: &[&str]) -> Vec<ObjectRecord> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let paths: Vec<_> = folders.iter().map(|p| root.join(p)).collect();
    let (files, _) = source::expand(&paths);
    let alerts: Vec<_> = files
        .par_iter()
        .flat_map_iter(|f| source::decode_file(f, &DecodeOptions::default()).alerts)
        .collect();
    synth::records(&alerts)
}

/// Labels for every `every`-th of the first `objects` generated objects (ZTF ids, stream seed
/// irrelevant: an object's base depends on its number only): the class that data/labels gives
/// the real object it was made from, where one does. For a bulk-seeded store, labelled as a
/// broker's cross-match would label a fraction of it.
pub fn generated_labels(
    bases: &[ObjectRecord],
    objects: usize,
    every: usize,
) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/labels");
    let mut class_of = std::collections::HashMap::new();
    for file in ["labels.csv", "lightcurves.csv"] {
        let text = std::fs::read_to_string(root.join(file)).expect("data/labels");
        for line in text.lines().skip(1) {
            let mut cols = line.split(',');
            if let (Some(id), Some(class)) = (cols.next(), cols.next()) {
                class_of.insert(id.to_string(), class.to_string());
            }
        }
    }
    let stream = AlertStream::new(
        bases,
        StreamSpec {
            objects,
            ..StreamSpec::for_survey(Survey::Ztf)
        },
    );
    (0..objects)
        .step_by(every.max(1))
        .filter_map(|i| {
            let class = class_of.get(stream.base_of(i)?)?;
            Some((synth::object_id(Survey::Ztf, i as u64), class.clone()))
        })
        .collect()
}

/// Bytes of the files under `p`.
pub fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

/// Resident set size of this process, bytes (Linux).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Seconds the anomaly scores' first pass takes on `engine` (a pass over every object, once per
/// start): benches on a kept store time it apart, before the calls that read the scores.
pub fn anomaly_first_pass(engine: &asterism::engine::Engine) -> f64 {
    let t = Instant::now();
    engine
        .anomalies(&asterism::engine::AnomalyQuery {
            top: 1,
            ..Default::default()
        })
        .expect("anomaly scores");
    t.elapsed().as_secs_f64()
}

/// The next `n` packets of `stream`, encoded in parallel: (file name, Avro container bytes).
pub fn encode_chunk(
    stream: &mut AlertStream<'_>,
    writer: &PacketWriter,
    n: usize,
) -> Vec<(String, Vec<u8>)> {
    let chunk: Vec<_> = stream.by_ref().take(n).collect();
    chunk
        .par_iter()
        .map(|p| {
            (
                format!("{}.avro", p.candid),
                writer.write(p).expect("encode"),
            )
        })
        .collect()
}

/// Encoded `survey` packets of objects `first..first + objects`, in stream order, and each
/// one's object.
pub fn packets(
    bases: &[ObjectRecord],
    first: usize,
    objects: usize,
    seed: u64,
    survey: Survey,
) -> (Vec<pb::IngestRequest>, Vec<String>) {
    let writer = PacketWriter::new(survey).expect("packet schema");
    let spec = StreamSpec {
        objects,
        first_object: first,
        seed,
        ..StreamSpec::for_survey(survey)
    };
    let stream: Vec<_> = AlertStream::new(bases, spec).collect();
    let ids: Vec<String> = stream.iter().map(|p| p.object_id.clone()).collect();
    let requests = stream
        .par_iter()
        .map(|p| pb::IngestRequest {
            name: format!("{}.avro", p.candid),
            packet: writer.write(p).expect("encode"),
            strict: false,
        })
        .collect();
    (requests, ids)
}

pub fn authed<T>(message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

pub async fn client(addr: SocketAddr) -> AsterismClient<Channel> {
    AsterismClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
        .max_encoding_message_size(64 << 20)
}

#[derive(serde::Serialize)]
/// Latency percentiles of a set of calls.
pub struct Latency {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

pub fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    Latency {
        n: samples.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        mean_ms: samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64,
        max_ms: at(1.0),
    }
}

/// One FindSimilar call (k = 10, by id), timed.
pub async fn find_similar(c: &mut AsterismClient<Channel>, id: &str) -> Duration {
    let t = Instant::now();
    let answer = c
        .find_similar(pb::FindSimilarRequest {
            query: Some(Query::ObjectId(id.to_string())),
            k: 10,
            ..Default::default()
        })
        .await
        .expect("FindSimilar");
    assert!(!answer.into_inner().neighbours.is_empty());
    t.elapsed()
}
