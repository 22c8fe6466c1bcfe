//! Runs the query endpoint on its own thread and runtime, so the dataflow threads never block
//! on HTTP and HTTP never waits on the dataflow.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use eod_dataflow::ViewStore;

use crate::metrics::Metrics;

/// How often the dashboard's series over the day are sampled.
const HISTORY_INTERVAL: Duration = Duration::from_secs(1);

/// A task the server's runtime runs beside it (the history sampler).
type Background = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

pub struct QueryServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<()>>,
}

impl QueryServer {
    /// Binds `addr` (port 0 picks a free port) and serves until `stop` is set or Ctrl-C.
    /// Refuses a non-loopback address unless `policy` carries a token.
    pub fn start(
        addr: SocketAddr,
        store: Arc<ViewStore>,
        metrics: &Metrics,
        policy: eod_queries::AccessPolicy,
        readiness: eod_queries::Readiness,
        stop: Arc<AtomicBool>,
    ) -> Result<QueryServer> {
        let query_metrics = eod_queries::QueryMetrics::register(&metrics.registry)?;
        let history = eod_queries::history::History::new();
        let router = eod_queries::router_with_history(
            store.clone(),
            query_metrics,
            policy.clone(),
            readiness,
            history.clone(),
        );
        let sampler = history.run(store, metrics.registry.clone(), HISTORY_INTERVAL);
        QueryServer::serve(addr, router, &policy, stop, Some(Box::pin(sampler)))
    }

    /// Only `/metrics` and `/health/live`, for a process without views (the gateway).
    pub fn start_metrics(
        addr: SocketAddr,
        metrics: &Metrics,
        policy: eod_queries::AccessPolicy,
        stop: Arc<AtomicBool>,
    ) -> Result<QueryServer> {
        let router = eod_queries::metrics_router(metrics.registry.clone(), policy.clone());
        QueryServer::serve(addr, router, &policy, stop, None)
    }

    fn serve(
        addr: SocketAddr,
        router: eod_queries::Router,
        policy: &eod_queries::AccessPolicy,
        stop: Arc<AtomicBool>,
        background: Option<Background>,
    ) -> Result<QueryServer> {
        policy.check_bind(addr)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("eod-http")
            .enable_all()
            .build()?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("binding the http endpoint to {addr}"))?;
        let addr = listener.local_addr()?;
        let stop_signal = stop.clone();
        let handle = std::thread::Builder::new()
            .name("eod-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Some(task) = background {
                        tokio::spawn(task);
                    }
                    let shutdown = async move {
                        // Where SIGINT cannot be watched (a background job ignores it), only the
                        // stop flag ends the server: a failed registration is not a Ctrl-C.
                        let interrupted = async {
                            if let Err(error) = tokio::signal::ctrl_c().await {
                                tracing::debug!(%error, "Ctrl-C not watched");
                                std::future::pending::<()>().await;
                            }
                        };
                        let stopped = async {
                            while !stop_signal.load(Ordering::Acquire) {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        };
                        tokio::select! {
                            _ = interrupted => {
                            tracing::warn!("Ctrl-C: stopping");
                            stop_signal.store(true, Ordering::Release);
                        }
                            _ = stopped => {}
                        }
                    };
                    eod_queries::serve(listener, router, shutdown)
                        .await
                        .context("query endpoint")
                })
            })?;
        Ok(QueryServer { addr, stop, handle })
    }

    /// Blocks until the server stops (Ctrl-C or `stop`).
    pub fn wait(self) -> Result<()> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("query endpoint thread panicked"))?
    }

    pub fn shutdown(self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        self.wait()
    }
}
