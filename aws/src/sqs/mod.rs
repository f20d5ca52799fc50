//! An SQS queue as the handlers' [`QueueSend`] (here) and as the workers' [`QueueReceive`]
//! ([`receive`]: what `serve --backend aws` and `redrive` use).
//!
//! [`QueueReceive`]: sparklake_core::ports::QueueReceive

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use sparklake_core::message::OutboundMessage;
use sparklake_core::ports::{PortError, QueueSend};
use tracing::warn;

pub use crate::codec::to_inbound;
use crate::codec::{self, CONTENT_ENCODING};
use crate::retry::{ATTEMPTS, backoff};

pub mod receive;

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

pub(crate) fn call_error<E: std::error::Error>(operation: &'static str, e: E) -> SqsError {
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

/// One SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    max_message_bytes: usize,
    compress: bool,
    /// Its name in logs and reports (default: the last segment of the URL).
    name: String,
    /// The visibility timeout its messages get when received (default 30 s).
    visibility_timeout: Duration,
    /// Messages a second the fallback re-drive moves at most (default 50).
    redrive_rate: u32,
}

impl SqsQueue {
    /// A queue with SQS's 1 MiB message limit and compression on.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        let url = url.into();
        Self {
            client,
            name: url.rsplit('/').next().unwrap_or_default().to_owned(),
            url,
            max_message_bytes: MAX_PAYLOAD_BYTES,
            compress: true,
            visibility_timeout: Duration::from_secs(30),
            redrive_rate: 50,
        }
    }

    /// Names the queue in logs and reports.
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// The visibility timeout received messages get.
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// At most this many messages a second in the fallback re-drive.
    pub fn with_redrive_rate(mut self, per_second: u32) -> Self {
        self.redrive_rate = per_second.max(1);
        self
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
