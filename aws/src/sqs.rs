//! An SQS queue as the handlers' [`QueueSend`], and the consumer side the `serve --backend aws`
//! workers and `redrive` use.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use sparklake_core::message::{InboundMessage, OutboundMessage};
use sparklake_core::ports::{PortError, QueueSend};
use tracing::warn;

pub use crate::codec::to_inbound;
use crate::codec::{self, CONTENT_ENCODING};
use crate::retry::{ATTEMPTS, backoff};

/// SQS's limits: entries per batch call, and bytes per message and per call.
pub const MAX_BATCH_ENTRIES: usize = 10;
pub const MAX_PAYLOAD_BYTES: usize = 1_048_576;
/// Room kept in each message for its attributes, which count toward the size limit.
const ATTRIBUTE_BUDGET: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    #[error("SQS {operation}: {message}")]
    Call {
        operation: &'static str,
        message: String,
    },
    #[error(
        "SQS {operation}: {count} entries still failed after {ATTEMPTS} attempts (first: {first})"
    )]
    Entries {
        operation: &'static str,
        count: usize,
        first: String,
    },
    #[error("a message body is {size} bytes, more than the {max} this queue takes")]
    TooLarge { size: usize, max: usize },
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

impl From<SqsError> for PortError {
    fn from(e: SqsError) -> Self {
        PortError::new("sqs", e)
    }
}

fn call_error<E: std::error::Error>(operation: &'static str, e: E) -> SqsError {
    SqsError::Call {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

/// A message encoded for a batch call, with the bytes SQS counts for it.
struct Pending {
    body: String,
    attributes: HashMap<String, MessageAttributeValue>,
    size: usize,
}

/// A received message and the receipt that deletes it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: InboundMessage,
    pub receipt: String,
}

/// One SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    max_message_bytes: usize,
    compress: bool,
}

impl SqsQueue {
    /// A queue with SQS's 1 MiB message limit and compression on.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
            max_message_bytes: MAX_PAYLOAD_BYTES,
            compress: true,
        }
    }

    /// Caps messages below the queue's own maximum (for a queue configured smaller than 1 MiB).
    pub fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max.min(MAX_PAYLOAD_BYTES);
        self
    }

    pub fn with_compression(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    pub fn compresses(&self) -> bool {
        self.compress
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends messages with `SendMessageBatch`, packed to 10 entries and 1 MiB a call; entries
    /// that come back `Failed` are retried with backoff.
    pub async fn send_messages(&self, messages: &[OutboundMessage]) -> Result<(), SqsError> {
        let mut call: Vec<Pending> = Vec::new();
        let mut call_bytes = 0;
        for message in messages {
            let pending = self.pending(message)?;
            if call.len() == MAX_BATCH_ENTRIES || call_bytes + pending.size > MAX_PAYLOAD_BYTES {
                self.send_call(std::mem::take(&mut call)).await?;
                call_bytes = 0;
            }
            call_bytes += pending.size;
            call.push(pending);
        }
        if !call.is_empty() {
            self.send_call(call).await?;
        }
        Ok(())
    }

    fn pending(&self, message: &OutboundMessage) -> Result<Pending, SqsError> {
        let encoded = codec::encode(&message.body, self.compress)?;
        let mut attributes: HashMap<String, MessageAttributeValue> = HashMap::new();
        let mut size = encoded.text.len();
        let pairs = message
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(encoded.encoding.map(|e| (CONTENT_ENCODING, e)));
        for (name, value) in pairs {
            size += name.len() + value.len() + "String".len();
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| call_error("SendMessageBatch", e))?;
            attributes.insert(name.to_owned(), value);
        }
        if size > self.max_message_bytes {
            return Err(SqsError::TooLarge {
                size,
                max: self.max_message_bytes,
            });
        }
        Ok(Pending {
            body: encoded.text,
            attributes,
            size,
        })
    }

    async fn send_call(&self, call: Vec<Pending>) -> Result<(), SqsError> {
        // Ids are positions in the call, kept across retries.
        let mut remaining: Vec<usize> = (0..call.len()).collect();
        for attempt in 0..ATTEMPTS {
            let entries = remaining
                .iter()
                .map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(call[i].body.clone())
                        .set_message_attributes(
                            (!call[i].attributes.is_empty()).then(|| call[i].attributes.clone()),
                        )
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| call_error("SendMessageBatch", e))?;
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| call_error("SendMessageBatch", e))?;
            let failed = output.failed();
            let Some(first) = failed.first() else {
                return Ok(());
            };
            if failed.iter().any(|f| f.sender_fault()) || attempt + 1 == ATTEMPTS {
                return Err(SqsError::Entries {
                    operation: "SendMessageBatch",
                    count: failed.len(),
                    first: format!("{}: {}", first.code(), first.message().unwrap_or("")),
                });
            }
            warn!(
                failed = failed.len(),
                attempt, "SendMessageBatch entries failed; retrying"
            );
            remaining = failed.iter().filter_map(|f| f.id().parse().ok()).collect();
            tokio::time::sleep(backoff(attempt)).await;
        }
        Ok(())
    }

    /// Receives up to 10 messages, long-polling for up to `wait`.
    pub async fn receive(
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
    pub async fn delete(&self, receipts: &[String]) -> Result<(), SqsError> {
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
impl QueueSend for SqsQueue {
    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.saturating_sub(ATTRIBUTE_BUDGET)
    }

    async fn send(&self, messages: Vec<OutboundMessage>) -> Result<(), PortError> {
        Ok(self.send_messages(&messages).await?)
    }
}
