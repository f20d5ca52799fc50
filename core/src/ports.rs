//! The capabilities the handlers need from the outside world, one small trait each.
//!
//! Each has an AWS implementation (SQS, S3, Firehose, Glue) and, where the local pipeline needs
//! one, a local one (an embedded durable queue, a folder of files). Handlers take `&dyn Trait`
//! so the same function runs in both.

use async_trait::async_trait;
use bytes::Bytes;

use std::sync::Arc;
use std::time::Duration;

use crate::envelope::Outline;
use crate::message::{InboundMessage, OutboundMessage};

/// An infrastructure failure: worth retrying, never the caller's fault.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {source}")]
pub struct PortError {
    pub operation: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl PortError {
    pub fn new(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            operation,
            source: source.into(),
        }
    }
}

/// A queue to send to.
#[async_trait]
pub trait QueueSend: Send + Sync {
    /// The largest body one message may carry, in bytes.
    fn max_message_bytes(&self) -> usize;

    /// Enqueues every message durably; `Ok` only once all of them are stored.
    async fn send(&self, messages: Vec<OutboundMessage>) -> Result<(), PortError>;

    /// Whether this queue hands its receiver the outlines [`Self::send_outlined`] is given
    /// (a queue inside the process); a sender that would have to build them asks first.
    fn keeps_outlines(&self) -> bool {
        false
    }

    /// [`Self::send`], `outlines[i]` the outline of `messages[i]`'s body when the sender has
    /// validated it. Queues that do not [keep](Self::keeps_outlines) them drop them.
    async fn send_outlined(
        &self,
        messages: Vec<OutboundMessage>,
        outlines: Vec<Option<Arc<Outline>>>,
    ) -> Result<(), PortError> {
        let _ = outlines;
        self.send(messages).await
    }
}

/// A received message and the receipt handle that deletes it or changes its visibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message: InboundMessage,
    pub receipt: String,
}

/// How many messages a queue holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not yet deleted, invisible until their visibility timeout.
    pub in_flight: u64,
    /// In the dead-letter queue.
    pub dead: u64,
}

/// A queue to receive from: the consumer side the workers poll, settle and re-drive, as an SQS
/// event source mapping does (SQS on AWS, the embedded queue locally).
#[async_trait]
pub trait QueueReceive: QueueSend {
    /// The queue's name in logs and reports.
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

    /// After a crash of the only consumer, makes in-flight messages visible at once (a local
    /// queue; SQS has no such call, its messages come back after their timeout).
    async fn recover(&self) -> Result<usize, PortError> {
        Ok(0)
    }

    /// Moves dead-lettered messages back to this queue; reports progress through `progress`.
    async fn redrive(&self, progress: &(dyn Fn(String) + Sync)) -> Result<usize, PortError>;
}

/// How many objects [`ObjectPut::put_all`] stores at once by default.
pub const PUT_CONCURRENCY: usize = 8;

/// One object of [`ObjectPut::put_all`].
#[derive(Debug, Clone)]
pub struct PutObject {
    pub key: String,
    pub body: Bytes,
    pub content_type: &'static str,
}

/// An object store to put to. Keys are `/`-separated relative paths.
#[async_trait]
pub trait ObjectPut: Send + Sync {
    /// Stores `body` under `key`, replacing any object already there, atomically: a reader sees
    /// the old object or the whole new one, never a part.
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), PortError>;

    /// Stores every object, one result per object in their order; each object is stored or
    /// not as [`Self::put`] would. A store where many objects become durable together (a
    /// folder: one sync for all) overrides it; the default puts [`PUT_CONCURRENCY`] at a time
    /// (on S3 each PUT is a round trip).
    async fn put_all(&self, objects: Vec<PutObject>) -> Vec<Result<(), PortError>> {
        use futures_util::StreamExt as _;
        futures_util::stream::iter(objects)
            .map(|o| async move { self.put(&o.key, o.body, o.content_type).await })
            .buffered(PUT_CONCURRENCY)
            .collect()
            .await
    }

    /// The longest partition value (`event_type=<value>`) keys in this store carry; longer ones
    /// are shortened to a prefix and a hash ([`crate::partition::path_value`]). `None` (the
    /// default) keeps values whole, and a value too long for the store's paths (a folder's
    /// 255-byte names, S3's 1 024-byte keys) fails its write. Set from
    /// `SPARKLAKE_PARTITION_VALUE_MAX_BYTES`.
    fn max_partition_value_bytes(&self) -> Option<usize> {
        None
    }
}

/// An append-only archive of raw events (Firehose on AWS).
#[async_trait]
pub trait ArchiveAppend: Send + Sync {
    /// Appends each record (one NDJSON line, without its newline).
    async fn append(&self, records: Vec<Bytes>) -> Result<(), PortError>;

    /// Appends several messages' records, in order, all or (as far as the caller can tell)
    /// none: the default appends them as one; an archive that keeps each message's records
    /// apart (a folder: a file per message, so a retried message rewrites its own file)
    /// overrides it.
    async fn append_all(&self, batches: Vec<Vec<Bytes>>) -> Result<(), PortError> {
        self.append(batches.into_iter().flatten().collect()).await
    }
}

/// The catalog the lake's tables find partitions through (the Glue tables' `event_type`
/// projection on AWS; nothing locally, where DuckDB lists folders).
#[async_trait]
pub trait TypeCatalog: Send + Sync {
    /// Makes the tables project every partition value in `values` (event types as their
    /// folders name them). `Ok` once each is projected or cannot be (see
    /// [`Projection::unprojectable`]); `Err` when the catalog could not be read or updated, and
    /// the rows are not yet visible.
    async fn ensure_projected(&self, values: &[String]) -> Result<Projection, PortError>;
}

/// What [`TypeCatalog::ensure_projected`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    /// Values it added.
    pub added: Vec<String>,
    /// Values no projection can hold (a `,` in an enum value, the table's cap on values
    /// reached): their rows are stored but not visible through the tables.
    pub unprojectable: Vec<String>,
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Relative to the store's root (or prefix).
    pub key: String,
    pub size: u64,
    /// Last modified, UTC milliseconds.
    pub modified_millis: i64,
}

/// The lake's objects as the compactor reads and rewrites them: listing, reading, storing from
/// a file, deleting, and a lease per partition.
#[async_trait]
pub trait LakeStore: ObjectPut {
    /// Every object whose key starts with `prefix` (a folder ending in `/`), in any order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, PortError>;

    /// The object as a file to read from (locally the file itself, on S3 a download into
    /// [`Self::scratch_dir`], removed when closed); `None` when there is no such object.
    async fn open(&self, key: &str) -> Result<Option<std::fs::File>, PortError>;

    /// Stores the content of the file at `path` under `key` as [`ObjectPut::put`] does
    /// (atomically, durably), streaming it; the file may be moved in the process.
    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        content_type: &str,
    ) -> Result<(), PortError>;

    /// Deletes the objects; one already gone is no error.
    async fn delete(&self, keys: &[String]) -> Result<(), PortError>;

    /// A folder on this machine for temporary files (locally on the data folder's file system,
    /// so that [`Self::put_file`] can rename; on Lambda, `/tmp`).
    fn scratch_dir(&self) -> std::path::PathBuf;

    /// Takes the lease `name` for `ttl`: `None` while a live holder has it. A holder that died
    /// lets it go at once locally (the lock dies with its process) and after `ttl` on S3.
    async fn lease(&self, name: &str, ttl: Duration) -> Result<Option<Box<dyn Lease>>, PortError>;
}

/// A lease held, with the journal its holder keeps under it.
#[async_trait]
pub trait Lease: Send + Sync {
    /// The journal a holder that died or gave up left behind (empty: none).
    fn left_behind(&self) -> Option<&[u8]>;

    /// Records `journal` durably and renews the lease; `Err` if the lease was lost meanwhile
    /// (the holder must then stop before deleting anything).
    async fn record(&mut self, journal: &[u8]) -> Result<(), PortError>;

    /// Ends the lease and its journal.
    async fn release(self: Box<Self>) -> Result<(), PortError>;

    /// Ends the lease but keeps its journal for the next holder (after a failure).
    async fn abandon(self: Box<Self>) -> Result<(), PortError>;
}
