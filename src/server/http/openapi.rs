//! The OpenAPI 3.1 document of the HTTP API, served at `/api/v1/openapi.json`. Written by
//! hand with `serde_json` (no code generation): paths, parameters, the security scheme and the
//! error body. A test checks that every path it lists answers.

use serde_json::{json, Value};

fn query(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false,
           "schema": {"type": kind}, "description": description})
}

fn path_id() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"},
           "description": "object id (ZTF objectId, LSST diaObjectId, or a table's id)"})
}

fn filters() -> Vec<Value> {
    vec![
        query(
            "class",
            "string",
            "only objects of this coarse class (label, else predicted)",
        ),
        query(
            "min_detections",
            "integer",
            "only objects with this many detections",
        ),
        query(
            "since",
            "number",
            "only objects detected at or after this MJD",
        ),
        query(
            "cone",
            "string",
            "only objects within RA,DEC,RADIUS (degrees)",
        ),
    ]
}

fn get(summary: &str, parameters: Vec<Value>, secured: bool) -> Value {
    let mut op = json!({
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "200": {"description": "the answer, as the CLI's --json prints it",
                    "content": {"application/json": {"schema": {}}}},
            "default": {"$ref": "#/components/responses/Error"},
        },
    });
    if secured {
        op["security"] = json!([{"bearer": []}]);
    }
    json!({"get": op})
}

/// The document.
pub fn document() -> Value {
    let k = query(
        "k",
        "integer",
        "number of neighbours (1..=1000, default 10)",
    );
    let as_of = query(
        "as_of",
        "number",
        "search the embeddings objects had at this MJD",
    );
    let features = query(
        "features",
        "string",
        "which features make objects alike: lightcurve, context, flux (survey-blind, exact), curves (the flux scan's nearest ranked by how well their lightcurves fit) or all (default)",
    );
    let at_age = query(
        "at_age",
        "number",
        "compare every object as it was this many days after its first detection",
    );
    let weights = query(
        "weights",
        "string",
        "the query's own group weights, lightcurve=W,context=W,flux=W",
    );
    let top = query("top", "integer", "how many (1..=1000, default 10)");
    let user = query(
        "user",
        "string",
        "rank for this user (needs the user's token)",
    );
    let similar_params: Vec<Value> = [
        path_id(),
        k.clone(),
        as_of.clone(),
        at_age.clone(),
        features.clone(),
        weights.clone(),
    ]
    .into_iter()
    .chain([query("explain", "boolean", "explain each distance")])
    .chain(filters())
    .collect();
    let panel_params: Vec<Value> = [
        path_id(),
        k,
        as_of,
        at_age,
        features.clone(),
        weights.clone(),
    ]
    .into_iter()
    .chain(filters())
    .collect();
    let recommend_params: Vec<Value> = [
        query(
            "like",
            "string",
            "positive examples (repeated or comma-separated)",
        ),
        query(
            "unlike",
            "string",
            "negative examples (repeated or comma-separated)",
        ),
        user.clone(),
        top.clone(),
        features.clone(),
        weights,
    ]
    .into_iter()
    .chain(filters())
    .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Asterism HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Objects like this one: the similarity graph of an alert stream. \
                Every answer equals the CLI's --json output for the same store; errors are \
                {\"error\", \"code\", \"field\"} with the HTTP status of the gRPC code.",
        },
        "servers": [{"url": "/api/v1"}],
        "paths": {
            "/objects/{id}": get("an object's metadata, lightcurve, limits and annotations (`asterism object --json`)", vec![path_id()], false),
            "/objects/{id}/lightcurve": get("the lightcurve per band and unit: mjd, value, error, is_limit", vec![path_id()], false),
            "/objects/{id}/similar": get("the nearest objects (`asterism similar --json`)", similar_params, false),
            "/objects/{id}/classify": get("class probabilities from the neighbours' labels (`asterism classify --json`)", vec![path_id(), features.clone()], false),
            "/objects/{id}/panel": get("what the panel draws: lightcurve, neighbours with lightcurves and explanations, vote, anomaly score", panel_params, false),
            "/anomalies": get("the most anomalous objects (`asterism anomalies --json`)", vec![top.clone(), query("since", "number", "only objects detected at or after this MJD"), user.clone()], true),
            "/recommend": get("objects like the examples or a user's up-votes (`asterism recommend --json`)", recommend_params, true),
            "/explain": get("which features make two objects close or apart (`asterism explain A B --json`)", vec![
                json!({"name": "a", "in": "query", "required": true, "schema": {"type": "string"}}),
                json!({"name": "b", "in": "query", "required": true, "schema": {"type": "string"}}),
            ], false),
            "/stats": get("objects, alerts and detections per survey (`asterism stats --json`)", vec![], false),
            "/votes": {"post": {
                "summary": "record a user's vote on an object (needs the user's token)",
                "security": [{"bearer": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["user", "object_id", "vote"],
                    "properties": {
                        "user": {"type": "string"},
                        "object_id": {"type": "string"},
                        "vote": {"type": "string", "enum": ["up", "down"]},
                    },
                }}}},
                "responses": {
                    "200": {"description": "the vote recorded"},
                    "default": {"$ref": "#/components/responses/Error"},
                },
            }},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {
                "description": "400 bad argument, 401 no or unknown token, 403 wrong token, \
                    404 unknown object or user, 409 no embedding yet, 500 store fault",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {
                        "error": {"type": "string"},
                        "code": {"type": "string", "description": "the gRPC code's name"},
                        "field": {"type": ["string", "null"]},
                    },
                }}},
            }},
        },
    })
}
