//! The consumer side of a queue, as the workers use it: one trait over the local SQLite queue
//! and SQS, so `serve` runs the same loop on either backend.

use std::time::Duration;

use async_trait::async_trait;
use sparklake_aws::sqs::SqsQueue;
use sparklake_core::message::OutboundMessage;
use sparklake_core::ports::{PortError, QueueSend};

use crate::queue::{LocalQueue, QueueCounts, Received};

/// A queue the workers receive from, settle, and re-drive.
#[async_trait]
pub trait WorkQueue: QueueSend {
    fn name(&self) -> &str;

    /// Up to `max` messages, waiting up to `wait` for the first (SQS long polling).
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, PortError>;

    /// Deletes messages that were handled.
    async fn delete(&self, receipts: &[String]) -> Result<(), PortError>;

    /// Keeps messages still being worked on invisible for another visibility timeout.
    async fn extend(&self, receipts: &[String]) -> Result<(), PortError>;

    /// The visibility timeout received messages get.
    fn visibility_timeout(&self) -> Duration;

    /// Depth by state.
    async fn counts(&self) -> Result<QueueCounts, PortError>;

    /// After a crash of the only consumer, makes in-flight messages visible at once (local only).
    async fn recover(&self) -> Result<usize, PortError> {
        Ok(0)
    }

    /// Moves dead-lettered messages back; reports progress lines through `progress`.
    async fn redrive(&self, progress: &(dyn Fn(String) + Sync)) -> Result<usize, PortError>;
}

#[async_trait]
impl WorkQueue for LocalQueue {
    fn name(&self) -> &str {
        LocalQueue::name(self)
    }

    async fn receive(&self, max: usize, _wait: Duration) -> Result<Vec<Received>, PortError> {
        Ok(LocalQueue::receive(self, max).await?)
    }

    async fn delete(&self, receipts: &[String]) -> Result<(), PortError> {
        Ok(LocalQueue::delete(self, receipts).await?)
    }

    async fn extend(&self, receipts: &[String]) -> Result<(), PortError> {
        let timeout = self.config().visibility_timeout;
        for receipt in receipts {
            self.change_visibility(receipt, timeout).await?;
        }
        Ok(())
    }

    fn visibility_timeout(&self) -> Duration {
        self.config().visibility_timeout
    }

    async fn counts(&self) -> Result<QueueCounts, PortError> {
        Ok(LocalQueue::counts(self).await?)
    }

    async fn recover(&self) -> Result<usize, PortError> {
        Ok(self.release_in_flight().await?)
    }

    async fn redrive(&self, progress: &(dyn Fn(String) + Sync)) -> Result<usize, PortError> {
        let moved = LocalQueue::redrive(self).await?;
        progress(format!(
            "{}: moved {moved} message(s) from {} back",
            self.name(),
            self.dead_letter_name()
        ));
        Ok(moved)
    }
}

/// An SQS queue with the visibility timeout its workers use and its name for reports.
#[derive(Debug, Clone)]
pub struct SqsWorkQueue {
    pub queue: SqsQueue,
    pub name: String,
    pub visibility_timeout: Duration,
    /// Messages a second the fallback re-drive moves at most.
    pub redrive_rate: u32,
}

#[async_trait]
impl QueueSend for SqsWorkQueue {
    fn max_message_bytes(&self) -> usize {
        self.queue.max_message_bytes()
    }

    async fn send(&self, messages: Vec<OutboundMessage>) -> Result<(), PortError> {
        self.queue.send(messages).await
    }
}

#[async_trait]
impl WorkQueue for SqsWorkQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, PortError> {
        let received = self
            .queue
            .receive(max, wait, Some(self.visibility_timeout))
            .await?;
        Ok(received
            .into_iter()
            .map(|r| Received {
                message: r.message,
                receipt: r.receipt,
            })
            .collect())
    }

    async fn delete(&self, receipts: &[String]) -> Result<(), PortError> {
        Ok(self.queue.delete(receipts).await?)
    }

    async fn extend(&self, receipts: &[String]) -> Result<(), PortError> {
        Ok(self
            .queue
            .change_visibility(receipts, self.visibility_timeout)
            .await?)
    }

    fn visibility_timeout(&self) -> Duration {
        self.visibility_timeout
    }

    async fn counts(&self) -> Result<QueueCounts, PortError> {
        let (visible, in_flight) = self.queue.depth().await?;
        let dead = match sparklake_aws::redrive::dead_letter_queue(&self.queue).await? {
            Some(dlq) => dlq.depth().await?.0,
            None => 0,
        };
        Ok(QueueCounts {
            visible,
            in_flight,
            dead,
        })
    }

    async fn redrive(&self, progress: &(dyn Fn(String) + Sync)) -> Result<usize, PortError> {
        Ok(sparklake_aws::redrive::redrive(&self.queue, self.redrive_rate, progress).await?)
    }
}
