//! The HTTP side of the server (axum, on the runtime and over the `Arc<Engine>` that gRPC
//! uses): the JSON API under `/api/v1/` ([`api`]), its OpenAPI document ([`openapi`]) and the
//! "objects like this one" panel pages with their assets built into the binary ([`panel`]).
//! Tokens are the gRPC ones ([`Access`], `Authorization: Bearer T`), and errors go through the
//! one mapping of `super::error`, so both transports answer a request alike. This file holds
//! what the three share: the configuration, the router, the query-string parser and the CORS
//! layer. Imports `engine`, `model` and the server's `auth`, `error` and `json`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::metadata::MetadataMap;

use super::{Access, ServerError};
use crate::engine::{Cone, Engine, Filters};

mod api;
pub mod openapi;
mod panel;
mod tls;

pub use tls::HANDSHAKE_TIMEOUT;

/// How the HTTP side runs.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Origins whose pages may call the API from a browser (CORS); `*` admits every origin.
    /// Empty: no cross-origin calls (same-origin pages, such as the panel, need none).
    pub cors_origins: Vec<String>,
    /// Origins that may show `/embed/{id}` in an `<iframe>` (CSP `frame-ancestors`), besides
    /// the server's own; `*` admits every origin.
    pub frame_ancestors: Vec<String>,
    /// The host portal's page of an object, `{id}` standing for the object id, linked from
    /// each neighbour (default: this server's own panel of the neighbour).
    pub object_url: Option<String>,
}

/// What every handler shares.
#[derive(Clone)]
struct Shared {
    engine: Arc<Engine>,
    access: Arc<Access>,
    config: Arc<HttpConfig>,
}

/// The HTTP application: API, OpenAPI document, panel pages and assets.
pub fn router(engine: Arc<Engine>, access: Access, config: HttpConfig) -> Router {
    let shared = Shared {
        engine,
        access: Arc::new(access),
        config: Arc::new(config),
    };
    Router::new()
        .nest("/api/v1", api::routes())
        .merge(panel::routes())
        .layer(axum::middleware::from_fn_with_state(shared.clone(), cors))
        .with_state(shared)
}

/// Serves `app` on `listener` (over TLS with `tls`) until `closing` turns true, then lets
/// requests in flight finish.
pub(super) async fn run(
    listener: TcpListener,
    tls: Option<super::TlsIdentity>,
    app: Router,
    closing: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    use axum::serve::ListenerExt as _;
    match tls {
        Some(identity) => serve_on(tls::TlsListener::new(listener, &identity)?, app, closing).await,
        None => {
            // As on the gRPC side: small answers must not wait for Nagle's algorithm.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY not set on a connection: {e}");
                }
            });
            serve_on(listener, app, closing).await
        }
    }
}

async fn serve_on<L>(
    listener: L,
    app: Router,
    mut closing: watch::Receiver<bool>,
) -> Result<(), ServerError>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            // A dropped sender also ends the wait: the gRPC side is gone.
            let _ = closing.wait_for(|c| *c).await;
        })
        .await?;
    Ok(())
}

/// The request's headers as the gRPC access checks read them (`authorization: Bearer T`).
fn metadata(headers: &HeaderMap) -> MetadataMap {
    MetadataMap::from_headers(headers.clone())
}

use super::run_blocking as blocking;

/// A query string's parameters, decoded, in order. Names not listed as accepted are refused,
/// so a misspelt filter is a 400, not a silently wider answer.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>, accepted: &[&str]) -> Result<Params, ServerError> {
        let decode = |s: &str| -> Result<String, ServerError> {
            let s = s.replace('+', " ");
            percent_encoding::percent_decode_str(&s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| ServerError::invalid("query", "is not UTF-8"))
        };
        let mut pairs = Vec::new();
        for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let (k, v) = (decode(k)?, decode(v)?);
            if !accepted.contains(&k.as_str()) {
                return Err(ServerError::invalid(
                    k,
                    format!("unknown parameter (accepted: {})", accepted.join(", ")),
                ));
            }
            pairs.push((k, v));
        }
        Ok(Params(pairs))
    }

    /// The last value given for `name`, if any and not empty.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ServerError> {
        self.get(name)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| ServerError::invalid(name, format!("`{v}` is not a number")))
            })
            .transpose()
    }

    fn flag(&self, name: &str) -> Result<bool, ServerError> {
        match self.get(name) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(v) => Err(ServerError::invalid(
                name,
                format!("`{v}` is not true or false"),
            )),
        }
    }

    /// Every value of a repeated or comma-separated parameter.
    fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The filters of `similar` and `recommend`: `class`, `min_detections`, `since` (MJD of the
    /// last detection, at or after) and `cone` (`RA,DEC,RADIUS` in degrees), as the CLI's flags.
    fn filters(&self) -> Result<Filters, ServerError> {
        let cone = match self.get("cone") {
            None => None,
            Some(text) => {
                let parts: Vec<f64> = text
                    .split(',')
                    .map(|p| p.trim().parse::<f64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| ServerError::invalid("cone", "expected RA,DEC,RADIUS"))?;
                match parts[..] {
                    [ra, dec, radius] => Some(Cone { ra, dec, radius }),
                    _ => return Err(ServerError::invalid("cone", "expected RA,DEC,RADIUS")),
                }
            }
        };
        Ok(Filters {
            class: self.get("class").map(str::to_string),
            min_detections: self.number("min_detections")?,
            last_after: self.number("since")?,
            last_before: None,
            cone,
        })
    }
}

/// The filter parameters, for the handlers' lists of accepted names.
const FILTER_PARAMS: [&str; 4] = ["class", "min_detections", "since", "cone"];

/// Answers CORS preflights and marks answers to the configured origins as readable by them.
async fn cors(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    let allowed = origin.as_deref().and_then(|o| {
        let origins = &shared.config.cors_origins;
        if origins.iter().any(|a| a == "*") {
            Some("*".to_string())
        } else if origins.iter().any(|a| a == o) {
            Some(o.to_string())
        } else {
            None
        }
    });
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        match allowed {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => ServerError::PermissionDenied(format!(
                "origin {} may not call this API (see --http-cors-origin)",
                origin.as_deref().unwrap_or("(none)")
            ))
            .into_response(),
        }
    } else {
        next.run(request).await
    };
    if let Some(value) = allowed.and_then(|a| HeaderValue::from_str(&a).ok()) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        if preflight {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
    }
    response
}
