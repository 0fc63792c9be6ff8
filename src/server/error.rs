//! The server's error type and its one mapping, to gRPC `Status` and to the HTTP API's
//! status and JSON body (the HTTP status follows from the gRPC code, so both transports
//! answer a request the same way).
//!
//! A client's mistake is never `INTERNAL`: unknown objects and users are `NOT_FOUND`, bad
//! arguments `INVALID_ARGUMENT` (the message starts with the field, which is also sent in
//! the `asterism-field` metadata), oversized messages `RESOURCE_EXHAUSTED`. A store whose
//! values do not decode is `DATA_LOSS`.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::engine::EngineError;
use crate::graph::GraphError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("missing or wrong bearer token (metadata `authorization: Bearer <token>`)")]
    Unauthenticated,
    #[error("{0}")]
    PermissionDenied(String),
    /// A path the HTTP API does not have.
    #[error("{0}")]
    NotFound(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The caller went away (cancelled, or past its deadline) before its work started.
    #[error("the request was cancelled before its work started")]
    Cancelled,
    #[error("a worker task failed: {0}")]
    Worker(String),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ServerError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ServerError {
        ServerError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<tokio::task::JoinError> for ServerError {
    fn from(e: tokio::task::JoinError) -> Self {
        ServerError::Worker(e.to_string())
    }
}

/// Longest error message sent: the message travels in a header, and an echo of a caller's
/// oversized input must not push it past the client's header limit.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `message` cut to [`MAX_MESSAGE_BYTES`] at a character boundary, saying so.
fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let total = message.len();
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(&format!("... ({total} bytes, cut)"));
    }
    message
}

/// What a client is told of an error, whichever the transport: its gRPC code, the request
/// field at fault and the message. The one place errors are classified.
struct Mapped {
    code: Code,
    field: Option<String>,
    message: String,
}

fn mapped(e: ServerError) -> Mapped {
    let message = e.to_string();
    let (code, field, message) = match e {
        ServerError::Engine(e) => match e {
            EngineError::UnknownObject { .. } | EngineError::UnknownUser { .. } => {
                (Code::NotFound, None, message)
            }
            EngineError::InvalidArgument { field, reason } => (
                Code::InvalidArgument,
                Some(field.to_string()),
                format!("{field}: {reason}"),
            ),
            EngineError::WrongDimension { expected, got } => (
                Code::InvalidArgument,
                Some("vector".to_string()),
                format!("vector: has {got} values, the embedding has {expected}"),
            ),
            EngineError::NoPositiveExamples => (
                Code::InvalidArgument,
                Some("positive".to_string()),
                format!("positive: {message}"),
            ),
            EngineError::NoEmbedding { .. }
            | EngineError::SpecOutdated
            | EngineError::SeedUnfinished
            | EngineError::NotEmpty { .. } => (Code::FailedPrecondition, None, message),
            // A stored value that does not decode, or a store of another format: the
            // data is damaged or unreadable by this build, not a passing fault.
            EngineError::Store(StoreError::Corrupt { .. } | StoreError::FormatVersion { .. })
            | EngineError::Graph(GraphError::Store(
                StoreError::Corrupt { .. } | StoreError::FormatVersion { .. },
            )) => (Code::DataLoss, None, message),
            // Disk full, a size limit, a read-only file system: RESOURCE_EXHAUSTED, as gRPC
            // names "the entire file system is out of space".
            EngineError::Store(StoreError::WriteFailed { .. }) => {
                (Code::ResourceExhausted, None, message)
            }
            EngineError::Store(_)
            | EngineError::Index(_)
            | EngineError::Graph(_)
            | EngineError::InvalidConfig { .. } => (Code::Internal, None, message),
        },
        ServerError::InvalidArgument { field, .. } => (Code::InvalidArgument, Some(field), message),
        ServerError::Unauthenticated => (Code::Unauthenticated, None, message),
        ServerError::PermissionDenied(_) => (Code::PermissionDenied, None, message),
        ServerError::NotFound(_) => (Code::NotFound, None, message),
        ServerError::ShuttingDown => (Code::Unavailable, None, message),
        ServerError::Cancelled => (Code::Cancelled, None, message),
        ServerError::Worker(_) | ServerError::Transport(_) | ServerError::Io(_) => {
            (Code::Internal, None, message)
        }
    };
    Mapped {
        code,
        field,
        message: bounded(message),
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        let m = mapped(e);
        let mut status = Status::new(m.code, m.message);
        if let Some(v) = m.field.and_then(|f| MetadataValue::try_from(f).ok()) {
            status.metadata_mut().insert("asterism-field", v);
        }
        status
    }
}

/// The HTTP status of a gRPC code, as the gRPC-HTTP mapping of google.rpc.Code gives it
/// (`FAILED_PRECONDITION`, a store or object not ready for the question, is 409 Conflict).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The HTTP API's error answer: the status from [`http_status`] of the same code gRPC sends,
/// and a JSON body `{"error": message, "code": "NOT_FOUND", "field": field or null}`.
impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let m = mapped(self);
        let mut response = (
            http_status(m.code),
            Json(json!({
                "error": m.message,
                "code": code_name(m.code),
                "field": m.field,
            })),
        )
            .into_response();
        if m.code == Code::Unauthenticated {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The name of a gRPC code as google.rpc.Code spells it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// tonic rejects a message above the size limit with `OUT_OF_RANGE` before any handler runs;
/// this turns that answer into `RESOURCE_EXHAUSTED`, the code gRPC documents for it.
pub fn oversized_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    let too_large = headers.get("grpc-message").is_some_and(|v| {
        let m = String::from_utf8_lossy(v.as_bytes());
        m.contains("message%20length%20too%20large") || m.contains("message length too large")
    });
    if out_of_range && too_large {
        response.headers_mut().insert(
            "grpc-status",
            http::HeaderValue::from_static("8"), // RESOURCE_EXHAUSTED
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = format!("unknown object `{}`", "é".repeat(2000));
        let status = Status::from(ServerError::Engine(EngineError::UnknownObject {
            object_id: "é".repeat(2000),
        }));
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().len() < MAX_MESSAGE_BYTES + 40);
        assert!(status
            .message()
            .ends_with(&format!("({} bytes, cut)", long.len())));
        let short = Status::from(ServerError::Engine(EngineError::UnknownObject {
            object_id: "ZTF18abxhyqv".into(),
        }));
        assert_eq!(short.message(), "unknown object `ZTF18abxhyqv`");
    }
}
