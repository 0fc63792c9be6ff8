//! The server's error type and its one mapping to gRPC `Status`.
//!
//! A client's mistake is never `INTERNAL`: unknown objects and users are `NOT_FOUND`, bad
//! arguments `INVALID_ARGUMENT` (the message starts with the field, which is also sent in
//! the `asterism-field` metadata), oversized messages `RESOURCE_EXHAUSTED`. A store whose
//! values do not decode is `DATA_LOSS`.

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
    #[error("the server is shutting down")]
    ShuttingDown,
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

fn with_field(code: Code, field: &str, message: String) -> Status {
    let mut status = Status::new(code, bounded(message));
    if let Ok(v) = MetadataValue::try_from(field) {
        status.metadata_mut().insert("asterism-field", v);
    }
    status
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        let message = bounded(e.to_string());
        match e {
            ServerError::Engine(e) => match e {
                EngineError::UnknownObject { .. } | EngineError::UnknownUser { .. } => {
                    Status::not_found(message)
                }
                EngineError::InvalidArgument { field, reason } => {
                    with_field(Code::InvalidArgument, field, format!("{field}: {reason}"))
                }
                EngineError::WrongDimension { expected, got } => with_field(
                    Code::InvalidArgument,
                    "vector",
                    format!("vector: has {got} values, the embedding has {expected}"),
                ),
                EngineError::NoPositiveExamples => with_field(
                    Code::InvalidArgument,
                    "positive",
                    format!("positive: {message}"),
                ),
                EngineError::NoEmbedding { .. } | EngineError::SpecOutdated => {
                    Status::failed_precondition(message)
                }
                // A stored value that does not decode, or a store of another format: the
                // data is damaged or unreadable by this build, not a passing fault.
                EngineError::Store(
                    StoreError::Corrupt { .. } | StoreError::FormatVersion { .. },
                )
                | EngineError::Graph(GraphError::Store(
                    StoreError::Corrupt { .. } | StoreError::FormatVersion { .. },
                )) => Status::data_loss(message),
                EngineError::Store(_)
                | EngineError::Index(_)
                | EngineError::Graph(_)
                | EngineError::InvalidConfig { .. } => Status::internal(message),
            },
            ServerError::InvalidArgument { field, .. } => {
                with_field(Code::InvalidArgument, &field, message)
            }
            ServerError::Unauthenticated => Status::unauthenticated(message),
            ServerError::PermissionDenied(_) => Status::permission_denied(message),
            ServerError::ShuttingDown => Status::unavailable(message),
            ServerError::Worker(_) | ServerError::Transport(_) | ServerError::Io(_) => {
                Status::internal(message)
            }
        }
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
