//! The consumer side of an SQS queue: receive with long polling, delete and extend by receipt,
//! depth, and the [`QueueReceive`] port the workers poll (re-drive: [`crate::redrive`]).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName,
};
use sparklake_core::ports::{PortError, QueueCounts, QueueReceive, Received};

use super::{MAX_BATCH_ENTRIES, SqsError, SqsQueue, call_error};
use crate::codec::{CONTENT_ENCODING, to_inbound};
use crate::retry::{ATTEMPTS, backoff};

impl SqsQueue {
    /// Receives up to 10 messages, long-polling for up to `wait`.
    pub async fn receive_batch(
        &self,
        max: usize,
        wait: Duration,
        visibility: Option<Duration>,
    ) -> Result<Vec<Received>, SqsError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH_ENTRIES) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .set_visibility_timeout(visibility.map(|v| v.as_secs().min(43_200) as i32))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| call_error("ReceiveMessage", e))?;
        Ok(output.messages().iter().filter_map(to_received).collect())
    }

    /// Deletes by receipt, 10 a call; failed entries are retried with backoff.
    pub async fn delete_batch(&self, receipts: &[String]) -> Result<(), SqsError> {
        for chunk in receipts.chunks(MAX_BATCH_ENTRIES) {
            let mut pending: Vec<(String, &String)> = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| (i.to_string(), r))
                .collect();
            for attempt in 0..ATTEMPTS {
                let entries = pending
                    .iter()
                    .map(|(id, r)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(id)
                            .receipt_handle(r.as_str())
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| call_error("DeleteMessageBatch", e))?;
                let output = self
                    .client
                    .delete_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| call_error("DeleteMessageBatch", e))?;
                let failed: Vec<&str> = output.failed().iter().map(|f| f.id()).collect();
                let Some(first) = output.failed().first() else {
                    break;
                };
                if attempt + 1 == ATTEMPTS {
                    return Err(SqsError::Entries {
                        operation: "DeleteMessageBatch",
                        count: failed.len(),
                        first: first.code().to_owned(),
                    });
                }
                pending.retain(|(id, _)| failed.contains(&id.as_str()));
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        Ok(())
    }

    /// Sets the visibility timeout of received messages (extends a batch still being worked on,
    /// or 0 to hand messages back at once).
    pub async fn change_visibility(
        &self,
        receipts: &[String],
        timeout: Duration,
    ) -> Result<(), SqsError> {
        for chunk in receipts.chunks(MAX_BATCH_ENTRIES) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(timeout.as_secs().min(43_200) as i32)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| call_error("ChangeMessageVisibilityBatch", e))?;
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| call_error("ChangeMessageVisibilityBatch", e))?;
        }
        Ok(())
    }

    /// Named queue attributes, as strings.
    pub async fn attributes(
        &self,
        names: &[QueueAttributeName],
    ) -> Result<HashMap<QueueAttributeName, String>, SqsError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| call_error("GetQueueAttributes", e))?;
        Ok(output.attributes().cloned().unwrap_or_default())
    }

    /// (visible, in flight), approximately, as SQS counts them.
    pub async fn depth(&self) -> Result<(u64, u64), SqsError> {
        let a = self
            .attributes(&[
                QueueAttributeName::ApproximateNumberOfMessages,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            ])
            .await?;
        let count = |n: &QueueAttributeName| a.get(n).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok((
            count(&QueueAttributeName::ApproximateNumberOfMessages),
            count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }
}

fn to_received(message: &Message) -> Option<Received> {
    let (Some(id), Some(receipt)) = (message.message_id(), message.receipt_handle()) else {
        return None;
    };
    let attributes = message.message_attributes().cloned().unwrap_or_default();
    let encoding = attributes
        .get(CONTENT_ENCODING)
        .and_then(|v| v.string_value());
    let receive_count = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let strings = attributes
        .iter()
        .filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_owned())));
    Some(Received {
        message: to_inbound(
            id,
            message.body().unwrap_or(""),
            encoding,
            strings,
            receive_count,
        ),
        receipt: receipt.to_owned(),
    })
}

#[async_trait]
impl QueueReceive for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, PortError> {
        Ok(self
            .receive_batch(max, wait, Some(self.visibility_timeout))
            .await?)
    }

    async fn delete(&self, receipts: &[String]) -> Result<(), PortError> {
        Ok(self.delete_batch(receipts).await?)
    }

    async fn extend(&self, receipts: &[String]) -> Result<(), PortError> {
        Ok(self
            .change_visibility(receipts, self.visibility_timeout)
            .await?)
    }

    fn visibility_timeout(&self) -> Duration {
        self.visibility_timeout
    }

    async fn counts(&self) -> Result<QueueCounts, PortError> {
        let (visible, in_flight) = self.depth().await?;
        let dead = match crate::redrive::dead_letter_queue(self).await? {
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
        Ok(crate::redrive::redrive(self, self.redrive_rate, progress).await?)
    }
}
