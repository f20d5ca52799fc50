//! `sparklake bench-writer`: the writer stage alone, for `scripts/bench`.
//!
//! Webhook-batch files are split by event type in memory exactly as fanout does (same handler,
//! the in-memory queue of `sparklake_core::memory`), then only the writer is timed: batches of at least
//! `batch_events` events' messages into a data folder, as `serve` and `import` write it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use fanout::Fanout;
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::memory::MemoryQueue;
use sparklake_core::message::{Attributes, InboundMessage, OutboundMessage, attr};
use writer::Writer;

use crate::pipeline::now_millis;
use crate::store::FsStore;

/// Prepares the writer's input from `files`, then times the writer over it; prints one JSON line.
pub async fn bench_writer(
    data: &Path,
    batch_events: usize,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let sent = fanout_files(files).await?;
    let (batches, events, input_bytes) = writer_batches(sent, batch_events);

    let store = FsStore::new(data);
    let parquet = ParquetEncoder::default();
    let writer = Writer {
        store: &store,
        parquet: &parquet,
        timestamps: Default::default(),
        catalog: None,
    };
    let (mut rows, mut objects, mut failed) = (0, 0, 0);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    for batch in &batches {
        let outcome = writer.handle(batch, now_millis()).await;
        rows += outcome.rows;
        objects += outcome.objects.len();
        failed += outcome.failed.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, cpu_seconds()) {
        (Some(a), Some(b)) => format!("{:.3}", b - a),
        _ => "null".into(),
    };
    crate::out!(
        "{{\"events\":{events},\"rows\":{rows},\"messages\":{},\"batches\":{},\"objects\":{objects},\"failed\":{failed},\"input_bytes\":{input_bytes},\"seconds\":{seconds:.4},\"cpu_seconds\":{cpu},\"events_per_second\":{:.0}}}",
        batches.iter().map(Vec::len).sum::<usize>(),
        batches.len(),
        events as f64 / seconds.max(1e-9),
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Splits webhook-batch files by type as fanout does, in memory (untimed preparation).
async fn fanout_files(files: &[PathBuf]) -> anyhow::Result<Vec<OutboundMessage>> {
    let queue = MemoryQueue::new(256 * 1024);
    let fanout = Fanout {
        events: &queue,
        routes: &[],
        archive: None,
    };
    let received_at = now_millis().to_string();
    for (n, file) in files.iter().enumerate() {
        let body = tokio::fs::read(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        let message = InboundMessage {
            id: format!("file-{n}"),
            body: Bytes::from(body),
            attributes: Attributes::from([(attr::RECEIVED_AT.to_owned(), received_at.clone())]),
            receive_count: 1,
        };
        let outcome = fanout.handle(std::slice::from_ref(&message)).await;
        anyhow::ensure!(
            outcome.failed.is_empty(),
            "{}: fanout refused it",
            file.display()
        );
    }
    Ok(queue.into_sent())
}

/// Fanout's messages as writer calls of at least `batch_events` events each (whole messages);
/// with the events and bytes they hold.
fn writer_batches(
    sent: Vec<OutboundMessage>,
    batch_events: usize,
) -> (Vec<Vec<InboundMessage>>, usize, usize) {
    let mut batches: Vec<Vec<InboundMessage>> = vec![Vec::new()];
    let mut in_batch = 0;
    let mut events = 0;
    let mut input_bytes = 0;
    for (n, message) in sent.into_iter().enumerate() {
        let count = sparklake_core::envelope::validate(&message.body)
            .map(|b| b.events().count())
            .unwrap_or(0);
        if in_batch >= batch_events {
            batches.push(Vec::new());
            in_batch = 0;
        }
        in_batch += count;
        events += count;
        input_bytes += message.body.len();
        if let Some(batch) = batches.last_mut() {
            batch.push(message.delivered(format!("m{n:08}")));
        }
    }
    (batches, events, input_bytes)
}

/// User + system CPU time of this process (every thread) so far, from `/proc/self/stat`
/// (clock ticks, 100 per second on Linux); `None` where that file is not there.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
