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

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use sparklake_core::message::{Attributes, InboundMessage, OutboundMessage};
use sparklake_core::ports::{PortError, QueueSend};
use tracing::warn;

use crate::store::StorageFaults;

/// How long a connection waits for a lock held by another connection to the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after a storage fault a message that has used its receives is still delivered
/// rather than dead-lettered, beyond twice its visibility timeout: its last delivery, which may
/// have failed for that fault, began at most about one visibility timeout (plus the time it was
/// worked on) before it became visible again.
const STORAGE_FAULT_GRACE: Duration = Duration::from_secs(60);

/// One row per message. `seq` gives the FIFO order and is never reused (AUTOINCREMENT); `queue`
/// is the queue's name (a dead letter's queue is `"{name}-dlq"`); `visible_at` is unix millis;
/// `receipt` is the handle of the latest receive, NULL before the first and after a move between
/// queues. The index serves receive (queue, then seq order, filtering on visible_at) and counts.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    queue         TEXT    NOT NULL,
    body          BLOB    NOT NULL,
    attributes    TEXT    NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    visible_at    INTEGER NOT NULL,
    receipt       TEXT    UNIQUE,
    sent_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, seq, visible_at);
";

/// A failure of the local queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue database: {operation} failed: {source}")]
    Sqlite {
        operation: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("queue database: cannot create the directory for {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "queue {queue}: message {index} has a {bytes}-byte body, larger than the {max}-byte limit"
    )]
    TooLarge {
        queue: String,
        index: usize,
        bytes: usize,
        max: usize,
    },
    #[error("queue {queue}: cannot encode attributes: {source}")]
    EncodeAttributes {
        queue: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("queue {queue}: message {id} has unreadable attributes: {source}")]
    DecodeAttributes {
        queue: String,
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "queue {queue} is full: the queue database holds {used} bytes of messages, the limit is {max} (SPARKLAKE_QUEUE_MAX_BYTES)"
    )]
    Full { queue: String, used: u64, max: u64 },
    #[error("queue database task did not complete: {source}")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
}

impl From<QueueError> for PortError {
    fn from(error: QueueError) -> Self {
        PortError::new("local queue send", error)
    }
}

fn sql(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> QueueError {
    move |source| QueueError::Sqlite { operation, source }
}

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

/// A received message and the receipt handle to delete it or change its visibility with.
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
        let conn = Connection::open(path).map_err(sql("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql("set busy_timeout"))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(sql("set journal_mode=WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql("set synchronous=FULL"))?;
        conn.execute_batch(SCHEMA).map_err(sql("create schema"))?;
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

/// What a blocking database job gets: the connection, the current time, the queue names.
struct Ctx<'a> {
    conn: &'a mut Connection,
    now: i64,
    name: &'a str,
    dlq: &'a str,
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
        self.run(move |ctx| {
            let tx = ctx
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql("begin send"))?;
            if let Some(max) = limit {
                let used: i64 = tx
                    .query_row(
                        "SELECT (p.page_count - f.freelist_count) * s.page_size \
                         FROM pragma_page_count() AS p, pragma_freelist_count() AS f, \
                         pragma_page_size() AS s",
                        [],
                        |row| row.get(0),
                    )
                    .map_err(sql("measure the database"))?;
                let used = count(used);
                if used >= max {
                    return Err(QueueError::Full {
                        queue: ctx.name.to_string(),
                        used,
                        max,
                    });
                }
            }
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO messages \
                         (id, queue, body, attributes, receive_count, visible_at, sent_at) \
                         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
                    )
                    .map_err(sql("prepare send"))?;
                for (body, attributes) in &rows {
                    insert
                        .execute(params![
                            unique_id(),
                            ctx.name,
                            body.as_ref(),
                            attributes,
                            ctx.now
                        ])
                        .map_err(sql("insert message"))?;
                }
            }
            tx.commit().map_err(sql("commit send"))
        })
        .await
    }

    /// Receives up to `max` visible messages, oldest first, making them invisible for the
    /// visibility timeout. A message already received `max_receives` times is moved to the
    /// dead-letter queue instead of being delivered, unless the data folder refused a write
    /// (a storage fault) within twice the visibility timeout plus a minute: then it is delivered
    /// again, as its failure may have been the storage's.
    pub async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max_receives = i64::from(self.config.max_receives.max(1));
        let visibility = duration_millis(self.config.visibility_timeout);
        let grace = visibility
            .saturating_mul(2)
            .saturating_add(duration_millis(STORAGE_FAULT_GRACE));
        let last_fault = self.shared.faults.last_millis();
        let (received, spared) = self
            .run(move |ctx| {
                let storage_outage = last_fault.is_some_and(|t| ctx.now.saturating_sub(t) <= grace);
                let mut spared = 0usize;
                let visible_until = ctx.now.saturating_add(visibility);
                let tx = ctx
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql("begin receive"))?;
                let mut received = Vec::new();
                {
                    let mut select = tx
                        .prepare_cached(
                            "SELECT seq, id, body, attributes, receive_count FROM messages \
                         WHERE queue = ?1 AND visible_at <= ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
                        )
                        .map_err(sql("prepare receive"))?;
                    let mut to_dlq = tx
                        .prepare_cached(
                            "UPDATE messages SET queue = ?2, visible_at = ?3, receipt = NULL \
                         WHERE seq = ?1",
                        )
                        .map_err(sql("prepare dead-letter"))?;
                    let mut deliver = tx
                        .prepare_cached(
                            "UPDATE messages SET receive_count = receive_count + 1, \
                         visible_at = ?2, receipt = ?3 WHERE seq = ?1",
                        )
                        .map_err(sql("prepare deliver"))?;
                    // Each round delivers or dead-letters every row it selects and continues after
                    // the last of them (a zero visibility timeout leaves delivered rows visible).
                    let mut after = i64::MIN;
                    while received.len() < max {
                        let wanted = i64::try_from(max - received.len()).unwrap_or(i64::MAX);
                        let rows = select
                            .query_map(params![ctx.name, ctx.now, after, wanted], |row| {
                                Ok((
                                    row.get::<_, i64>(0)?,
                                    row.get::<_, String>(1)?,
                                    row.get::<_, Vec<u8>>(2)?,
                                    row.get::<_, String>(3)?,
                                    row.get::<_, i64>(4)?,
                                ))
                            })
                            .map_err(sql("select visible"))?
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(sql("read message"))?;
                        if rows.is_empty() {
                            break;
                        }
                        for (seq, id, body, attributes, receive_count) in rows {
                            after = after.max(seq);
                            if receive_count >= max_receives {
                                if storage_outage {
                                    spared += 1;
                                } else {
                                    to_dlq
                                        .execute(params![seq, ctx.dlq, ctx.now])
                                        .map_err(sql("move to dead-letter queue"))?;
                                    continue;
                                }
                            }
                            let attributes: Attributes = serde_json::from_str(&attributes)
                                .map_err(|source| QueueError::DecodeAttributes {
                                    queue: ctx.name.to_string(),
                                    id: id.clone(),
                                    source,
                                })?;
                            let receipt = unique_id();
                            deliver
                                .execute(params![seq, visible_until, receipt])
                                .map_err(sql("mark received"))?;
                            received.push(Received {
                                message: InboundMessage {
                                    id,
                                    body: Bytes::from(body),
                                    attributes,
                                    receive_count: u32::try_from(receive_count.saturating_add(1))
                                        .unwrap_or(u32::MAX),
                                },
                                receipt,
                            });
                        }
                    }
                }
                tx.commit().map_err(sql("commit receive"))?;
                Ok((received, spared))
            })
            .await?;
        if spared > 0 {
            warn!(
                queue = %self.name,
                messages = spared,
                "the data folder refused writes recently: delivering messages past their maximum receives instead of dead-lettering them"
            );
        }
        Ok(received)
    }

    /// Deletes the messages these receipts were handed out with. A receipt whose message was
    /// received again since, or is already gone, is ignored.
    pub async fn delete(&self, receipts: &[String]) -> Result<(), QueueError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let receipts = receipts.to_vec();
        self.run(move |ctx| {
            let tx = ctx
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql("begin delete"))?;
            {
                let mut delete = tx
                    .prepare_cached("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2")
                    .map_err(sql("prepare delete"))?;
                for receipt in &receipts {
                    delete
                        .execute(params![ctx.name, receipt])
                        .map_err(sql("delete message"))?;
                }
            }
            tx.commit().map_err(sql("commit delete"))
        })
        .await
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
        self.run(move |ctx| {
            ctx.conn
                .execute(
                    "UPDATE messages SET visible_at = ?3 WHERE queue = ?1 AND receipt = ?2",
                    params![ctx.name, receipt, ctx.now.saturating_add(timeout)],
                )
                .map_err(sql("change visibility"))?;
            Ok(())
        })
        .await
    }

    /// Moves every message of the dead-letter queue back to this queue, visible now, with its
    /// receive count reset to 0. Returns how many were moved.
    pub async fn redrive(&self) -> Result<usize, QueueError> {
        self.run(move |ctx| {
            ctx.conn
                .execute(
                    "UPDATE messages SET queue = ?1, receive_count = 0, visible_at = ?3, \
                     receipt = NULL WHERE queue = ?2",
                    params![ctx.name, ctx.dlq, ctx.now],
                )
                .map_err(sql("redrive"))
        })
        .await
    }

    /// Makes every in-flight message of this queue visible now. For start-up after a crash, when
    /// nobody can still be working on them.
    pub async fn release_in_flight(&self) -> Result<usize, QueueError> {
        self.run(move |ctx| {
            ctx.conn
                .execute(
                    "UPDATE messages SET visible_at = ?2 WHERE queue = ?1 AND visible_at > ?2",
                    params![ctx.name, ctx.now],
                )
                .map_err(sql("release in-flight messages"))
        })
        .await
    }

    /// How many messages are visible, in flight, and in the dead-letter queue.
    pub async fn counts(&self) -> Result<QueueCounts, QueueError> {
        self.run(move |ctx| {
            ctx.conn
                .query_row(
                    "SELECT \
                       COALESCE(SUM(queue = ?1 AND visible_at <= ?3), 0), \
                       COALESCE(SUM(queue = ?1 AND visible_at > ?3), 0), \
                       COALESCE(SUM(queue = ?2), 0) \
                     FROM messages WHERE queue IN (?1, ?2)",
                    params![ctx.name, ctx.dlq, ctx.now],
                    |row| {
                        Ok(QueueCounts {
                            visible: count(row.get(0)?),
                            in_flight: count(row.get(1)?),
                            dead: count(row.get(2)?),
                        })
                    },
                )
                .map_err(sql("count messages"))
        })
        .await
    }

    /// Up to `limit` messages of the dead-letter queue, oldest first, without changing them.
    /// `receive_count` is how many times each was received before it was dead-lettered.
    pub async fn peek_dead(&self, limit: usize) -> Result<Vec<InboundMessage>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |ctx| {
            let mut select = ctx
                .conn
                .prepare_cached(
                    "SELECT id, body, attributes, receive_count FROM messages \
                     WHERE queue = ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(sql("prepare peek"))?;
            let rows = select
                .query_map(params![ctx.dlq, limit], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                })
                .map_err(sql("select dead letters"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql("read dead letter"))?;
            rows.into_iter()
                .map(|(id, body, attributes, receive_count)| {
                    let attributes = serde_json::from_str(&attributes).map_err(|source| {
                        QueueError::DecodeAttributes {
                            queue: ctx.dlq.to_string(),
                            id: id.clone(),
                            source,
                        }
                    })?;
                    Ok(InboundMessage {
                        id,
                        body: Bytes::from(body),
                        attributes,
                        receive_count: u32::try_from(receive_count.max(0)).unwrap_or(u32::MAX),
                    })
                })
                .collect()
        })
        .await
    }
}

#[async_trait]
impl QueueSend for LocalQueue {
    fn max_message_bytes(&self) -> usize {
        self.config.max_message_bytes
    }

    async fn send(&self, messages: Vec<OutboundMessage>) -> Result<(), PortError> {
        self.send_messages(messages).await.map_err(PortError::from)
    }
}

/// Whether SQLite failed because the disk refused it: full, read-only, unwritable, failing.
fn is_storage_fault(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{CannotOpen, DiskFull, PermissionDenied, ReadOnly, SystemIoFailure};
    matches!(
        error.sqlite_error_code(),
        Some(DiskFull | SystemIoFailure | ReadOnly | CannotOpen | PermissionDenied)
    )
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A 32-hex-digit id, unique across processes and restarts: a hash of the wall-clock time in
/// nanoseconds, the process id, a per-process counter and per-process random keys.
fn unique_id() -> String {
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
mod tests {
    use std::collections::BTreeSet;

    use sparklake_core::message::attr;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn open(dir: &tempfile::TempDir) -> Result<LocalQueues, QueueError> {
        LocalQueues::open(&dir.path().join("queue.sqlite3"))
    }

    /// Received messages are visible again at once, so tests never sleep.
    fn immediate(max_receives: u32) -> QueueConfig {
        QueueConfig {
            visibility_timeout: Duration::ZERO,
            max_receives,
            ..QueueConfig::default()
        }
    }

    fn long() -> QueueConfig {
        QueueConfig {
            visibility_timeout: Duration::from_secs(3600),
            ..QueueConfig::default()
        }
    }

    fn msg(body: &str) -> OutboundMessage {
        OutboundMessage {
            body: Bytes::from(body.to_owned()),
            attributes: Attributes::new(),
        }
    }

    fn bodies(received: &[Received]) -> Vec<&[u8]> {
        received.iter().map(|r| r.message.body.as_ref()).collect()
    }

    fn receipts(received: &[Received]) -> Vec<String> {
        received.iter().map(|r| r.receipt.clone()).collect()
    }

    #[test]
    fn default_config() {
        let config = QueueConfig::default();
        assert_eq!(config.visibility_timeout, Duration::from_secs(30));
        assert_eq!(config.max_receives, 5);
        assert_eq!(config.max_message_bytes, 1_048_576);
    }

    #[tokio::test]
    async fn send_receive_delete_round_trip_keeps_body_and_attributes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queue = open(&dir)?.queue("events", long());
        let mut attributes = Attributes::new();
        attributes.insert(attr::BATCH_ID.to_owned(), "b-1".to_owned());
        attributes.insert(attr::RECEIVED_AT.to_owned(), "1700000000123".to_owned());
        let body = Bytes::from_static(b"[{\"msys\":{}}]\0\xff binary");
        let sender: &dyn QueueSend = &queue;
        sender
            .send(vec![OutboundMessage {
                body: body.clone(),
                attributes: attributes.clone(),
            }])
            .await?;

        let received = queue.receive(10).await?;
        assert_eq!(received.len(), 1);
        let message = &received[0].message;
        assert_eq!(message.body, body);
        assert_eq!(message.attributes, attributes);
        assert_eq!(message.receive_count, 1);
        assert_eq!(message.received_at_millis(), Some(1_700_000_000_123));
        assert_eq!(message.id.len(), 32);
        assert!(!received[0].receipt.is_empty());

        queue.delete(&receipts(&received)).await?;
        assert_eq!(queue.counts().await?, QueueCounts::default());
        queue.release_in_flight().await?;
        assert!(queue.receive(10).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn received_message_is_invisible_until_its_visibility_changes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queue = open(&dir)?.queue("events", long());
        queue.send(vec![msg("a")]).await?;

        let first = queue.receive(10).await?;
        assert_eq!(first.len(), 1);
        assert!(queue.receive(10).await?.is_empty());
        assert_eq!(
            queue.counts().await?,
            QueueCounts {
                visible: 0,
                in_flight: 1,
                dead: 0
            }
        );

        queue
            .change_visibility(&first[0].receipt, Duration::ZERO)
            .await?;
        assert_eq!(queue.counts().await?.visible, 1);
        let second = queue.receive(10).await?;
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].message.id, first[0].message.id);
        assert_eq!(second[0].message.receive_count, 2);
        assert_ne!(second[0].receipt, first[0].receipt);

        // The first receipt is stale now: changing or deleting with it does nothing.
        queue
            .change_visibility(&first[0].receipt, Duration::ZERO)
            .await?;
        assert!(queue.receive(10).await?.is_empty());
        queue.delete(&receipts(&first)).await?;
        assert_eq!(queue.counts().await?.in_flight, 1);

        // Changing visibility with the current receipt can also extend it.
        queue
            .change_visibility(&second[0].receipt, Duration::from_secs(7200))
            .await?;
        assert!(queue.receive(10).await?.is_empty());
        queue.delete(&receipts(&second)).await?;
        assert_eq!(queue.counts().await?, QueueCounts::default());
        Ok(())
    }

    #[tokio::test]
    async fn receives_in_the_order_sent_and_at_most_max() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queue = open(&dir)?.queue("events", long());
        queue.send(vec![msg("1"), msg("2"), msg("3")]).await?;
        queue.send(vec![msg("4")]).await?;
        queue.send(vec![msg("5"), msg("6")]).await?;

        assert!(queue.receive(0).await?.is_empty());
        let first = queue.receive(4).await?;
        assert_eq!(bodies(&first), [b"1", b"2", b"3", b"4"]);
        let rest = queue.receive(10).await?;
        assert_eq!(bodies(&rest), [b"5", b"6"]);
        Ok(())
    }

    #[tokio::test]
    async fn receive_count_increments_and_stale_receipts_do_not_delete() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queue = open(&dir)?.queue("events", immediate(10));
        queue.send(vec![msg("a")]).await?;

        let mut all = Vec::new();
        for expected in 1..=3 {
            let received = queue.receive(10).await?;
            assert_eq!(received.len(), 1, "one message, received once per call");
            assert_eq!(received[0].message.receive_count, expected);
            all.push(received[0].clone());
        }
        queue.delete(&[all[0].receipt.clone()]).await?;
        assert_eq!(queue.counts().await?.visible, 1);
        queue.delete(&[all[2].receipt.clone()]).await?;
        assert_eq!(queue.counts().await?, QueueCounts::default());
        Ok(())
    }

    #[tokio::test]
    async fn message_goes_to_dead_letter_queue_after_max_receives_and_redrive_brings_it_back()
    -> TestResult {
        let dir = tempfile::tempdir()?;
        let queue = open(&dir)?.queue("events", immediate(2));
        queue.send(vec![msg("poison"), msg("fine")]).await?;

        let first = queue.receive(10).await?;
        assert_eq!(bodies(&first), [b"poison".as_slice(), b"fine"]);
        queue.delete(&[first[1].receipt.clone()]).await?;
        let id = first[0].message.id.clone();

        let second = queue.receive(10).await?;
        assert_eq!(bodies(&second), [b"poison"]);
        assert_eq!(second[0].message.receive_count, 2);

        // A third receive would exceed max_receives: dead-lettered, not delivered.
        assert!(queue.receive(10).await?.is_empty());
        assert_eq!(
            queue.counts().await?,
            QueueCounts {
                visible: 0,
                in_flight: 0,
                dead: 1
            }
        );
        let dead = queue.peek_dead(10).await?;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id, id);
        assert_eq!(dead[0].body, Bytes::from_static(b"poison"));
        assert_eq!(dead[0].receive_count, 2);
        // Peeking changes nothing; the old receipt does not reach the dead letter.
        queue.delete(&receipts(&second)).await?;
        assert_eq!(queue.counts().await?.dead, 1);
        assert!(queue.peek_dead(0).await?.is_empty());

        assert_eq!(queue.redrive().await?, 1);
        assert_eq!(queue.counts().await?.dead, 0);
        let again = queue.receive(10).await?;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].message.id, id);
        assert_eq!(again[0].message.receive_count, 1);
        assert_eq!(queue.redrive().await?, 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_storage_fault_keeps_spent_messages_out_of_the_dead_letter_queue() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queues = open(&dir)?;
        let queue = queues.queue("events", immediate(1));
        queue.send(vec![msg("a")]).await?;
        assert_eq!(queue.receive(1).await?.len(), 1);
        // The writer's put failed because the disk is full, as the store reports it.
        let full: std::io::Result<()> = Err(std::io::ErrorKind::StorageFull.into());
        queues.storage_faults().observe(&full);

        for expected in 2..=3 {
            let again = queue.receive(1).await?;
            assert_eq!(bodies(&again), [b"a"], "delivered again, not dead-lettered");
            assert_eq!(again[0].message.receive_count, expected);
        }
        assert_eq!(queue.counts().await?.dead, 0);
        // Another data folder's queues are not affected.
        let other_dir = tempfile::tempdir()?;
        let other = open(&other_dir)?.queue("events", immediate(1));
        other.send(vec![msg("b")]).await?;
        assert_eq!(other.receive(1).await?.len(), 1);
        assert!(other.receive(1).await?.is_empty());
        assert_eq!(other.counts().await?.dead, 1);
        Ok(())
    }

    #[tokio::test]
    async fn dead_lettering_does_not_take_the_place_of_a_deliverable_message() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queue = open(&dir)?.queue("events", immediate(1));
        queue.send(vec![msg("a")]).await?;
        assert_eq!(bodies(&queue.receive(1).await?), [b"a"]);
        queue.send(vec![msg("b")]).await?;

        // "a" is first but spent: it moves to the DLQ and "b" is delivered in the same call.
        let received = queue.receive(1).await?;
        assert_eq!(bodies(&received), [b"b"]);
        assert_eq!(queue.counts().await?.dead, 1);
        Ok(())
    }

    #[tokio::test]
    async fn zero_max_receives_means_one() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queue = open(&dir)?.queue("events", immediate(0));
        queue.send(vec![msg("a")]).await?;
        assert_eq!(queue.receive(1).await?.len(), 1);
        assert!(queue.receive(1).await?.is_empty());
        assert_eq!(queue.counts().await?.dead, 1);
        Ok(())
    }

    #[tokio::test]
    async fn messages_survive_closing_and_reopening_the_database() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (sent_ids, in_flight_id) = {
            let queues = open(&dir)?;
            let queue = queues.queue("events", long());
            let mut attributes = Attributes::new();
            attributes.insert("k".to_owned(), "v".to_owned());
            queue
                .send(vec![
                    OutboundMessage {
                        body: Bytes::from_static(b"first"),
                        attributes,
                    },
                    msg("second"),
                ])
                .await?;
            let received = queue.receive(1).await?;
            assert_eq!(bodies(&received), [b"first"]);
            let id = received[0].message.id.clone();
            (queue.peek_ids().await?, id)
        };

        let queues = open(&dir)?;
        let queue = queues.queue("events", long());
        assert_eq!(
            queue.counts().await?,
            QueueCounts {
                visible: 1,
                in_flight: 1,
                dead: 0
            }
        );
        assert_eq!(queue.release_in_flight().await?, 1);
        let received = queue.receive(10).await?;
        assert_eq!(bodies(&received), [b"first".as_slice(), b"second"]);
        assert_eq!(received[0].message.id, in_flight_id);
        assert_eq!(received[0].message.receive_count, 2);
        assert_eq!(received[0].message.attribute("k"), Some("v"));
        assert_eq!(received[1].message.receive_count, 1);

        // New messages after the restart get new ids.
        queue.send(vec![msg("third")]).await?;
        let ids = queue.peek_ids().await?;
        assert_eq!(ids.len(), 3);
        assert!(ids.starts_with(&sent_ids));
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3);
        Ok(())
    }

    #[tokio::test]
    async fn release_in_flight_makes_only_this_queues_in_flight_messages_visible() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queues = open(&dir)?;
        let a = queues.queue("a", long());
        let b = queues.queue("b", long());
        a.send(vec![msg("a1"), msg("a2"), msg("a3")]).await?;
        b.send(vec![msg("b1")]).await?;
        assert_eq!(a.receive(2).await?.len(), 2);
        assert_eq!(b.receive(1).await?.len(), 1);

        assert_eq!(a.release_in_flight().await?, 2);
        assert_eq!(
            a.counts().await?,
            QueueCounts {
                visible: 3,
                in_flight: 0,
                dead: 0
            }
        );
        assert_eq!(b.counts().await?.in_flight, 1);
        assert_eq!(bodies(&a.receive(10).await?), [b"a1", b"a2", b"a3"]);
        assert_eq!(a.release_in_flight().await?, 3);
        Ok(())
    }

    #[tokio::test]
    async fn oversize_body_is_rejected_and_nothing_of_the_batch_is_stored() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queue = open(&dir)?.queue(
            "events",
            QueueConfig {
                max_message_bytes: 10,
                ..long()
            },
        );
        let sender: &dyn QueueSend = &queue;
        assert_eq!(sender.max_message_bytes(), 10);

        let result = sender.send(vec![msg("small"), msg("eleven byte")]).await;
        let error = result.err().ok_or("an 11-byte body must be rejected")?;
        assert!(
            error.to_string().contains("larger than the 10-byte limit"),
            "{error}"
        );
        assert_eq!(queue.counts().await?, QueueCounts::default());

        sender.send(vec![msg("ten bytes!")]).await?;
        assert_eq!(bodies(&queue.receive(10).await?), [b"ten bytes!"]);
        Ok(())
    }

    #[tokio::test]
    async fn a_send_is_refused_while_the_database_is_over_the_limit() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queues = open(&dir)?;
        let bounded = queues.queue(
            "ingest",
            QueueConfig {
                max_database_bytes: Some(256 * 1024),
                ..long()
            },
        );
        let unbounded = queues.queue("events", long());
        let big = || msg(&"x".repeat(100 * 1024));
        // Under the limit, each send is taken whole, the last one crossing it.
        for _ in 0..3 {
            bounded.send_messages(vec![big()]).await?;
        }
        let refused = bounded.send_messages(vec![msg("small")]).await;
        let Err(QueueError::Full { used, max, .. }) = refused else {
            return Err(format!("expected Full, got {refused:?}").into());
        };
        assert!(used >= max && max == 256 * 1024, "{used} {max}");
        assert_eq!(bounded.counts().await?.visible, 3, "nothing of it stored");
        // Queues without a limit (the pipeline's internal ones) still take messages.
        unbounded.send_messages(vec![big()]).await?;
        // Draining frees pages for reuse: the bounded queue takes sends again.
        let received = bounded.receive(2).await?;
        bounded.delete(&receipts(&received)).await?;
        let received = unbounded.receive(1).await?;
        unbounded.delete(&receipts(&received)).await?;
        bounded.send_messages(vec![msg("small")]).await?;
        assert_eq!(bounded.counts().await?.visible, 2);
        Ok(())
    }

    #[tokio::test]
    async fn two_queues_in_one_database_are_independent() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queues = open(&dir)?;
        let a = queues.queue("a", immediate(1));
        let b = queues.queue("b", immediate(1));
        a.send(vec![msg("for a")]).await?;

        assert!(b.receive(10).await?.is_empty());
        assert_eq!(b.counts().await?, QueueCounts::default());
        let received = a.receive(10).await?;
        assert_eq!(bodies(&received), [b"for a"]);

        // b cannot delete or hide a's message by its receipt.
        b.delete(&receipts(&received)).await?;
        b.change_visibility(&received[0].receipt, Duration::from_secs(3600))
            .await?;
        assert_eq!(a.counts().await?.visible, 1);

        // a's dead letters are not b's.
        assert!(a.receive(10).await?.is_empty());
        assert_eq!(a.counts().await?.dead, 1);
        assert_eq!(b.counts().await?.dead, 0);
        assert_eq!(b.redrive().await?, 0);
        assert_eq!(a.counts().await?.dead, 1);
        Ok(())
    }

    #[tokio::test]
    async fn the_dead_letter_queue_is_stored_as_name_dlq() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queues = open(&dir)?;
        let queue = queues.queue("events", immediate(1));
        assert_eq!(queue.dead_letter_name(), "events-dlq");
        queue.send(vec![msg("x")]).await?;
        queue.receive(1).await?;
        queue.receive(1).await?;
        let dlq = queues.queue("events-dlq", long());
        assert_eq!(bodies(&dlq.receive(10).await?), [b"x"]);
        Ok(())
    }

    #[tokio::test]
    async fn message_ids_are_unique() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queue = open(&dir)?.queue("events", long());
        queue
            .send((0..200).map(|i| msg(&i.to_string())).collect())
            .await?;
        let received = queue.receive(1000).await?;
        assert_eq!(received.len(), 200);
        let ids: BTreeSet<_> = received.iter().map(|r| &r.message.id).collect();
        let receipts: BTreeSet<_> = received.iter().map(|r| &r.receipt).collect();
        assert_eq!(ids.len(), 200);
        assert_eq!(receipts.len(), 200);
        Ok(())
    }

    #[tokio::test]
    async fn an_empty_send_stores_nothing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queue = open(&dir)?.queue("events", long());
        queue.send(Vec::new()).await?;
        queue.delete(&[]).await?;
        assert_eq!(queue.counts().await?, QueueCounts::default());
        Ok(())
    }

    #[tokio::test]
    async fn the_database_uses_wal_and_full_sync() -> TestResult {
        let dir = tempfile::tempdir()?;
        let queue = open(&dir)?.queue("events", long());
        let (journal, synchronous) = queue
            .run(|ctx| {
                let journal: String = ctx
                    .conn
                    .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .map_err(sql("journal_mode"))?;
                let synchronous: i64 = ctx
                    .conn
                    .query_row("PRAGMA synchronous", [], |r| r.get(0))
                    .map_err(sql("synchronous"))?;
                Ok((journal, synchronous))
            })
            .await?;
        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "FULL");
        Ok(())
    }

    impl LocalQueue {
        /// Ids of this queue's messages in order, whatever their state.
        async fn peek_ids(&self) -> Result<Vec<String>, QueueError> {
            self.run(|ctx| {
                let mut select = ctx
                    .conn
                    .prepare("SELECT id FROM messages WHERE queue = ?1 ORDER BY seq")
                    .map_err(sql("prepare ids"))?;
                select
                    .query_map(params![ctx.name], |row| row.get(0))
                    .map_err(sql("select ids"))?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(sql("read ids"))
            })
            .await
        }
    }
}
