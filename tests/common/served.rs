//! A real server for the tests of the HTTP side: gRPC and HTTP on 127.0.0.1:0 from one engine,
//! on a thread and runtime of its own; and a labelled store of the real lightcurves of data/.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use asterism::engine::Engine;
use asterism::server::{serve_with_http, Access, HttpConfig, ServerConfig, ServerError};

use super::{config, data};

/// gRPC and HTTP served from one engine on a thread of their own.
pub struct Served {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    engine: Option<Arc<Engine>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

pub fn start(db: &Path, access: Access, http: HttpConfig) -> Served {
    start_with(
        db,
        ServerConfig {
            access,
            ..ServerConfig::default()
        },
        http,
    )
}

/// [`start`] with any server configuration (TLS, message limits).
pub fn start_with(db: &Path, server: ServerConfig, http: HttpConfig) -> Served {
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
            let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let web = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addr_tx
                .send((grpc.local_addr()?, web.local_addr()?))
                .expect("send addresses");
            serve_with_http(served, server, grpc, Some((web, http)), async {
                let _ = stopped.await;
            })
            .await
        })
    });
    let (grpc, http) = addr_rx.recv().expect("server addresses");
    Served {
        grpc,
        http,
        engine: Some(engine),
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Served {
    pub fn engine(&self) -> &Engine {
        self.engine.as_deref().expect("engine")
    }

    /// Stops both servers and closes the store, so the CLI can open it.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread").expect("server result");
        }
        self.engine = None;
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

/// A store of the SN Ia and RR Lyrae lightcurves of data/, labelled, made by the engine.
pub fn labelled_store(extra: &[&str]) -> tempfile::TempDir {
    let (dir, engine) = super::engine();
    let mut inputs = vec!["lightcurves/SNIa", "lightcurves/RRLyrae"];
    inputs.extend(extra);
    super::ingest(&engine, &inputs);
    let text = std::fs::read_to_string(data("labels/lightcurves.csv")).unwrap();
    let rows: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::trim).collect::<Vec<_>>())
        .map(|f| (f[0].to_string(), f[1].to_string()))
        .collect();
    assert_eq!(
        engine
            .import_labels(&rows, "lightcurves.csv")
            .unwrap()
            .imported,
        60
    );
    dir
}
