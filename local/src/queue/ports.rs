//! The local queue as the handlers' [`QueueSend`] and the workers' [`QueueReceive`].

use std::time::Duration;

use async_trait::async_trait;
use sparklake_core::message::OutboundMessage;
use sparklake_core::ports::{PortError, QueueCounts, QueueReceive, QueueSend, Received};

use super::LocalQueue;

#[async_trait]
impl QueueSend for LocalQueue {
    fn max_message_bytes(&self) -> usize {
        self.config.max_message_bytes
    }

    async fn send(&self, messages: Vec<OutboundMessage>) -> Result<(), PortError> {
        self.send_messages(messages).await.map_err(PortError::from)
    }
}

#[async_trait]
impl QueueReceive for LocalQueue {
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
        let timeout = self.config.visibility_timeout;
        for receipt in receipts {
            self.change_visibility(receipt, timeout).await?;
        }
        Ok(())
    }

    fn visibility_timeout(&self) -> Duration {
        self.config.visibility_timeout
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
