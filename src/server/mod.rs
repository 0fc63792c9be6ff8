//! The server: gRPC (tonic) for every engine operation, streaming ingest, neighbour watches,
//! gRPC health and reflection; and beside it, on the same runtime and engine, the HTTP/JSON
//! API and the panel pages (axum, [`http`]). The only module that uses tonic, prost and axum;
//! it imports `engine`, `alert` and `model`, and nothing below imports it. [`json`] holds the
//! JSON documents the HTTP API and the CLI's `--json` share.
//!
//! Engine calls run on tokio's blocking pool (and rayon inside the engine), so a slow request
//! never stalls the executor that answers the others. Errors reach clients through the one
//! mapping in [`error`].

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tonic::transport::server::TcpIncoming;

use crate::alert::DecodeOptions;
use crate::engine::Engine;

mod auth;
pub(crate) mod convert;
mod error;
pub mod http;
pub mod json;
mod service;
mod watch_neighbours;

pub use auth::Access;
pub use error::{http_status, ServerError};
pub use http::HttpConfig;
pub use service::MAX_WATCHED;

/// The generated messages, client and server of `proto/asterism/v1/asterism.proto`.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("asterism.v1");

    /// The encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("asterism_descriptor");
}

use watch_neighbours as watching;

/// Runs `f` on the blocking pool (engine calls are CPU-bound and must not hold the executor),
/// unless the caller is gone by the time a thread takes it: a request cancelled by its client,
/// or dropped by tonic past its `grpc-timeout` deadline, while it waits for a thread never
/// starts its work, so a burst of abandoned calls does not keep the pool busy after them. Work
/// already started runs to its end (every read is bounded: O(k log n)).
pub(crate) async fn run_blocking<T, F>(f: F) -> Result<T, ServerError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ServerError> + Send + 'static,
{
    /// Clears the flag when the caller's future is dropped (or completes).
    struct Wanted(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Wanted {
        fn drop(&mut self) {
            self.0.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let wanted = Wanted(Arc::new(std::sync::atomic::AtomicBool::new(true)));
    let flag = Arc::clone(&wanted.0);
    let answer = tokio::task::spawn_blocking(move || {
        if !flag.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ServerError::Cancelled);
        }
        f()
    })
    .await?;
    drop(wanted);
    answer
}

/// Largest message accepted or sent, by default.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub access: Access,
    /// Larger messages are refused with `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// Decoding options for ingested packets (the writer schema of Confluent-framed datums).
    pub decode: DecodeOptions,
    /// With a certificate and its key, gRPC (and HTTP, when served) is served over TLS only.
    pub tls: Option<TlsIdentity>,
}

/// The server's certificate chain and private key, PEM-encoded.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            access: Access::default(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            decode: DecodeOptions::default(),
            tls: None,
        }
    }
}

/// Serves `engine` over gRPC on `listener` until `shutdown` completes; see [`serve_with_http`].
pub async fn serve(
    engine: Arc<Engine>,
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    serve_with_http(engine, config, listener, None, shutdown).await
}

/// Serves `engine` over gRPC on `listener` and, when `http` is given, the HTTP API and panel
/// on its listener (same runtime, same engine, same tokens), until `shutdown` completes; then
/// stops taking requests, ends ingest streams and watches (every write already acknowledged
/// is durable: each batch is committed before its answer), lets the other requests finish
/// and writes the index dump so the next start loads it.
pub async fn serve_with_http(
    engine: Arc<Engine>,
    config: ServerConfig,
    listener: TcpListener,
    http: Option<(TcpListener, HttpConfig)>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    // The anomaly scores are a pass over every object: computed beside the first requests.
    engine.warm_anomalies();
    let (events, _) = broadcast::channel(1024);
    {
        let events = events.clone();
        engine.observe(move |e| {
            // No receiver is fine: nobody watches.
            let _ = events.send(Arc::new(e.clone()));
        });
    }
    let (closing_tx, closing) = watch::channel(false);
    let http_server = http.map(|(http_listener, http_config)| {
        let app = http::router(Arc::clone(&engine), config.access.clone(), http_config);
        tokio::spawn(http::run(
            http_listener,
            config.tls.clone(),
            app,
            closing.clone(),
        ))
    });
    let service = service::Service {
        engine: Arc::clone(&engine),
        access: config.access,
        decode: config.decode,
        events,
        closing,
    };
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<proto::asterism_server::AsterismServer<service::Service>>()
        .await;
    // Reflection in both versions: grpcurl and current clients ask v1, Python's
    // grpcio-reflection, older grpcurl, Postman and evans ask v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Worker(format!("reflection: {e}")))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Worker(format!("reflection: {e}")))?;
    let api = proto::asterism_server::AsterismServer::new(service)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing the requests in flight");
        health_reporter
            .set_not_serving::<proto::asterism_server::AsterismServer<service::Service>>()
            .await;
        let _ = closing_tx.send(true);
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    builder
        .layer(tower::util::MapResponseLayer::new(
            error::oversized_is_resource_exhausted,
        ))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(api)
        // Small answers must not wait for Nagle's algorithm to meet the client's delayed ACK
        // (a constant ~40 ms per call otherwise).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), signal)
        .await?;
    if let Some(http_server) = http_server {
        http_server.await??;
    }
    tokio::task::spawn_blocking(move || engine.checkpoint()).await??;
    tracing::info!("index written; stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::{run_blocking, ServerError};

    /// A call abandoned while it waits for a blocking thread never runs; one still wanted does.
    #[test]
    fn abandoned_calls_do_not_start_their_work() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        rt.block_on(async {
            // The one blocking thread is busy for a while.
            let busy = tokio::spawn(run_blocking(|| {
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            }));
            tokio::time::sleep(Duration::from_millis(50)).await;
            let flag = Arc::clone(&ran);
            let abandoned = tokio::time::timeout(
                Duration::from_millis(20),
                run_blocking(move || {
                    flag.store(true, Ordering::SeqCst);
                    Ok(())
                }),
            )
            .await;
            assert!(abandoned.is_err(), "the call should still be waiting");
            busy.await.unwrap().unwrap();
            // A later call runs: the pool went past the abandoned one.
            assert_eq!(run_blocking(|| Ok(7)).await.unwrap(), 7);
        });
        assert!(!ran.load(Ordering::SeqCst), "abandoned work ran");
        let cancelled: tonic::Status = ServerError::Cancelled.into();
        assert_eq!(cancelled.code(), tonic::Code::Cancelled);
    }
}
