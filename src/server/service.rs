//! The `Asterism` service: each RPC checks access, runs the engine call on the blocking pool
//! and converts the answer.

use std::sync::Arc;
use std::time::Duration;

use rayon::prelude::*;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::proto::{self as pb, asterism_server};
use super::{convert, watching, Access, ServerError};
use crate::alert::{self, DecodeOptions};
use crate::engine::{
    check_count, AnomalyQuery, ChangeEvent, Engine, EngineError, IngestTally, RecommendQuery,
    SimilarQuery, MAX_K,
};
use crate::model::{Alert, Vote};

/// Packets buffered before they are decoded and stored together.
const INGEST_BYTES: usize = 32 << 20;
/// A packet waits at most this long for others to share its write.
const INGEST_LINGER: Duration = Duration::from_millis(200);
/// Objects one watch may follow.
pub const MAX_WATCHED: usize = 1000;

pub(super) struct Service {
    pub engine: Arc<Engine>,
    pub access: Access,
    pub decode: DecodeOptions,
    pub events: broadcast::Sender<Arc<ChangeEvent>>,
    pub closing: watch::Receiver<bool>,
}

/// [`super::run_blocking`], answering a gRPC `Status`.
async fn blocking<T, F>(f: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ServerError> + Send + 'static,
{
    super::run_blocking(f).await.map_err(Status::from)
}

fn bounded(field: &'static str, n: u32) -> Result<usize, ServerError> {
    Ok(check_count(field, n as usize)?)
}

/// Longest object id, user name or class name a request may carry (real ids are < 30 bytes);
/// a longer one is refused without being echoed back.
pub const MAX_TEXT_BYTES: usize = 256;

fn required(field: &'static str, value: &str) -> Result<(), ServerError> {
    if value.trim().is_empty() {
        return Err(ServerError::invalid(field, "is empty"));
    }
    short(field, value)
}

fn short(field: &'static str, value: &str) -> Result<(), ServerError> {
    if value.len() > MAX_TEXT_BYTES {
        return Err(ServerError::invalid(
            field,
            format!("is {} bytes long; at most {MAX_TEXT_BYTES}", value.len()),
        ));
    }
    Ok(())
}

/// Each of `values` (ids, an optional user) within [`MAX_TEXT_BYTES`].
fn all_short<'a>(
    field: &'static str,
    values: impl IntoIterator<Item = &'a String>,
) -> Result<(), ServerError> {
    values.into_iter().try_for_each(|v| short(field, v))
}

/// One packet of an ingest stream.
struct Packet {
    name: String,
    bytes: Vec<u8>,
    strict: bool,
}

/// Decodes `packets` in parallel and stores their alerts in batches of the engine's size,
/// counted into `tally`. Returns the error that stopped it: a strict packet that did not
/// decode (after the packets before it were stored), or a failed write.
fn store_packets(
    engine: &Engine,
    opts: &DecodeOptions,
    packets: Vec<Packet>,
    tally: &mut IngestTally,
) -> Option<ServerError> {
    let decoded: Vec<alert::Decoded> = packets
        .par_iter()
        .map(|p| alert::decode(&p.name, &p.bytes, opts))
        .collect();
    let mut failed = None;
    let mut alerts: Vec<Alert> = Vec::new();
    for (p, d) in packets.iter().zip(decoded) {
        if p.strict && !d.rejects.is_empty() {
            let reason = d
                .rejects
                .iter()
                .map(|r| format!("{}: {}", r.source, r.error))
                .collect::<Vec<_>>()
                .join("; ");
            failed = Some(ServerError::invalid("packet", reason));
            break;
        }
        tally.add_rejects(d.rejects);
        alerts.extend(d.alerts);
    }
    // An ingest call returns with every list written, a deferred relink's too.
    match engine
        .apply_all(&alerts, tally)
        .and_then(|()| engine.relink_unlinked().map(drop))
    {
        Ok(()) => failed,
        Err(e) => Some(e.into()),
    }
}

fn ingest_response(received: u64, tally: IngestTally) -> pb::IngestResponse {
    let r = tally.finish();
    pb::IngestResponse {
        packets_received: received,
        alerts_read: r.alerts_read,
        alerts_rejected: r.alerts_rejected,
        alerts_duplicate: r.alerts_duplicate,
        objects_new: r.objects_new,
        objects_updated: r.objects_updated,
        detections_added: r.detections_added,
        rejects: r
            .rejects
            .into_iter()
            .map(|r| pb::Reject {
                source: r.source,
                reason: r.reason,
            })
            .collect(),
    }
}

impl Service {
    /// Stores the buffered packets; an error names how much of the stream is stored.
    async fn flush(
        &self,
        pending: &mut Vec<Packet>,
        tally: &mut IngestTally,
        received: u64,
    ) -> Result<(), Status> {
        if pending.is_empty() {
            return Ok(());
        }
        let packets = std::mem::take(pending);
        let engine = Arc::clone(&self.engine);
        let opts = self.decode.clone();
        let mut counted = std::mem::take(tally);
        let (counted, failed) = tokio::task::spawn_blocking(move || {
            let failed = store_packets(&engine, &opts, packets, &mut counted);
            (counted, failed)
        })
        .await
        .map_err(ServerError::from)?;
        *tally = counted;
        match failed {
            None => Ok(()),
            Some(e) => {
                let mut status = Status::from(e);
                let stored = tally.report().alerts_read;
                let message = format!(
                    "{} (packets received: {received}; alerts stored before it: {stored})",
                    status.message()
                );
                let metadata = std::mem::take(status.metadata_mut());
                Err(Status::with_metadata(status.code(), message, metadata))
            }
        }
    }
}

#[tonic::async_trait]
impl asterism_server::Asterism for Service {
    async fn ingest(
        &self,
        request: Request<Streaming<pb::IngestRequest>>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        self.access.check_write(request.metadata())?;
        let mut stream = request.into_inner();
        let mut closing = self.closing.clone();
        let mut tally = IngestTally::default();
        let mut pending: Vec<Packet> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut received = 0u64;
        let mut linger_until: Option<Instant> = None;
        loop {
            if *closing.borrow() {
                self.flush(&mut pending, &mut tally, received).await?;
                return Err(Status::unavailable(format!(
                    "the server is shutting down: {received} packets received, {} alerts \
                     stored; send the rest again (re-sent packets are recognised)",
                    tally.report().alerts_read
                )));
            }
            let wake = linger_until.unwrap_or_else(Instant::now);
            let message = tokio::select! {
                m = stream.message() => m?,
                _ = tokio::time::sleep_until(wake), if linger_until.is_some() => {
                    self.flush(&mut pending, &mut tally, received).await?;
                    (pending_bytes, linger_until) = (0, None);
                    continue;
                }
                _ = closing.changed() => continue,
            };
            let Some(m) = message else { break };
            received += 1;
            let name = if m.name.is_empty() {
                format!("packet {received}")
            } else {
                m.name
            };
            pending_bytes += m.packet.len();
            pending.push(Packet {
                name,
                bytes: m.packet,
                strict: m.strict,
            });
            if pending.len() >= self.engine.batch_size() || pending_bytes >= INGEST_BYTES {
                self.flush(&mut pending, &mut tally, received).await?;
                (pending_bytes, linger_until) = (0, None);
            } else if linger_until.is_none() {
                linger_until = Some(Instant::now() + INGEST_LINGER);
            }
        }
        self.flush(&mut pending, &mut tally, received).await?;
        Ok(Response::new(ingest_response(received, tally)))
    }

    async fn get_object(
        &self,
        request: Request<pb::GetObjectRequest>,
    ) -> Result<Response<pb::GetObjectResponse>, Status> {
        self.access.check_read(request.metadata())?;
        let req = request.into_inner();
        required("object_id", &req.object_id)?;
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            // The record is read once, for every part of the answer.
            let record = engine.object(&req.object_id)?;
            let labels = engine.labels_of_record(&record)?;
            let mut out = convert::object(&record, &labels, !req.without_lightcurve);
            out.classification = match engine.classify_record(&record) {
                Ok(c) => Some(convert::classification(&c)),
                Err(EngineError::NoEmbedding { .. } | EngineError::SpecOutdated) => None,
                Err(e) => return Err(e.into()),
            };
            out.anomaly = engine
                .anomaly_of_record(&record)?
                .as_ref()
                .map(convert::anomaly);
            Ok(Response::new(out))
        })
        .await
    }

    async fn find_similar(
        &self,
        request: Request<pb::FindSimilarRequest>,
    ) -> Result<Response<pb::FindSimilarResponse>, Status> {
        self.access.check_read(request.metadata())?;
        let req = request.into_inner();
        let k = bounded("k", req.k)?;
        let mut query = SimilarQuery::new(convert::target(req.query)?, k);
        query.filters = convert::filters(req.filters);
        query.as_of = req.as_of;
        query.explain = req.explain;
        query.features = convert::features(&req.features)?;
        query.weights = convert::weights(&req.weights)?;
        query.at_age = req.at_age;
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            let hits = engine.find_similar(&query)?;
            Ok(Response::new(pb::FindSimilarResponse {
                neighbours: hits.iter().map(convert::hit).collect(),
            }))
        })
        .await
    }

    async fn classify(
        &self,
        request: Request<pb::ClassifyRequest>,
    ) -> Result<Response<pb::ClassifyResponse>, Status> {
        self.access.check_read(request.metadata())?;
        let req = request.into_inner();
        required("object_id", &req.object_id)?;
        let features = convert::features(&req.features)?;
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            let c = engine.classify_by(&req.object_id, features)?;
            Ok(Response::new(convert::classification(&c)))
        })
        .await
    }

    async fn top_anomalies(
        &self,
        request: Request<pb::TopAnomaliesRequest>,
    ) -> Result<Response<pb::TopAnomaliesResponse>, Status> {
        all_short("user", &request.get_ref().user)?;
        match request.get_ref().user.as_deref() {
            Some(user) => self.access.check_user(request.metadata(), user)?,
            None => self.access.check_read(request.metadata())?,
        }
        let req = request.into_inner();
        let query = AnomalyQuery {
            top: bounded("top", req.top)?,
            since: req.since,
            user: req.user,
        };
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            let list = engine.anomalies(&query)?;
            Ok(Response::new(pb::TopAnomaliesResponse {
                anomalies: list.iter().map(convert::anomaly).collect(),
            }))
        })
        .await
    }

    async fn recommend(
        &self,
        request: Request<pb::RecommendRequest>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        let req = request.get_ref();
        all_short("user", &req.user)?;
        all_short("positive", &req.positive)?;
        all_short("negative", &req.negative)?;
        match request.get_ref().user.as_deref() {
            Some(user) => self.access.check_user(request.metadata(), user)?,
            None => self.access.check_read(request.metadata())?,
        }
        let req = request.into_inner();
        let query = RecommendQuery {
            like: req.positive,
            unlike: req.negative,
            user: req.user,
            top: bounded("top", req.top)?,
            filters: convert::filters(req.filters),
            features: convert::features(&req.features)?,
            weights: convert::weights(&req.weights)?,
        };
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            let recs = engine.recommend(&query)?;
            Ok(Response::new(pb::RecommendResponse {
                recommendations: recs.iter().map(convert::recommendation).collect(),
            }))
        })
        .await
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        required("user", &request.get_ref().user)?;
        self.access
            .check_user(request.metadata(), &request.get_ref().user)?;
        let req = request.into_inner();
        required("object_id", &req.object_id)?;
        let vote = if req.up { Vote::Up } else { Vote::Down };
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            engine.vote(&req.user, &req.object_id, vote)?;
            Ok(Response::new(pb::VoteResponse {}))
        })
        .await
    }

    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        self.access.check_read(request.metadata())?;
        let req = request.into_inner();
        required("object_id", &req.object_id)?;
        required("other_id", &req.other_id)?;
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            let e = engine.explain(&req.object_id, &req.other_id)?;
            Ok(Response::new(pb::ExplainResponse {
                explanation: Some(convert::explanation(&e)),
            }))
        })
        .await
    }

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        self.access.check_write(request.metadata())?;
        let req = request.into_inner();
        required("out_dir", &req.out_dir)?;
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            let out = std::path::PathBuf::from(&req.out_dir);
            if out.exists() {
                return Err(ServerError::invalid("out_dir", "already exists"));
            }
            let r = engine.backup(&out)?;
            Ok(Response::new(pb::BackupResponse {
                out_dir: r.out_dir,
                objects: r.objects,
                bytes: r.bytes,
                index_dump: r.index_dump,
            }))
        })
        .await
    }

    async fn stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        self.access.check_read(request.metadata())?;
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            let counts = engine.stats()?;
            let partitions = engine.store().offsets().map_err(EngineError::from)?;
            let spec = engine.spec();
            Ok(Response::new(pb::StatsResponse {
                surveys: counts
                    .iter()
                    .map(|(s, c)| pb::SurveyCounts {
                        survey: convert::survey(*s) as i32,
                        objects: c.objects,
                        alerts: c.alerts,
                        detections: c.detections,
                    })
                    .collect(),
                indexed_objects: engine.indexed() as u64,
                dimension: engine.embedder().dim() as u32,
                spec_version: spec.version,
                max_k: MAX_K as u32,
                partitions: partitions
                    .iter()
                    .map(|p| pb::PartitionLag {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        next_offset: p.next,
                        high_watermark: p.high_watermark,
                        lag: p.lag(),
                        watermark_at: p.watermark_at.unwrap_or(0),
                    })
                    .collect(),
            }))
        })
        .await
    }

    type WatchNeighboursStream = ReceiverStream<Result<pb::NeighbourEvent, Status>>;

    async fn watch_neighbours(
        &self,
        request: Request<pb::WatchNeighboursRequest>,
    ) -> Result<Response<Self::WatchNeighboursStream>, Status> {
        self.access.check_read(request.metadata())?;
        let mut ids = request.into_inner().object_ids;
        all_short("object_ids", &ids)?;
        ids.sort();
        ids.dedup();
        if ids.is_empty() || ids.len() > MAX_WATCHED {
            return Err(ServerError::invalid(
                "object_ids",
                format!("watch 1..={MAX_WATCHED} objects, not {}", ids.len()),
            )
            .into());
        }
        let engine = Arc::clone(&self.engine);
        let check = ids.clone();
        blocking(move || {
            for id in &check {
                engine.object(id)?;
            }
            Ok(())
        })
        .await?;
        let stream = watching::start(
            Arc::clone(&self.engine),
            &self.events,
            self.closing.clone(),
            ids,
        );
        Ok(Response::new(stream))
    }
}
