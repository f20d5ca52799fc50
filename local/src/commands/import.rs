//! `sparklake import`: webhook-batch files through the same handlers, without HTTP.
//!
//! On the local backend the files are already durable, so the handlers run in memory: each file
//! through ingest (validation, quarantine, splitting) and fanout (per type, raw archive) on one
//! thread, while the writer turns the messages into Parquet and CSV on another; no message goes
//! through the SQLite queues (no compression, no fsync per hop). With routes configured, or on
//! the aws backend, the files go through the queues as `serve`'s posts do.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use fanout::Fanout;
use ingest::{Ingest, IngestConfig};
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::memory::MemoryQueue;
use sparklake_core::message::{InboundMessage, OutboundMessage};
use sparklake_core::metrics::Metrics;
use writer::Writer;

use super::status::print_partitions;
use crate::pipeline::{Pipeline, now_millis};

/// How many bytes of input `import` enqueues before it drains the queues (the queue path): the
/// writer then sees many files' events at once and writes fewer, larger objects, while the
/// queue stays bounded.
const IMPORT_DRAIN_BYTES: usize = 256 << 20;

/// Writer calls the in-memory path lets wait for the writer: bounds what is held in memory
/// (each call at most the writer batch size of messages) while the first stage runs ahead.
const WRITER_CALLS_AHEAD: usize = 2;

/// Attempts of a handler call whose messages failed (a full disk, say) before import stops.
const ATTEMPTS: usize = 3;

/// `sparklake import`: each file through the ingest handler, then fanout and writer.
pub async fn import(pipeline: &Pipeline, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    pipeline.recover().await?;
    // A backfill file can be far larger than one webhook post; the handler splits it.
    let config = IngestConfig::open(usize::MAX);
    let refused = if pipeline.local.is_some() && pipeline.routes.is_empty() {
        // What an earlier run or `serve` left in the queues goes first.
        pipeline.drain().await?;
        in_memory(pipeline, &config, files)?
    } else {
        through_queues(pipeline, &config, files).await?
    };
    if let Some(local) = &pipeline.local {
        print_partitions(&local.data)?;
    }
    if refused > 0 {
        eprintln!("{refused} file(s) refused; they are kept under quarantine/");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `file` as the ingest handler's request, and prints its answer; whether it was taken,
/// and the bytes read.
async fn ingest_file(
    ingest: &Ingest<'_>,
    pipeline: &Pipeline,
    file: &PathBuf,
) -> anyhow::Result<(bool, usize)> {
    let body = tokio::fs::read(file)
        .await
        .with_context(|| format!("reading {}", file.display()))?;
    let mut request =
        http::Request::post("/").header(http::header::CONTENT_TYPE, "application/json");
    if file.extension().is_some_and(|e| e == "gz") {
        request = request.header(http::header::CONTENT_ENCODING, "gzip");
    }
    let read = body.len();
    let (response, metrics) = ingest
        .handle_measured(request.body(Bytes::from(body))?, now_millis())
        .await;
    pipeline.record(&metrics);
    let status = response.status();
    crate::out!(
        "{}: {} {}",
        file.display(),
        status.as_u16(),
        String::from_utf8_lossy(response.body())
    );
    Ok((status.is_success(), read))
}

/// The queue path: every file enqueued by ingest, fanout and writer draining the queues every
/// [`IMPORT_DRAIN_BYTES`] of input and at the end.
async fn through_queues(
    pipeline: &Pipeline,
    config: &IngestConfig,
    files: &[PathBuf],
) -> anyhow::Result<usize> {
    let ingest = pipeline.ingest(config);
    let (mut refused, mut pending) = (0, 0);
    for file in files {
        let (taken, read) = ingest_file(&ingest, pipeline, file).await?;
        if !taken {
            refused += 1;
        }
        pending += read;
        if pending >= IMPORT_DRAIN_BYTES {
            pipeline.drain().await?;
            pending = 0;
        }
    }
    pipeline.drain().await?;
    Ok(refused)
}

/// The in-memory path: ingest and fanout on one thread, the writer on another, joined by a
/// channel of writer calls; returns how many files were refused.
fn in_memory(
    pipeline: &Pipeline,
    config: &IngestConfig,
    files: &[PathBuf],
) -> anyhow::Result<usize> {
    let runtime = tokio::runtime::Handle::current();
    let (calls, received) = mpsc::sync_channel::<Vec<InboundMessage>>(WRITER_CALLS_AHEAD);
    std::thread::scope(|scope| {
        let front =
            scope.spawn(|| runtime.block_on(ingest_and_fanout(pipeline, config, files, calls)));
        let back = scope.spawn(|| runtime.block_on(write(pipeline, received)));
        let front = front
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the ingest thread panicked")));
        let back = back
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the writer thread panicked")));
        // The writer's error explains the first stage's "writer stopped".
        back?;
        front
    })
}

fn inbound(messages: Vec<OutboundMessage>, prefix: &str) -> Vec<InboundMessage> {
    messages
        .into_iter()
        .enumerate()
        .map(|(n, m)| m.delivered(format!("{prefix}-{n}")))
        .collect()
}

async fn ingest_and_fanout(
    pipeline: &Pipeline,
    config: &IngestConfig,
    files: &[PathBuf],
    calls: mpsc::SyncSender<Vec<InboundMessage>>,
) -> anyhow::Result<usize> {
    // The ingest queue's limit, so that a file holding an element too large for any message is
    // refused (and quarantined) by ingest as `serve` would refuse it. A file that fits is one
    // message, and ingest's outline of it goes along: fanout does not walk it a second time.
    let ingested = MemoryQueue::new(pipeline.ingest_queue.max_message_bytes());
    let ingest = Ingest {
        config,
        queue: &ingested,
        quarantine: pipeline.store.as_ref(),
    };
    let split = MemoryQueue::new(pipeline.events_queue.max_message_bytes());
    let fanout = Fanout {
        events: &split,
        routes: &[],
        archive: pipeline.archive.as_deref(),
    };
    // Message ids name the writer's objects (a retried call rewrites its own): unique to this
    // run, so a file imported again adds its events beside the first copy, as a replay does.
    let run = format!(
        "import-{:x}-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        std::process::id()
    );
    let batch = pipeline.settings.writer_batch_size.max(1);
    let mut pending: Vec<InboundMessage> = Vec::new();
    let mut refused = 0;
    for (n, file) in files.iter().enumerate() {
        if !ingest_file(&ingest, pipeline, file).await?.0 {
            refused += 1;
        }
        // Each message with its outline (`None` where ingest gave none), kept in step.
        let (messages, mut outlines): (Vec<_>, Vec<_>) =
            ingested.take_outlined().into_iter().unzip();
        let mut messages = inbound(messages, &format!("{run}-file{n}"));
        for attempt in 1..=ATTEMPTS {
            let outcome = fanout.handle_outlined(&messages, &outlines).await;
            pipeline.record(&Metrics {
                failures: outcome.metrics.failures,
                ..Metrics::default()
            });
            if outcome.failed.is_empty() {
                break;
            }
            if attempt == ATTEMPTS {
                bail!(
                    "{}: fanout failed {ATTEMPTS} times (see the log); re-run import for it",
                    file.display()
                );
            }
            (messages, outlines) = messages
                .into_iter()
                .zip(outlines)
                .filter(|(m, _)| outcome.failed.contains(&m.id))
                .unzip();
        }
        pending.extend(inbound(split.take(), &format!("{run}-file{n}-events")));
        while pending.len() >= batch {
            let rest = pending.split_off(batch);
            if calls.send(std::mem::replace(&mut pending, rest)).is_err() {
                bail!("the writer stopped");
            }
        }
    }
    if !pending.is_empty() && calls.send(pending).is_err() {
        bail!("the writer stopped");
    }
    Ok(refused)
}

async fn write(
    pipeline: &Pipeline,
    calls: mpsc::Receiver<Vec<InboundMessage>>,
) -> anyhow::Result<()> {
    let encoder = ParquetEncoder::new(pipeline.settings.output.parquet_timestamp);
    let writer = Writer {
        store: pipeline.store.as_ref(),
        parquet: &encoder,
        timestamps: pipeline.settings.output.timestamps,
        catalog: pipeline.catalog.as_deref(),
    };
    // A blocking receive: this thread does nothing else.
    while let Ok(mut messages) = calls.recv() {
        for attempt in 1..=ATTEMPTS {
            let outcome = writer.handle(&messages, now_millis()).await;
            pipeline.record(&Metrics {
                failures: outcome.metrics.failures,
                rows_per_object: outcome.metrics.rows_per_object.clone(),
                oldest_event_millis: outcome.metrics.oldest_event_millis,
                ..Metrics::default()
            });
            if outcome.failed.is_empty() {
                break;
            }
            if attempt == ATTEMPTS {
                bail!(
                    "the writer failed {ATTEMPTS} times on {} message(s) (see the log); the files are unchanged, re-run import",
                    outcome.failed.len()
                );
            }
            messages.retain(|m| outcome.failed.contains(&m.id));
        }
    }
    Ok(())
}
