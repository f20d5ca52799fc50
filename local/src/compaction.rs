//! Compaction inside `serve`: every `SPARKLAKE_COMPACT_INTERVAL_SECS` the due partitions of the
//! pipeline's lake are compacted (the same compactor as `sparklake compact` and the Lambda),
//! stopping between jobs when serve stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use compact::{Compactor, Policy, RunOptions};
use sparklake_core::encode::ParquetEncoder;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::pipeline::{Pipeline, now_millis};

/// `serve`'s compaction interval variable (0 turns it off).
pub const INTERVAL: &str = "SPARKLAKE_COMPACT_INTERVAL_SECS";
/// Its default: five minutes.
pub const DEFAULT_INTERVAL_SECS: u64 = 300;

/// `SPARKLAKE_COMPACT_INTERVAL_SECS` (`None`: off).
pub fn interval(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Duration>> {
    let secs = match lookup(INTERVAL).filter(|v| !v.trim().is_empty()) {
        None => DEFAULT_INTERVAL_SECS,
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map_err(|_| anyhow::anyhow!("{INTERVAL}: `{v}` is not a whole number of seconds"))?,
    };
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

/// Compacts the lake every `interval` until `stop` turns true; a run under way stops after its
/// current job.
pub async fn run_periodically(
    pipeline: Pipeline,
    policy: Policy,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let stopping = Arc::new(AtomicBool::new(false));
    let parquet = ParquetEncoder::new(pipeline.settings.output.parquet_timestamp);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        let compactor = Compactor {
            store: pipeline.lake.as_ref(),
            parquet: &parquet,
            policy: policy.clone(),
        };
        let flag = stopping.clone();
        let stop_asked = move || flag.load(Ordering::Relaxed);
        let options = RunOptions {
            stop: Some(&stop_asked),
            ..RunOptions::default()
        };
        let mut watch_stop = stop.clone();
        let run = compactor.run(&options, now_millis());
        tokio::pin!(run);
        let result = tokio::select! {
            result = &mut run => result,
            _ = watch_stop.changed() => {
                stopping.store(true, Ordering::Relaxed);
                run.await
            }
        };
        match result {
            Ok(report) if report.jobs > 0 || report.failed > 0 => info!("{}", report.summary()),
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "compaction run failed; it is tried again at the next interval")
            }
        }
        if *stop.borrow() {
            break;
        }
    }
}
