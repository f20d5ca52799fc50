//! What travels on the queues between ingest, fanout and writer.
//!
//! Every message body is a JSON array of SparkPost elements, exactly the shape SparkPost posts,
//! so each stage reads its input with the same [`crate::envelope`] code. Context that is not part
//! of the payload travels as string attributes (SQS message attributes on AWS, a column locally).

use std::collections::BTreeMap;

use bytes::Bytes;

/// Message attributes: names are SQS-safe (alphanumerics, `_`, `-`, `.`).
pub type Attributes = BTreeMap<String, String>;

/// Attribute names used on the pipeline's queues.
pub mod attr {
    /// SparkPost's `X-MessageSystems-Batch-ID` header, when the batch had one.
    pub const BATCH_ID: &str = "batch_id";
    /// When ingest accepted the batch: unix milliseconds, decimal.
    pub const RECEIVED_AT: &str = "received_at";
    /// On fanout's output: the one event type every element of the message has.
    pub const EVENT_TYPE: &str = "event_type";
    /// When a batch was split: `"<part>/<parts>"`, 1-based.
    pub const PART: &str = "part";
}

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub body: Bytes,
    pub attributes: Attributes,
}

impl OutboundMessage {
    /// The message as a queue delivers it the first time, under `id`.
    pub fn delivered(self, id: String) -> InboundMessage {
        InboundMessage {
            id,
            body: self.body,
            attributes: self.attributes,
            receive_count: 1,
        }
    }
}

/// A message received from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The queue's id for the message: stable across redeliveries (SQS `MessageId`).
    pub id: String,
    pub body: Bytes,
    pub attributes: Attributes,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

impl InboundMessage {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    /// The receive time ingest stamped on the batch, if present and readable.
    pub fn received_at_millis(&self) -> Option<i64> {
        self.attribute(attr::RECEIVED_AT)?.parse().ok()
    }
}
