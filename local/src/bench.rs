//! `sparklake bench-writer`: the writer stage alone, for `scripts/bench`.
//!
//! Webhook-batch files are split by event type in memory exactly as fanout does (same handler,
//! a queue that keeps what it is sent), then only the writer is timed: batches of at least
//! `batch_events` events' messages into a data folder, as `serve` and `import` write it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use fanout::Fanout;
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::message::{Attributes, InboundMessage, OutboundMessage, attr};
use sparklake_core::ports::{PortError, QueueSend};
use writer::Writer;

use crate::pipeline::now_millis;
use crate::store::FsStore;

/// Keeps what fanout sends, as the events queue would (also used by the criterion benches).
pub struct Collect {
    max_bytes: usize,
    sent: Mutex<Vec<OutboundMessage>>,
}

impl Collect {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            sent: Mutex::new(Vec::new()),
        }
    }

    /// What was sent, in order.
    pub fn into_sent(self) -> Vec<OutboundMessage> {
        self.sent.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl QueueSend for Collect {
    fn max_message_bytes(&self) -> usize {
        self.max_bytes
    }

    async fn send(&self, messages: Vec<OutboundMessage>) -> Result<(), PortError> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(messages);
        Ok(())
    }
}

/// Prepares the writer's input from `files`, then times the writer over it; prints one JSON line.
pub async fn bench_writer(
    data: &Path,
    batch_events: usize,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let queue = Collect::new(256 * 1024);
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
    let sent = queue.into_sent();
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
            batch.push(InboundMessage {
                id: format!("m{n:08}"),
                body: message.body,
                attributes: message.attributes,
                receive_count: 1,
            });
        }
    }

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
    println!(
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
