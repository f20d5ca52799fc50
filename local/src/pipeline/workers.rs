//! The fanout and writer workers: each polls its queue the way an SQS event source mapping does
//! (a batch size and a batching window), keeps a batch invisible while it is being worked on,
//! deletes what succeeded and leaves failures to be redelivered after the visibility timeout,
//! then dead-lettered.

use std::future::Future;
use std::time::Duration;

use fanout::{Fanout, Route};
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::message::InboundMessage;
use sparklake_core::metrics::Metrics;
use sparklake_core::ports::{PortError, QueueReceive, Received};
use tokio::sync::watch;
use tracing::{error, info, warn};
use writer::Writer;

use super::{Pipeline, now_millis};

impl Pipeline {
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
    pub async fn run_fanout(&self, stop: watch::Receiver<bool>) {
        self.until_drained(Stage::Fanout, stop).await;
    }

    /// Runs the writer until `stop` turns true, then drains the events queue of visible
    /// messages (call after fanout has drained, so its output is included).
    pub async fn run_writer(&self, stop: watch::Receiver<bool>) {
        let encoder = ParquetEncoder::new(self.settings.output.parquet_timestamp);
        self.until_drained(Stage::Writer(&encoder), stop).await;
    }

    /// Runs passes of `stage` until a stop was asked and a pass found nothing left; a failed
    /// pass is logged and retried after a pause.
    async fn until_drained(&self, stage: Stage<'_>, mut stop: watch::Receiver<bool>) {
        let worker = stage.name();
        loop {
            let stopping = *stop.borrow();
            // A long poll is not abandoned on stop: it may already have taken messages, which
            // would then sit invisible until their timeout instead of being drained now.
            let pass = match stage {
                Stage::Fanout => {
                    let wait = if stopping {
                        Duration::ZERO
                    } else {
                        self.poll_wait
                    };
                    self.fanout_once(wait).await
                }
                Stage::Writer(encoder) => {
                    let window = if stopping {
                        Duration::ZERO
                    } else {
                        self.settings.writer_window
                    };
                    self.write_once(encoder, window, Some(&stop)).await
                }
            };
            match pass {
                Ok(0) if stopping => break,
                Ok(0) => idle(&mut stop).await,
                Ok(_) => {}
                Err(e) => {
                    error!(worker, error = %e, "{worker} poll failed");
                    idle(&mut stop).await;
                }
            }
        }
        info!(worker, "{worker} worker drained");
    }

    /// Processes everything visible now in both queues, without waiting for batching windows.
    pub async fn drain(&self) -> Result<(), PortError> {
        let encoder = ParquetEncoder::new(self.settings.output.parquet_timestamp);
        while self.fanout_once(Duration::ZERO).await? > 0 {}
        while self.write_once(&encoder, Duration::ZERO, None).await? > 0 {}
        Ok(())
    }
}

/// A worker's stage.
#[derive(Clone, Copy)]
enum Stage<'e> {
    Fanout,
    Writer(&'e ParquetEncoder),
}

impl Stage<'_> {
    fn name(self) -> &'static str {
        match self {
            Stage::Fanout => "fanout",
            Stage::Writer(_) => "writer",
        }
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
