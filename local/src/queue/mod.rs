//! An embedded durable queue on SQLite with SQS semantics.
//!
//! All queues live in one SQLite database file ([`LocalQueues`]), one table, one row per message.
//! A queue named `name` has its dead-letter queue stored as the queue named `"{name}-dlq"`.
//!
//! Semantics follow SQS standard queues, made stricter where that is free:
//!
//! - [`QueueSend::send`] stores a whole batch in one transaction, durably (WAL journal,
//!   `synchronous=FULL`): once it returns `Ok`, the messages survive a kill -9 or a power loss.
//! - [`LocalQueue::receive`] hands out visible messages in the order they were sent, makes them
//!   invisible for the visibility timeout and gives each a fresh receipt handle.
//! - [`LocalQueue::delete`] and [`LocalQueue::change_visibility`] act by receipt; a stale receipt
//!   (the message was received again since) is a no-op.
//! - A message received `max_receives` times without being deleted is moved to the dead-letter
//!   queue when it would be received once more, instead of being delivered; except while the
//!   data folder is refusing writes ([`StorageFaults`]): a full or read-only disk is not the
//!   message's fault, so it is delivered again and retried until the storage is back.
//!
//! Time is wall-clock milliseconds, clamped so it never goes backwards within a process.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use sha2::{Digest, Sha256};
use sparklake_core::message::{InboundMessage, OutboundMessage};
use sparklake_core::ports::{QueueCounts, Received};
use tracing::warn;

use crate::store::StorageFaults;
use dead_letter::DeadLetterPolicy;
use sql::Ctx;

pub use error::QueueError;
use error::sql_error;

mod dead_letter;
mod error;
mod ports;
mod sql;

/// How long a connection waits for a lock held by another connection to the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// How long a received message stays invisible to other receives.
    pub visibility_timeout: Duration,
    /// How many receives a message gets before it is moved to the dead-letter queue. `0` is
    /// treated as `1`.
    pub max_receives: u32,
    /// The largest body one message may carry, in bytes.
    pub max_message_bytes: usize,
    /// Sends to this queue are refused ([`QueueError::Full`]) while the whole database holds
    /// at least this many bytes (pages in use, every queue): a bound on the disk the backlog
    /// takes, for the queue new work enters by. The database can exceed it by one send.
    pub max_database_bytes: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receives: 5,
            max_message_bytes: 1_048_576,
            max_database_bytes: None,
        }
    }
}

/// Messages this process moved to a dead-letter queue (the `dead_lettered` metric), as the AWS
/// SDK's retries are counted: once per process, whatever the queue.
static DEAD_LETTERED: AtomicU64 = AtomicU64::new(0);

/// The messages dead-lettered since the last call.
pub fn take_dead_lettered() -> u64 {
    DEAD_LETTERED.swap(0, Ordering::Relaxed)
}

struct Shared {
    conn: Mutex<Connection>,
    /// The latest time handed out, so that time never goes backwards within the process.
    last_now: AtomicU64,
    /// Writes the data folder refused, as the store and archive saw them.
    faults: StorageFaults,
}

impl Shared {
    /// Wall-clock unix milliseconds, never less than a value returned before.
    fn now_millis(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
            .min(i64::MAX as u64 / 2);
        let previous = self.last_now.fetch_max(wall, Ordering::SeqCst);
        let now = previous.max(wall);
        i64::try_from(now).unwrap_or(i64::MAX / 2)
    }
}

/// All local queues: one SQLite database file. Cheap to clone.
#[derive(Clone)]
pub struct LocalQueues {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueues").finish_non_exhaustive()
    }
}

impl LocalQueues {
    /// Opens (creating if needed) the database at `path` and its schema.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| QueueError::CreateDir {
                path: path.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(sql_error("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql_error("set busy_timeout"))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(sql_error("set journal_mode=WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql_error("set synchronous=FULL"))?;
        conn.execute_batch(sql::SCHEMA)
            .map_err(sql_error("create schema"))?;
        Ok(Self {
            shared: Arc::new(Shared {
                conn: Mutex::new(conn),
                last_now: AtomicU64::new(0),
                faults: StorageFaults::default(),
            }),
        })
    }

    /// The storage faults receives consult before dead-lettering: give the same to the store
    /// and archive of this data folder ([`crate::store::FsStore::with_faults`]).
    pub fn storage_faults(&self) -> StorageFaults {
        self.shared.faults.clone()
    }

    /// The queue `name` (and its dead-letter queue `"{name}-dlq"`) with `config`.
    pub fn queue(&self, name: &str, config: QueueConfig) -> LocalQueue {
        LocalQueue {
            shared: self.shared.clone(),
            name: Arc::from(name),
            dlq: Arc::from(format!("{name}-dlq")),
            config,
        }
    }
}

/// One queue of a [`LocalQueues`] database. Cheap to clone.
#[derive(Clone)]
pub struct LocalQueue {
    shared: Arc<Shared>,
    name: Arc<str>,
    dlq: Arc<str>,
    config: QueueConfig,
}

impl std::fmt::Debug for LocalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueue")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LocalQueue {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of this queue's dead-letter queue.
    pub fn dead_letter_name(&self) -> &str {
        &self.dlq
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Runs `job` on the connection in a blocking task.
    async fn run<T, F>(&self, job: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(Ctx<'_>) -> Result<T, QueueError> + Send + 'static,
    {
        let shared = self.shared.clone();
        let name = self.name.clone();
        let dlq = self.dlq.clone();
        tokio::task::spawn_blocking(move || {
            // A panic cannot leave a transaction open (it rolls back on drop), so a poisoned
            // lock still guards a consistent connection.
            let mut conn = shared.conn.lock().unwrap_or_else(PoisonError::into_inner);
            let now = shared.now_millis();
            let result = job(Ctx {
                conn: &mut conn,
                now,
                name: &name,
                dlq: &dlq,
            });
            if let Err(QueueError::Sqlite { source, .. }) = &result
                && is_storage_fault(source)
            {
                shared.faults.note();
            }
            result
        })
        .await
        .map_err(|source| QueueError::Task { source })?
    }

    /// Stores `messages` in one transaction, or none of them if any body is too large.
    pub async fn send_messages(&self, messages: Vec<OutboundMessage>) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let max = self.config.max_message_bytes;
        let mut rows = Vec::with_capacity(messages.len());
        for (index, message) in messages.into_iter().enumerate() {
            if message.body.len() > max {
                return Err(QueueError::TooLarge {
                    queue: self.name.to_string(),
                    index,
                    bytes: message.body.len(),
                    max,
                });
            }
            let attributes = serde_json::to_string(&message.attributes).map_err(|source| {
                QueueError::EncodeAttributes {
                    queue: self.name.to_string(),
                    source,
                }
            })?;
            rows.push((message.body, attributes));
        }
        let limit = self.config.max_database_bytes;
        self.run(move |ctx| sql::send(ctx, &rows, limit)).await
    }

    /// Receives up to `max` visible messages, oldest first, making them invisible for the
    /// visibility timeout. A message already received `max_receives` times is moved to the
    /// dead-letter queue instead of being delivered, unless the data folder refused a write
    /// recently (a storage fault): then it is delivered again, as its failure may have been the
    /// storage's ([`dead_letter`]).
    pub async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let policy = DeadLetterPolicy {
            max_receives: self.config.max_receives,
            visibility_timeout: self.config.visibility_timeout,
        };
        let visibility = duration_millis(self.config.visibility_timeout);
        let last_fault = self.shared.faults.last_millis();
        let receipt = self
            .run(move |ctx| {
                let outage = policy.in_storage_outage(last_fault, ctx.now);
                let visible_until = ctx.now.saturating_add(visibility);
                sql::receive(ctx, max, policy, outage, visible_until)
            })
            .await?;
        for (id, receives) in &receipt.dead_lettered {
            warn!(
                queue = %self.name,
                dead_letter_queue = %self.dlq,
                id = %id,
                receives,
                "moved a message to the dead-letter queue: it failed every receive; fix the cause, then `sparklake redrive`"
            );
        }
        DEAD_LETTERED.fetch_add(receipt.dead_lettered.len() as u64, Ordering::Relaxed);
        if receipt.spared > 0 {
            warn!(
                queue = %self.name,
                messages = receipt.spared,
                "the data folder refused writes recently: delivering messages past their maximum receives instead of dead-lettering them"
            );
        }
        Ok(receipt.received)
    }

    /// Deletes the messages these receipts were handed out with. A receipt whose message was
    /// received again since, or is already gone, is ignored.
    pub async fn delete(&self, receipts: &[String]) -> Result<(), QueueError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let receipts = receipts.to_vec();
        self.run(move |ctx| sql::delete(ctx, &receipts)).await
    }

    /// Makes the message this receipt was handed out with visible again after `timeout` from
    /// now (`Duration::ZERO`: right away). A stale receipt is ignored.
    pub async fn change_visibility(
        &self,
        receipt: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        let timeout = duration_millis(timeout);
        self.run(move |ctx| sql::change_visibility(ctx, &receipt, timeout))
            .await
    }

    /// Moves every message of the dead-letter queue back to this queue, visible now, with its
    /// receive count reset to 0. Returns how many were moved.
    pub async fn redrive(&self) -> Result<usize, QueueError> {
        self.run(sql::redrive).await
    }

    /// Makes every in-flight message of this queue visible now. For start-up after a crash, when
    /// nobody can still be working on them.
    pub async fn release_in_flight(&self) -> Result<usize, QueueError> {
        self.run(sql::release_in_flight).await
    }

    /// How many messages are visible, in flight, and in the dead-letter queue.
    pub async fn counts(&self) -> Result<QueueCounts, QueueError> {
        self.run(sql::counts).await
    }

    /// Up to `limit` messages of the dead-letter queue, oldest first, without changing them.
    /// `receive_count` is how many times each was received before it was dead-lettered.
    pub async fn peek_dead(&self, limit: usize) -> Result<Vec<InboundMessage>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |ctx| sql::peek_dead(ctx, limit)).await
    }
}

/// Whether SQLite failed because the machine refused it: the disk full, read-only, unwritable
/// or failing, or no descriptor or memory left (`CannotOpen`, `OutOfMemory`).
fn is_storage_fault(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{
        CannotOpen, DiskFull, OutOfMemory, PermissionDenied, ReadOnly, SystemIoFailure,
    };
    matches!(
        error.sqlite_error_code(),
        Some(DiskFull | SystemIoFailure | ReadOnly | CannotOpen | PermissionDenied | OutOfMemory)
    )
}

pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A 32-hex-digit id, unique across processes and restarts: a hash of the wall-clock time in
/// nanoseconds, the process id, a per-process counter and per-process random keys.
pub(crate) fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    use std::hash::{BuildHasher, Hasher};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u128(nanos);
    let mut hasher = Sha256::new();
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(random.finish().to_le_bytes());
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests;
