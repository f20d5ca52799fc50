//! `sparklake demo`: the pipeline on a temporary port, SparkPost's sample batch and a ping
//! posted to it, and what it wrote.

use std::path::PathBuf;
use std::process::ExitCode;

use ingest::IngestConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::app::run;
use crate::config::Settings;
use crate::http_client::post;
use crate::pipeline::{Pipeline, now_millis};
use crate::report;

/// The sample batch `demo` posts: SparkPost's own published sample, one event of 19 types.
const SAMPLE_BATCH: &[u8] = include_bytes!("../../../fixtures/sparkpost/batch.json");
/// What SparkPost posts when a webhook is created or validated.
const PING: &[u8] = br#"[{"msys":{}}]"#;

/// `sparklake demo`.
pub async fn demo(data: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let data = match data {
        Some(data) => data,
        None => std::env::temp_dir().join(format!(
            "sparklake-demo-{}-{}",
            std::process::id(),
            now_millis()
        )),
    };
    let pipeline = Pipeline::open(&data, Settings::default())?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(run(
        pipeline,
        listener,
        IngestConfig::open(ingest::config::DEFAULT_MAX_BODY_BYTES),
        crate::server::Limits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    crate::out!(
        "sparklake demo: pipeline listening on http://{addr}/, data in {}",
        data.display()
    );
    for (what, body) in [("ping", PING), ("sample batch (19 events)", SAMPLE_BATCH)] {
        let (status, answer) = post(&addr.to_string(), body).await?;
        crate::out!("POST {what}: {status} {answer}");
        anyhow::ensure!(status == 200, "the pipeline refused the {what}");
    }
    let _ = stop.send(());
    running.await??;
    let partitions = report::partitions(&data)?;
    crate::out!("\n{}", report::table(&data, &partitions));
    crate::out!(
        "Query it: duckdb -c \"SELECT event_type, count(*) FROM read_parquet('{}/parquet/*/*/*.parquet', hive_partitioning=true) GROUP BY 1\"",
        data.display()
    );
    Ok(ExitCode::SUCCESS)
}
