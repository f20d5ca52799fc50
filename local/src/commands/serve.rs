//! `sparklake serve`: the pipeline behind an HTTP listener until SIGINT or SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use ingest::{ConfigError, IngestConfig};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::app::{run, shutdown_signal};
use crate::pipeline::Pipeline;

/// The ingest configuration for `serve`: from the environment, open (loudly) when
/// `SPARKLAKE_AUTH` is not set at all.
fn serve_config() -> anyhow::Result<IngestConfig> {
    let env = |name: &str| std::env::var(name).ok();
    match IngestConfig::from_lookup(env) {
        Ok(config) => Ok(config),
        Err(ConfigError::AuthUnset) => {
            eprintln!(
                "\n  WARNING: SPARKLAKE_AUTH is not set: anyone who can reach this port can post events.\n  \
                 Set SPARKLAKE_AUTH=basic|bearer|header (see README) before exposing it.\n"
            );
            warn!("no authentication configured: the webhook endpoint is open");
            let with_none = |name: &str| match name {
                "SPARKLAKE_AUTH" => Some("none".to_owned()),
                _ => env(name),
            };
            Ok(IngestConfig::from_lookup(with_none)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The bytes of the files under `dir` (none if it is missing).
fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// `sparklake serve`.
pub async fn serve(listen: &str, pipeline: Pipeline) -> anyhow::Result<ExitCode> {
    let config = serve_config()?;
    let limits =
        crate::server::Limits::from_lookup(|name| std::env::var(name).ok(), config.max_body_bytes)
            .map_err(anyhow::Error::msg)?;
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    if let Some(local) = &pipeline.local {
        // What earlier runs quarantined counts against the budget.
        let held = bytes_under(&local.data.join(ingest::handler::QUARANTINE_PREFIX));
        config.quarantine.set_used(held);
        if held > config.quarantine.max_bytes() {
            warn!(
                bytes = held,
                budget = config.quarantine.max_bytes(),
                "the quarantine is over SPARKLAKE_QUARANTINE_MAX_BYTES: refused bodies will not be kept (their reasons will, for a while); inspect and clear quarantine/"
            );
        }
    }
    info!(%addr, auth = ?config.auth.modes(), local = pipeline.local.is_some(), "sparklake serving");
    // On stdout, so scripts (and tests) that listen on port 0 learn the port.
    // A closed stdout does not stop the server.
    let _ = crate::stdout::line(format_args!("sparklake listening on http://{addr}/"));
    run(pipeline, listener, config, limits, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
