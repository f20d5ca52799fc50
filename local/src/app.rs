//! The whole pipeline as one process: the HTTP server, the fanout and writer workers and the
//! metrics reporter, started together and stopped in order (stop accepting, drain fanout, then the
//! writer), as `serve` and `demo` run it.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use ingest::IngestConfig;
use sparklake_core::metrics::Metrics;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::pipeline::{Pipeline, now_millis};
use crate::server;

/// Runs the whole pipeline until `shutdown`: then stops accepting, drains fanout, then the
/// writer, and returns once everything accepted and visible has been written.
pub async fn run(
    pipeline: Pipeline,
    listener: TcpListener,
    config: IngestConfig,
    limits: server::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let recovered = pipeline.recover().await?;
    if recovered > 0 {
        info!(
            messages = recovered,
            "recovered in-flight messages from an earlier run"
        );
    }
    let (stop_fanout, fanout_rx) = watch::channel(false);
    let (stop_writer, writer_rx) = watch::channel(false);
    let fanout = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.run_fanout(fanout_rx).await }
    });
    let writer = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.run_writer(writer_rx).await }
    });
    let env = |name: &str| std::env::var(name).ok();
    let (stop_compactor, compactor_rx) = watch::channel(false);
    let compactor = match crate::compaction::interval(env)? {
        Some(interval) => Some(tokio::spawn(crate::compaction::run_periodically(
            pipeline.clone(),
            compact::Policy::from_lookup(env).map_err(anyhow::Error::msg)?,
            interval,
            compactor_rx,
        ))),
        None => None,
    };
    let (stop_reporter, reporter_rx) = watch::channel(false);
    let reporter = tokio::spawn(report_metrics(
        pipeline.clone(),
        metrics_interval(),
        reporter_rx,
    ));
    let served = server::run(listener, pipeline.clone(), config, limits, shutdown).await;
    info!("stopped accepting; draining");
    // A compaction under way finishes its job while the workers drain.
    let _ = stop_compactor.send(true);
    let _ = stop_fanout.send(true);
    fanout.await.context("fanout worker")?;
    let _ = stop_writer.send(true);
    writer.await.context("writer worker")?;
    if let Some(compactor) = compactor {
        compactor.await.context("compactor")?;
    }
    let _ = stop_reporter.send(true);
    reporter.await.context("metrics reporter")?;
    served.context("http server")?;
    let (ingest, events) = (
        pipeline.ingest_queue.counts().await?,
        pipeline.events_queue.counts().await?,
    );
    info!(
        waiting = ingest.in_flight + events.in_flight,
        dead = ingest.dead + events.dead,
        "drained; messages still waiting for a retry are kept for the next start"
    );
    Ok(())
}

/// The variables the app reads itself (the README's configuration table is tested against it).
pub const VARIABLES: &[&str] = &[METRICS_INTERVAL, crate::compaction::INTERVAL];
/// The server's bounds (`sparklake serve`).
pub use crate::server::limits::VARIABLES as SERVER_VARIABLES;
const METRICS_INTERVAL: &str = "SPARKLAKE_METRICS_INTERVAL_SECS";

/// `SPARKLAKE_METRICS_INTERVAL_SECS`, default 60.
fn metrics_interval() -> Duration {
    let secs = std::env::var(METRICS_INTERVAL)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(60u64);
    Duration::from_secs(secs.max(1))
}

/// Every `interval` (and once at stop): logs the interval's numbers and, locally, keeps them
/// with the totals in `<data>/metrics.json` for `sparklake status`.
async fn report_metrics(pipeline: Pipeline, interval: Duration, mut stop: watch::Receiver<bool>) {
    let started = now_millis();
    let mut totals = Metrics::default();
    loop {
        let stopping = *stop.borrow();
        if !stopping {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
        }
        let window = pipeline.take_metrics();
        totals.merge(&window);
        let now = now_millis();
        info!(
            batches = window.batches,
            bytes = window.bytes,
            events = window.events(),
            rejected = window.rejected,
            failures = window.failures,
            retries = window.retries,
            dead_lettered = window.dead_lettered,
            objects = window.objects_written(),
            rows = window.rows_written(),
            oldest_event_age_secs = window.oldest_event_age_seconds(now).unwrap_or(0.0),
            "metrics: {}",
            window.summary(now)
        );
        if let Some(local) = &pipeline.local {
            let snapshot = serde_json::json!({
                "since_millis": started,
                "at_millis": now,
                "interval": window,
                "totals": totals,
            });
            if let Err(e) = crate::store::write_atomic(
                &local.data.join("metrics.json"),
                snapshot.to_string().as_bytes(),
            ) {
                warn!(error = %e, "could not write metrics.json");
            }
        }
        if stopping || *stop.borrow() {
            break;
        }
    }
}

/// A future resolving on SIGINT or SIGTERM. The handlers are installed when this is called, not
/// when first polled, so a signal that arrives right after start-up is not missed.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => info!("SIGINT received"),
            _ = terminate.recv() => info!("SIGTERM received"),
        }
    })
}
