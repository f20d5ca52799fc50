//! The pipeline's workers over either backend: the local queues in `<data>/queue.sqlite3` and a
//! folder, or SQS, S3 and Firehose. Fanout and writer poll their queues the way an SQS event
//! source mapping does (a batch size and a batching window), keep a batch invisible while it is
//! being worked on, delete what succeeded and leave failures to be redelivered after the
//! visibility timeout, then dead-lettered.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fanout::{Fanout, Route};
use ingest::{Ingest, IngestConfig};
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::message::InboundMessage;
use sparklake_core::metrics::Metrics;
use sparklake_core::output::OutputSettings;
use sparklake_core::ports::{
    ArchiveAppend, ObjectPut, PortError, QueueReceive, QueueSend, Received, TypeCatalog,
};
use tokio::sync::watch;
use tracing::{error, info, warn};
use writer::Writer;

use crate::queue::{LocalQueue, LocalQueues, QueueConfig, QueueError};
use crate::store::{FsArchive, FsStore};
use sparklake_aws::config::{AwsSettings, SettingsError};
use sparklake_aws::firehose::FirehoseArchive;
use sparklake_aws::s3::S3Store;
use sparklake_aws::sqs::SqsQueue;

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
    /// How long the writer waits to fill a batch before writing what it has (at most half the
    /// visibility timeout, so a waiting batch is never redelivered).
    pub writer_window: Duration,
    /// Append every event to the raw archive (`<data>/archive/` locally).
    pub archive: bool,
    /// Extra routes: a name and the event types sent to the local queue `route-<name>`.
    pub routes: Vec<(String, BTreeSet<String>)>,
    /// Partition values longer than this are shortened in object keys (`None`: kept whole).
    pub partition_value_max_bytes: Option<usize>,
    /// How the writer writes the lake.
    pub output: OutputSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            queue: QueueConfig::default(),
            fanout_batch_size: 10,
            writer_batch_size: 1000,
            writer_window: Duration::from_secs(1),
            archive: true,
            routes: Vec::new(),
            partition_value_max_bytes: None,
            output: OutputSettings::default(),
        }
    }
}

/// Unix milliseconds now (one clock for every backend).
pub use sparklake_aws::now_millis;

/// The local queues, for what only they can do (inspect dead letters).
#[derive(Clone)]
pub struct LocalParts {
    pub data: PathBuf,
    pub ingest: LocalQueue,
    pub events: LocalQueue,
}

/// Everything the workers run on.
#[derive(Clone)]
pub struct Pipeline {
    pub settings: Settings,
    pub ingest_queue: Arc<dyn QueueReceive>,
    pub events_queue: Arc<dyn QueueReceive>,
    pub routes: Vec<(String, BTreeSet<String>, Arc<dyn QueueSend>)>,
    pub store: Arc<dyn ObjectPut>,
    pub archive: Option<Arc<dyn ArchiveAppend>>,
    /// The tables' catalog the writer keeps in step (aws, with `SPARKLAKE_GLUE_DATABASE`).
    pub catalog: Option<Arc<dyn TypeCatalog>>,
    /// How long a receive waits for a first message (SQS long polling; 0 locally).
    pub poll_wait: Duration,
    /// Numbers recorded since the reporter last took them.
    pub metrics: Arc<Mutex<Metrics>>,
    pub local: Option<LocalParts>,
}

impl Pipeline {
    /// The local backend, opened from one data folder.
    pub fn open(data: &Path, settings: Settings) -> Result<Self, QueueError> {
        let queues = LocalQueues::open(&data.join("queue.sqlite3"))?;
        let ingest = queues.queue(INGEST_QUEUE, settings.queue.clone());
        // The size limit refuses new work only: fanout must always be able to move it on.
        let internal = QueueConfig {
            max_database_bytes: None,
            ..settings.queue.clone()
        };
        let events = queues.queue(EVENTS_QUEUE, internal.clone());
        let routes = settings
            .routes
            .iter()
            .map(|(name, types)| {
                let queue = queues.queue(&format!("route-{name}"), internal.clone());
                (
                    name.clone(),
                    types.clone(),
                    Arc::new(queue) as Arc<dyn QueueSend>,
                )
            })
            .collect();
        Ok(Self {
            ingest_queue: Arc::new(ingest.clone()),
            events_queue: Arc::new(events.clone()),
            routes,
            store: Arc::new(
                FsStore::new(data)
                    .with_faults(queues.storage_faults())
                    .with_max_partition_value_bytes(settings.partition_value_max_bytes),
            ),
            archive: settings.archive.then(|| {
                Arc::new(FsArchive::new(data).with_faults(queues.storage_faults()))
                    as Arc<dyn ArchiveAppend>
            }),
            catalog: None,
            poll_wait: Duration::ZERO,
            metrics: Arc::default(),
            local: Some(LocalParts {
                data: data.to_owned(),
                ingest,
                events,
            }),
            settings,
        })
    }

    /// The AWS backend: SQS queues, an S3 bucket, and a Firehose stream when one is named.
    pub fn aws(
        settings: Settings,
        aws: &AwsSettings,
        sdk: &aws_config::SdkConfig,
        poll_wait: Duration,
    ) -> Result<Self, SettingsError> {
        let sqs = sparklake_aws::sqs_client(sdk);
        let queue = |url: &str, name: &str| {
            SqsQueue::new(sqs.clone(), url)
                .with_max_message_bytes(aws.max_message_bytes)
                .with_compression(aws.compress)
                .with_name(name)
                .with_visibility_timeout(settings.queue.visibility_timeout)
        };
        let ingest = queue(
            AwsSettings::require(&aws.ingest_queue_url, "SPARKLAKE_INGEST_QUEUE_URL")?,
            INGEST_QUEUE,
        );
        let events = queue(
            AwsSettings::require(&aws.writer_queue_url, "SPARKLAKE_WRITER_QUEUE_URL")?,
            EVENTS_QUEUE,
        );
        let routes = aws
            .routes
            .iter()
            .map(|r| {
                let q = queue(&r.queue_url, &r.name);
                (
                    r.name.clone(),
                    r.event_types.clone(),
                    Arc::new(q) as Arc<dyn QueueSend>,
                )
            })
            .collect();
        let bucket = AwsSettings::require(&aws.bucket, "SPARKLAKE_BUCKET")?;
        let store = S3Store::new(
            sparklake_aws::s3_client(sdk, aws),
            bucket,
            &aws.prefix,
            aws.encryption.clone(),
        )
        .with_max_partition_value_bytes(settings.partition_value_max_bytes);
        let archive = aws
            .archive_stream
            .as_ref()
            .filter(|_| settings.archive)
            .map(|stream| {
                Arc::new(FirehoseArchive::new(
                    sparklake_aws::firehose_client(sdk),
                    stream,
                )) as Arc<dyn ArchiveAppend>
            });
        Ok(Self {
            ingest_queue: Arc::new(ingest),
            events_queue: Arc::new(events),
            routes,
            store: Arc::new(store),
            archive,
            catalog: sparklake_aws::glue_projection(sdk, aws)
                .map(|c| Arc::new(c) as Arc<dyn TypeCatalog>),
            poll_wait: poll_wait.min(Duration::from_secs(20)),
            metrics: Arc::default(),
            local: None,
            settings,
        })
    }

    /// Adds a call's numbers to the totals.
    pub fn record(&self, metrics: &Metrics) {
        // A poisoned lock only means a panic elsewhere mid-merge; the numbers are still usable.
        let mut totals = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        totals.merge(metrics);
    }

    /// The numbers recorded since the last call, which starts a new interval (with the AWS
    /// SDK's retries of the interval).
    pub fn take_metrics(&self) -> Metrics {
        let mut metrics =
            std::mem::take(&mut *self.metrics.lock().unwrap_or_else(|p| p.into_inner()));
        metrics.retries += sparklake_aws::observe::take_retries();
        metrics
    }

    /// The ingest handler over this pipeline's queue and quarantine.
    pub fn ingest<'a>(&'a self, config: &'a IngestConfig) -> Ingest<'a> {
        Ingest {
            config,
            queue: self.ingest_queue.as_ref(),
            quarantine: self.store.as_ref(),
        }
    }

    /// After a crash, in-flight messages would wait out their visibility timeout; the local
    /// process is their only consumer, so make them visible at once.
    pub async fn recover(&self) -> Result<usize, PortError> {
        Ok(self.ingest_queue.recover().await? + self.events_queue.recover().await?)
    }

    /// One fanout pass over up to a batch of messages; returns how many were received.
    pub async fn fanout_once(&self, wait: Duration) -> Result<usize, PortError> {
        let queue = self.ingest_queue.as_ref();
        let received = queue.receive(self.settings.fanout_batch_size, wait).await?;
        if received.is_empty() {
            return Ok(0);
        }
        let routes: Vec<Route<'_>> = self
            .routes
            .iter()
            .map(|(name, types, queue)| Route {
                name: name.clone(),
                event_types: types.clone(),
                queue: queue.as_ref(),
            })
            .collect();
        let handler = Fanout {
            events: self.events_queue.as_ref(),
            routes: &routes,
            archive: self.archive.as_deref(),
        };
        let messages: Vec<InboundMessage> = received.iter().map(|r| r.message.clone()).collect();
        let outcome = with_heartbeat(queue, &received, handler.handle(&messages)).await;
        // Fanout's events are the ingest numbers' second count; only its failures add here.
        self.record(&Metrics {
            failures: outcome.metrics.failures,
            ..Metrics::default()
        });
        settle(queue, &received, &outcome.failed).await?;
        Ok(received.len())
    }

    /// One writer pass: receives up to a batch, waiting at most the batching window to fill it
    /// (less if `stop` turns true meanwhile).
    pub async fn write_once(
        &self,
        encoder: &ParquetEncoder,
        window: Duration,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<usize, PortError> {
        let queue = self.events_queue.as_ref();
        let size = self.settings.writer_batch_size;
        let half_visibility = queue.visibility_timeout() / 2;
        let window = if half_visibility.is_zero() {
            window
        } else {
            window.min(half_visibility)
        };
        let deadline = tokio::time::Instant::now() + window;
        let mut received: Vec<Received> = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wait = if received.is_empty() {
                self.poll_wait.min(remaining)
            } else {
                Duration::ZERO
            };
            received.extend(queue.receive(size - received.len(), wait).await?);
            let stopping = stop.is_some_and(|s| *s.borrow());
            if received.len() >= size || stopping || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(
                POLL_INTERVAL.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
        }
        if received.is_empty() {
            return Ok(0);
        }
        let handler = Writer {
            store: self.store.as_ref(),
            parquet: encoder,
            timestamps: self.settings.output.timestamps,
            catalog: self.catalog.as_deref(),
        };
        let messages: Vec<InboundMessage> = received.iter().map(|r| r.message.clone()).collect();
        let outcome =
            with_heartbeat(queue, &received, handler.handle(&messages, now_millis())).await;
        // The writer's rows and objects; its events and batches were counted at ingest.
        self.record(&Metrics {
            failures: outcome.metrics.failures,
            rows_per_object: outcome.metrics.rows_per_object.clone(),
            oldest_event_millis: outcome.metrics.oldest_event_millis,
            projection_types_added: outcome.metrics.projection_types_added,
            unprojected_types: outcome.metrics.unprojected_types,
            ..Metrics::default()
        });
        settle(queue, &received, &outcome.failed).await?;
        Ok(received.len())
    }

    /// Runs fanout until `stop` turns true, then drains the ingest queue of visible messages.
    pub async fn run_fanout(&self, mut stop: watch::Receiver<bool>) {
        loop {
            let stopping = *stop.borrow();
            let wait = if stopping {
                Duration::ZERO
            } else {
                self.poll_wait
            };
            // A long poll is not abandoned on stop: it may already have taken messages, which
            // would then sit invisible until their timeout instead of being drained now.
            let pass = self.fanout_once(wait).await;
            match pass {
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
        let encoder = ParquetEncoder::new(self.settings.output.parquet_timestamp);
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
    pub async fn drain(&self) -> Result<(), PortError> {
        let encoder = ParquetEncoder::new(self.settings.output.parquet_timestamp);
        while self.fanout_once(Duration::ZERO).await? > 0 {}
        while self.write_once(&encoder, Duration::ZERO, None).await? > 0 {}
        Ok(())
    }
}

/// Between polls of an empty local queue.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

async fn idle(stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(POLL_INTERVAL) => {}
        _ = stop.changed() => {}
    }
}

/// Runs `work` while extending the received messages' visibility every half timeout, so a slow
/// batch is not redelivered to another worker while it is still being handled.
async fn with_heartbeat<T>(
    queue: &dyn QueueReceive,
    received: &[Received],
    work: impl Future<Output = T>,
) -> T {
    let period = queue.visibility_timeout() / 2;
    if period.is_zero() {
        return work.await;
    }
    let receipts: Vec<String> = received.iter().map(|r| r.receipt.clone()).collect();
    tokio::pin!(work);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                if let Err(e) = queue.extend(&receipts).await {
                    warn!(queue = queue.name(), error = %e, "could not extend visibility of a batch in flight");
                }
            }
        }
    }
}

/// Deletes the messages that succeeded; failed ones stay invisible until their visibility
/// timeout, then are redelivered (and dead-lettered after the maximum receives), as on SQS.
async fn settle(
    queue: &dyn QueueReceive,
    received: &[Received],
    failed: &[String],
) -> Result<(), PortError> {
    let done: Vec<String> = received
        .iter()
        .filter(|r| !failed.contains(&r.message.id))
        .map(|r| r.receipt.clone())
        .collect();
    if done.is_empty() {
        return Ok(());
    }
    queue.delete(&done).await
}
