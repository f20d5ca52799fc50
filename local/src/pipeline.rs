//! The pipeline on one machine: the queues in `<data>/queue.sqlite3`, the folder store, and the
//! fanout and writer workers polling their queues the way an SQS event source mapping does
//! (a batch size and a batching window), deleting what succeeded and leaving failures to be
//! redelivered after the visibility timeout, then dead-lettered after `max_receives`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fanout::{Fanout, Route};
use ingest::{Ingest, IngestConfig};
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::message::InboundMessage;
use sparklake_core::ports::ArchiveAppend;
use tokio::sync::watch;
use tracing::{error, info};
use writer::Writer;

use crate::queue::{LocalQueue, LocalQueues, QueueConfig, QueueError, Received};
use crate::store::{FsArchive, FsStore};

/// The queue ingest sends batches to, and fanout reads.
pub const INGEST_QUEUE: &str = "ingest";
/// The queue fanout sends per-type events to, and the writer reads.
pub const EVENTS_QUEUE: &str = "events";

/// How the workers poll.
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue: QueueConfig,
    pub fanout_batch_size: usize,
    pub writer_batch_size: usize,
    /// How long the writer waits to fill a batch before writing what it has.
    pub writer_window: Duration,
    /// Append every event to `<data>/archive/` as NDJSON.
    pub archive: bool,
    /// Extra routes: a name and the event types sent to the local queue `route-<name>`.
    pub routes: Vec<(String, BTreeSet<String>)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            queue: QueueConfig::default(),
            fanout_batch_size: 10,
            writer_batch_size: 100,
            writer_window: Duration::from_secs(1),
            archive: true,
            routes: Vec::new(),
        }
    }
}

/// Unix milliseconds now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Everything the local pipeline runs on, opened from one data folder.
#[derive(Clone)]
pub struct Pipeline {
    pub data: PathBuf,
    pub settings: Settings,
    pub ingest_queue: LocalQueue,
    pub events_queue: LocalQueue,
    pub route_queues: Vec<(String, BTreeSet<String>, LocalQueue)>,
    pub store: FsStore,
    pub archive: FsArchive,
}

impl Pipeline {
    pub fn open(data: &Path, settings: Settings) -> Result<Self, QueueError> {
        let queues = LocalQueues::open(&data.join("queue.sqlite3"))?;
        let route_queues = settings
            .routes
            .iter()
            .map(|(name, types)| {
                let queue = queues.queue(&format!("route-{name}"), settings.queue.clone());
                (name.clone(), types.clone(), queue)
            })
            .collect();
        Ok(Self {
            data: data.to_owned(),
            ingest_queue: queues.queue(INGEST_QUEUE, settings.queue.clone()),
            events_queue: queues.queue(EVENTS_QUEUE, settings.queue.clone()),
            route_queues,
            store: FsStore::new(data),
            archive: FsArchive::new(data),
            settings,
        })
    }

    /// The ingest handler over this pipeline's queue and quarantine.
    pub fn ingest<'a>(&'a self, config: &'a IngestConfig) -> Ingest<'a> {
        Ingest {
            config,
            queue: &self.ingest_queue,
            quarantine: &self.store,
        }
    }

    /// After a crash, in-flight messages would wait out their visibility timeout; this process
    /// is their only consumer, so make them visible at once.
    pub async fn recover(&self) -> Result<usize, QueueError> {
        Ok(self.ingest_queue.release_in_flight().await?
            + self.events_queue.release_in_flight().await?)
    }

    /// One fanout pass over up to a batch of messages; returns how many were received.
    pub async fn fanout_once(&self) -> Result<usize, QueueError> {
        let received = self
            .ingest_queue
            .receive(self.settings.fanout_batch_size)
            .await?;
        if received.is_empty() {
            return Ok(0);
        }
        let routes: Vec<Route<'_>> = self
            .route_queues
            .iter()
            .map(|(name, types, queue)| Route {
                name: name.clone(),
                event_types: types.clone(),
                queue,
            })
            .collect();
        let handler = Fanout {
            events: &self.events_queue,
            routes: &routes,
            archive: self
                .settings
                .archive
                .then_some(&self.archive as &dyn ArchiveAppend),
        };
        let messages: Vec<InboundMessage> = received.iter().map(|r| r.message.clone()).collect();
        let outcome = handler.handle(&messages).await;
        settle(&self.ingest_queue, &received, &outcome.failed).await?;
        Ok(received.len())
    }

    /// One writer pass: receives up to a batch, waiting at most `window` to fill it (less if
    /// `stop` turns true meanwhile).
    pub async fn write_once(
        &self,
        encoder: &ParquetEncoder,
        window: Duration,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<usize, QueueError> {
        let size = self.settings.writer_batch_size;
        let deadline = tokio::time::Instant::now() + window;
        let mut received: Vec<Received> = Vec::new();
        loop {
            received.extend(self.events_queue.receive(size - received.len()).await?);
            let stopping = stop.is_some_and(|s| *s.borrow());
            if received.len() >= size || stopping || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - tokio::time::Instant::now())).await;
        }
        if received.is_empty() {
            return Ok(0);
        }
        let handler = Writer {
            store: &self.store,
            parquet: encoder,
        };
        let messages: Vec<InboundMessage> = received.iter().map(|r| r.message.clone()).collect();
        let outcome = handler.handle(&messages, now_millis()).await;
        settle(&self.events_queue, &received, &outcome.failed).await?;
        Ok(received.len())
    }

    /// Runs fanout until `stop` turns true, then drains the ingest queue of visible messages.
    pub async fn run_fanout(&self, mut stop: watch::Receiver<bool>) {
        loop {
            let stopping = *stop.borrow();
            match self.fanout_once().await {
                Ok(0) if stopping => break,
                Ok(0) => idle(&mut stop).await,
                Ok(_) => {}
                Err(e) => {
                    error!(error = %e, "fanout poll failed");
                    idle(&mut stop).await;
                }
            }
        }
        info!("fanout worker drained");
    }

    /// Runs the writer until `stop` turns true, then drains the events queue of visible
    /// messages (call after fanout has drained, so its output is included).
    pub async fn run_writer(&self, mut stop: watch::Receiver<bool>) {
        let encoder = ParquetEncoder::default();
        loop {
            let stopping = *stop.borrow();
            let window = if stopping {
                Duration::ZERO
            } else {
                self.settings.writer_window
            };
            match self.write_once(&encoder, window, Some(&stop)).await {
                Ok(0) if stopping => break,
                Ok(0) => idle(&mut stop).await,
                Ok(_) => {}
                Err(e) => {
                    error!(error = %e, "writer poll failed");
                    idle(&mut stop).await;
                }
            }
        }
        info!("writer worker drained");
    }

    /// Processes everything visible now in both queues, without waiting for batching windows.
    pub async fn drain(&self) -> Result<(), QueueError> {
        let encoder = ParquetEncoder::default();
        while self.fanout_once().await? > 0 {}
        while self.write_once(&encoder, Duration::ZERO, None).await? > 0 {}
        Ok(())
    }
}

/// Between polls of an empty queue.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

async fn idle(stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(POLL_INTERVAL) => {}
        _ = stop.changed() => {}
    }
}

/// Deletes the messages that succeeded; failed ones stay invisible until their visibility
/// timeout, then are redelivered (and dead-lettered after `max_receives`), as on SQS.
async fn settle(
    queue: &LocalQueue,
    received: &[Received],
    failed: &[String],
) -> Result<(), QueueError> {
    let done: Vec<String> = received
        .iter()
        .filter(|r| !failed.contains(&r.message.id))
        .map(|r| r.receipt.clone())
        .collect();
    queue.delete(&done).await
}
