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

/// `sparklake serve`.
pub async fn serve(listen: &str, pipeline: Pipeline) -> anyhow::Result<ExitCode> {
    let config = serve_config()?;
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    info!(%addr, auth = ?config.auth.modes(), local = pipeline.local.is_some(), "sparklake serving");
    // On stdout, so scripts (and tests) that listen on port 0 learn the port.
    println!("sparklake listening on http://{addr}/");
    run(pipeline, listener, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
