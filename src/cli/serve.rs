//! `asterism serve`: opens the store, builds the server configuration from the flags (tokens,
//! user tokens, schema, message size, the `--http-*` flags) and runs the gRPC server, and with
//! `--http` the HTTP API and panel beside it, on one Tokio runtime until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::{Context, Result};

use asterism::engine::Engine;
use asterism::server::{self, Access, ServerConfig};

use super::args::ServeArgs;
use super::output;

/// Runs the gRPC server (and the HTTP one) until SIGINT or SIGTERM.
pub(super) fn serve(args: ServeArgs) -> Result<()> {
    // Unreadable TLS files fail before the (possibly long) open of the store.
    let tls = args.tls_identity()?;
    let opening = || format!("opening {}", args.db.db.display());
    // A bad write flag reads as a failure to open, as when `Engine::open` found it.
    let config = args.write.engine_config().with_context(opening)?;
    let batch_size = config.batch_size;
    let engine = Arc::new(Engine::open(&args.db.db, config).with_context(opening)?);
    if let Some(n) = args.ef_search {
        if !engine.set_search_expansion(usize::from(n)) {
            anyhow::bail!(
                "--ef-search: this store's index is hnsw_rs, whose ef_search was recorded when \
                 the store was created; only USearch stores take another"
            );
        }
    }
    let http_config = args.http_config();
    let users = match &args.user_tokens {
        Some(path) => Access::read_user_tokens(path).map_err(|e| anyhow::anyhow!(e))?,
        None => Default::default(),
    };
    let decode = args.schema.decode_options()?;
    let consumer = start_consumer(&args, &engine, batch_size, &decode)?;
    let server_config = ServerConfig {
        access: Access {
            write_token: args.token.filter(|t| !t.is_empty()),
            read_token: args.read_token.filter(|t| !t.is_empty()),
            users,
        },
        max_message_bytes: args.max_message_bytes,
        decode,
        tls,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        let addr = listener.local_addr()?;
        if server_config.access.write_token.is_none() {
            tracing::warn!("no --token: Ingest is refused");
        }
        output::print_serving(&args.db.db, addr)?;
        let http = match args.http {
            Some(http_addr) => {
                let http_listener = tokio::net::TcpListener::bind(http_addr)
                    .await
                    .with_context(|| format!("binding {http_addr}"))?;
                output::print_serving_http(http_listener.local_addr()?)?;
                Some((http_listener, http_config))
            }
            None => None,
        };
        server::serve_with_http(engine, server_config, listener, http, shutdown_signal()).await?;
        // The consumer stores its last batch, with its offsets, before the process ends.
        stop_consumer(consumer);
        output::print_stopped()
    })
}

#[cfg(feature = "kafka")]
type Consumer = Option<(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
)>;
#[cfg(not(feature = "kafka"))]
type Consumer = ();

/// With `--kafka-brokers`, starts the consumer thread that ingests the topics while serving.
#[cfg(feature = "kafka")]
fn start_consumer(
    args: &ServeArgs,
    engine: &Arc<Engine>,
    batch_size: usize,
    decode: &asterism::alert::DecodeOptions,
) -> Result<Consumer> {
    let Some(brokers) = &args.kafka_brokers else {
        return Ok(None);
    };
    let mut config = super::stream::consume_config(
        brokers,
        args.kafka_topics.clone(),
        &args.kafka_group,
        decode.clone(),
        &args.kafka,
    )?;
    config.batch_size = batch_size;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handle = super::stream::spawn_for_server(Arc::clone(engine), config, Arc::clone(&stop))?;
    Ok(Some((stop, handle)))
}

#[cfg(not(feature = "kafka"))]
fn start_consumer(
    args: &ServeArgs,
    _engine: &Arc<Engine>,
    _batch: usize,
    _decode: &asterism::alert::DecodeOptions,
) -> Result<Consumer> {
    if args.kafka_brokers.is_some() {
        anyhow::bail!("this asterism was built without Kafka (cargo feature `kafka`)");
    }
    Ok(())
}

#[cfg(feature = "kafka")]
fn stop_consumer(consumer: Consumer) {
    if let Some((stop, handle)) = consumer {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if handle.join().is_err() {
            tracing::error!("the Kafka consumer thread panicked");
        }
    }
}

#[cfg(not(feature = "kafka"))]
fn stop_consumer(_consumer: Consumer) {}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
