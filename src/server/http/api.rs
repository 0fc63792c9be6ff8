//! The JSON API under `/api/v1/`: the CLI's questions over HTTP, each answer the CLI's
//! `--json` document for the same store (see `super::super::json`). Each handler checks
//! access as the matching RPC does, parses its query string, runs the engine call on the
//! blocking pool and answers JSON; errors are `ServerError`s, mapped once in `error.rs`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, metadata, openapi, Params, Shared, FILTER_PARAMS};
use crate::engine::{
    AnomalyQuery, Classification, EngineError, RecommendQuery, Recommendation, SimilarHit,
    SimilarQuery, Target,
};
use crate::model::Vote;
use crate::science::{taxonomy, Explanation};
use crate::server::convert;
use crate::server::{json, ServerError};

/// The number of neighbours, anomalies or recommendations when none is asked for (the CLI's).
pub(super) const DEFAULT_COUNT: usize = 10;

/// An answer serialised straight from its type, as the CLI's `--json` prints it (through a
/// `Value`, an `f32` would be widened to other digits).
type Answer<T = Value> = Result<Json<T>, ServerError>;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/objects/{id}", get(object))
        .route("/objects/{id}/lightcurve", get(lightcurve))
        .route("/objects/{id}/similar", get(similar))
        .route("/objects/{id}/classify", get(classify))
        .route("/objects/{id}/panel", get(panel))
        .route("/anomalies", get(anomalies))
        .route("/recommend", get(recommend))
        .route("/explain", get(explain))
        .route("/stats", get(stats))
        .route("/votes", post(vote))
        .route("/openapi.json", get(openapi_document))
        .fallback(unknown_path)
}

async fn unknown_path() -> ServerError {
    ServerError::NotFound("no such API path (see /api/v1/openapi.json)".into())
}

async fn openapi_document() -> Json<Value> {
    Json(openapi::document())
}

fn read_access(shared: &Shared, headers: &HeaderMap) -> Result<(), ServerError> {
    shared.access.check_read(&metadata(headers))
}

async fn object(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer {
    read_access(&shared, &headers)?;
    Params::parse(query.as_deref(), &[])?;
    let engine = shared.engine;
    blocking(move || Ok(Json(json::object(&engine.object(&id)?)))).await
}

async fn lightcurve(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer {
    read_access(&shared, &headers)?;
    Params::parse(query.as_deref(), &[])?;
    let engine = shared.engine;
    blocking(move || Ok(Json(json::lightcurve(&engine.object(&id)?)))).await
}

/// The similarity query of `similar` and `panel`: `k`, `as_of` and the filters.
fn similar_query(id: &str, params: &Params) -> Result<SimilarQuery, ServerError> {
    let mut query = SimilarQuery::new(
        Target::Object(id.to_string()),
        params.number("k")?.unwrap_or(DEFAULT_COUNT),
    );
    query.as_of = params.number("as_of")?;
    query.filters = params.filters()?;
    query.features = convert::features(params.get("features").unwrap_or(""))?;
    query.weights = convert::weights(params.get("weights").unwrap_or(""))?;
    query.at_age = params.number("at_age")?;
    Ok(query)
}

const SIMILAR_PARAMS: [&str; 10] = [
    "k",
    "as_of",
    "at_age",
    "features",
    "weights",
    "explain",
    "class",
    "min_detections",
    "since",
    "cone",
];

const PANEL_PARAMS: [&str; 9] = [
    "k",
    "as_of",
    "at_age",
    "features",
    "weights",
    "class",
    "min_detections",
    "since",
    "cone",
];

async fn similar(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer {
    read_access(&shared, &headers)?;
    let params = Params::parse(query.as_deref(), &SIMILAR_PARAMS)?;
    let mut q = similar_query(&id, &params)?;
    q.explain = params.flag("explain")?;
    let engine = shared.engine;
    blocking(move || {
        let hits = engine.find_similar(&q)?;
        Ok(Json(json::similar(&id, q.as_of, &hits, q.explain)))
    })
    .await
}

async fn classify(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer<Classification> {
    read_access(&shared, &headers)?;
    let params = Params::parse(query.as_deref(), &["features"])?;
    let features = convert::features(params.get("features").unwrap_or(""))?;
    let engine = shared.engine;
    blocking(move || Ok(Json(engine.classify_by(&id, features)?))).await
}

/// Everything the panel draws for one object, in one answer: its lightcurve, its neighbours
/// (the `similar` answer with explanations) with their lightcurves and labels, its
/// classification by their vote and its anomaly score (both null when it has no embedding).
async fn panel(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer {
    read_access(&shared, &headers)?;
    let params = Params::parse(query.as_deref(), &PANEL_PARAMS)?;
    let mut q = similar_query(&id, &params)?;
    q.explain = true;
    let engine = shared.engine;
    let object_url = shared.config.object_url.clone();
    blocking(move || {
        let record = engine.object(&id)?;
        let hits: Vec<SimilarHit> = engine.find_similar(&q)?;
        let neighbours = hits
            .iter()
            .map(|h| {
                let r = engine.object(&h.object_id)?;
                let labels = engine.labels_of_record(&r)?;
                let label = taxonomy::primary(&labels);
                Ok(json!({
                    "object_id": h.object_id,
                    "labelled_by": label.map(|l| l.source.clone()),
                    "label": label.map(|l| l.class.clone()),
                    "lightcurve": json::lightcurve(&r),
                }))
            })
            .collect::<Result<Vec<Value>, ServerError>>()?;
        let classification = match engine.classify_record(&record) {
            Ok(c) => json!(c),
            Err(EngineError::NoEmbedding { .. } | EngineError::SpecOutdated) => Value::Null,
            Err(e) => return Err(e.into()),
        };
        let anomaly = engine.anomaly_of_record(&record)?;
        Ok(Json(json!({
            "object_id": id,
            "lightcurve": json::lightcurve(&record),
            "similar": json::similar(&id, q.as_of, &hits, true),
            "neighbours": neighbours,
            "classification": classification,
            "anomaly": anomaly.as_ref().map(json::anomaly),
            "anomaly_source": "local outlier factor on the kNN graph + isolation forest on the embeddings",
            "object_url": object_url,
            "classes": taxonomy::CLASSES,
        })))
    })
    .await
}

async fn anomalies(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer {
    let params = Params::parse(query.as_deref(), &["top", "since", "user"])?;
    let user = params.get("user").map(str::to_string);
    match &user {
        Some(u) => shared.access.check_user(&metadata(&headers), u)?,
        None => read_access(&shared, &headers)?,
    }
    let q = AnomalyQuery {
        top: params.number("top")?.unwrap_or(DEFAULT_COUNT),
        since: params.number("since")?,
        user,
    };
    let engine = shared.engine;
    blocking(move || Ok(Json(json::anomalies(&engine.anomalies(&q)?)))).await
}

async fn recommend(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer<Vec<Recommendation>> {
    let accepted: Vec<&str> = ["like", "unlike", "user", "top", "features", "weights"]
        .into_iter()
        .chain(FILTER_PARAMS)
        .collect();
    let params = Params::parse(query.as_deref(), &accepted)?;
    let user = params.get("user").map(str::to_string);
    match &user {
        Some(u) => shared.access.check_user(&metadata(&headers), u)?,
        None => read_access(&shared, &headers)?,
    }
    let q = RecommendQuery {
        like: params.list("like"),
        unlike: params.list("unlike"),
        user,
        top: params.number("top")?.unwrap_or(DEFAULT_COUNT),
        filters: params.filters()?,
        features: convert::features(params.get("features").unwrap_or(""))?,
        weights: convert::weights(params.get("weights").unwrap_or(""))?,
    };
    let engine = shared.engine;
    blocking(move || Ok(Json(engine.recommend(&q)?))).await
}

async fn explain(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer<Explanation> {
    read_access(&shared, &headers)?;
    let params = Params::parse(query.as_deref(), &["a", "b"])?;
    let a = params
        .get("a")
        .ok_or_else(|| ServerError::invalid("a", "is empty"))?
        .to_string();
    let b = params
        .get("b")
        .ok_or_else(|| ServerError::invalid("b", "is empty"))?
        .to_string();
    let engine = shared.engine;
    blocking(move || Ok(Json(engine.explain(&a, &b)?))).await
}

async fn stats(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer {
    read_access(&shared, &headers)?;
    Params::parse(query.as_deref(), &[])?;
    let engine = shared.engine;
    blocking(move || {
        let partitions = engine.store().offsets().map_err(EngineError::from)?;
        Ok(Json(json::stats_with_partitions(
            &engine.stats()?,
            &partitions,
        )))
    })
    .await
}

/// The body of `POST /api/v1/votes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoteBody {
    user: String,
    object_id: String,
    /// `up` or `down`.
    vote: String,
}

/// Records a vote; needs the user's own token, as the `Vote` RPC.
async fn vote(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Answer {
    let body: VoteBody = serde_json::from_slice(&body).map_err(|e| {
        ServerError::invalid(
            "body",
            format!("expected {{\"user\", \"object_id\", \"vote\": \"up\"|\"down\"}}: {e}"),
        )
    })?;
    if body.user.trim().is_empty() {
        return Err(ServerError::invalid("user", "is empty"));
    }
    shared.access.check_user(&metadata(&headers), &body.user)?;
    if body.object_id.trim().is_empty() {
        return Err(ServerError::invalid("object_id", "is empty"));
    }
    let vote = match body.vote.as_str() {
        "up" => Vote::Up,
        "down" => Vote::Down,
        other => {
            return Err(ServerError::invalid(
                "vote",
                format!("`{other}` is not up or down"),
            ))
        }
    };
    let engine = shared.engine;
    blocking(move || {
        engine.vote(&body.user, &body.object_id, vote)?;
        Ok(Json(json!({
            "user": body.user, "object_id": body.object_id, "vote": body.vote,
        })))
    })
    .await
}
