//! `sparklake import`: webhook-batch files through the same handlers, without HTTP.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use ingest::IngestConfig;

use super::status::print_partitions;
use crate::pipeline::{Pipeline, now_millis};

/// How many bytes of input `import` enqueues before it drains the queues: the writer then sees
/// many files' events at once and writes fewer, larger objects, while the queue stays bounded.
const IMPORT_DRAIN_BYTES: usize = 256 << 20;

/// `sparklake import`: each file through the ingest handler (validation, quarantine, splitting,
/// enqueue), then fanout and writer until the queues are drained (every
/// [`IMPORT_DRAIN_BYTES`] of input, and at the end).
pub async fn import(pipeline: &Pipeline, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    pipeline.recover().await?;
    // A backfill file can be far larger than one webhook post; the handler splits it.
    let config = IngestConfig::open(usize::MAX);
    let mut refused = 0;
    let mut pending = 0usize;
    for file in files {
        let body = tokio::fs::read(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        let mut request =
            http::Request::post("/").header(http::header::CONTENT_TYPE, "application/json");
        if file.extension().is_some_and(|e| e == "gz") {
            request = request.header(http::header::CONTENT_ENCODING, "gzip");
        }
        let body_len = body.len();
        let response = pipeline
            .ingest(&config)
            .handle(request.body(Bytes::from(body))?, now_millis())
            .await;
        let status = response.status();
        crate::out!(
            "{}: {} {}",
            file.display(),
            status.as_u16(),
            String::from_utf8_lossy(response.body())
        );
        if !status.is_success() {
            refused += 1;
        }
        pending += body_len;
        if pending >= IMPORT_DRAIN_BYTES {
            pipeline.drain().await?;
            pending = 0;
        }
    }
    pipeline.drain().await?;
    if let Some(local) = &pipeline.local {
        print_partitions(&local.data)?;
    }
    if refused > 0 {
        eprintln!("{refused} file(s) refused; they are kept under quarantine/");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
