//! `sparklake status`: queue depths, dead letters, what waits for compaction, quarantine, the
//! last metrics and the rows per partition.

use std::path::Path;
use std::process::ExitCode;

use sparklake_core::metrics::Metrics;

use crate::pipeline::Pipeline;
use crate::report;

/// `sparklake status`.
pub async fn status(pipeline: &Pipeline) -> anyhow::Result<ExitCode> {
    crate::out!(
        "{:<20} {:>8} {:>9} {:>6}",
        "queue",
        "visible",
        "in_flight",
        "dead"
    );
    for queue in [&pipeline.ingest_queue, &pipeline.events_queue] {
        let c = queue.counts().await?;
        crate::out!(
            "{:<20} {:>8} {:>9} {:>6}",
            queue.name(),
            c.visible,
            c.in_flight,
            c.dead
        );
    }
    print_compaction(pipeline).await?;
    if let Some(local) = &pipeline.local {
        let quarantined = walk_count(
            &local.data.join(ingest::handler::QUARANTINE_PREFIX),
            ".body",
        );
        crate::out!("quarantined bodies: {quarantined}");
        print_metrics(&local.data)?;
        print_partitions(&local.data)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Partitions and objects waiting for compaction (due now, or not yet settled), from one listing.
async fn print_compaction(pipeline: &Pipeline) -> anyhow::Result<()> {
    let policy = compact::Policy::from_lookup(|name| std::env::var(name).ok())
        .map_err(anyhow::Error::msg)?;
    let parquet = sparklake_core::encode::ParquetEncoder::default();
    let compactor = compact::Compactor {
        store: pipeline.lake.as_ref(),
        parquet: &parquet,
        policy,
    };
    let w = compactor.waiting(crate::pipeline::now_millis()).await?;
    crate::out!(
        "waiting for compaction: {} partitions, {} objects ({} partitions, {} objects due now)",
        w.partitions,
        w.objects,
        w.due_partitions,
        w.due_objects
    );
    Ok(())
}

/// The numbers the last `serve` on this folder recorded.
fn print_metrics(data: &Path) -> std::io::Result<()> {
    let Ok(text) = std::fs::read_to_string(data.join("metrics.json")) else {
        crate::out!(
            "metrics: none recorded yet (serve writes them every SPARKLAKE_METRICS_INTERVAL_SECS)"
        );
        return Ok(());
    };
    let Ok(snapshot) = serde_json::from_str::<serde_json::Value>(&text) else {
        crate::out!("metrics: metrics.json is unreadable");
        return Ok(());
    };
    let at = snapshot["at_millis"].as_i64().unwrap_or(0);
    for (label, key) in [("last interval", "interval"), ("since start", "totals")] {
        if let Ok(m) = serde_json::from_value::<Metrics>(snapshot[key].clone()) {
            crate::out!("metrics, {label}: {}", m.summary(at));
        }
    }
    Ok(())
}

pub(super) fn print_partitions(data: &Path) -> anyhow::Result<()> {
    let partitions = report::partitions(data)?;
    crate::out!("\n{}", report::table(data, &partitions));
    Ok(())
}

fn walk_count(dir: &Path, suffix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_count(&path, suffix)
            } else {
                usize::from(path.to_string_lossy().ends_with(suffix))
            }
        })
        .sum()
}
