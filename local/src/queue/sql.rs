//! The local queue's SQL: its one table, and each operation as a function of a connection
//! (run in a blocking task by [`super::LocalQueue`]). What a receive does with a message that has
//! used its receives is decided by [`super::dead_letter`], not here.

use bytes::Bytes;
use rusqlite::{Connection, TransactionBehavior, params};
use sparklake_core::message::{Attributes, InboundMessage};
use sparklake_core::ports::{QueueCounts, Received};

use super::dead_letter::{DeadLetterPolicy, Disposition};
use super::error::sql_error;
use super::{QueueError, count, unique_id};

/// One row per message. `seq` gives the FIFO order and is never reused (AUTOINCREMENT); `queue`
/// is the queue's name (a dead letter's queue is `"{name}-dlq"`); `visible_at` is unix millis;
/// `receipt` is the handle of the latest receive, NULL before the first and after a move between
/// queues. The index serves receive (queue, then seq order, filtering on visible_at) and counts.
///
/// Bodies are kept in their own table, one row per message by `seq` (deleted with it by the
/// trigger): SQLite rewrites a whole record on every update, so a receive's or a heartbeat's
/// update of `receipt` and `visible_at` rewrote a message's whole body (a webhook batch is up to
/// a megabyte) while the body sat in the same row; now it rewrites a few dozen bytes. A message
/// stored before that (its body in `messages.body`, no `bodies` row) reads as it always did;
/// new rows leave `messages.body` empty.
pub(super) const SCHEMA: &str = "
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
CREATE TABLE IF NOT EXISTS bodies (
    seq  INTEGER PRIMARY KEY,
    body BLOB    NOT NULL
);
CREATE TRIGGER IF NOT EXISTS messages_body_gone AFTER DELETE ON messages
BEGIN
    DELETE FROM bodies WHERE seq = OLD.seq;
END;
";

/// A message's body: from `bodies`, or from the row itself for a message stored before bodies
/// had their own table.
const BODY: &str = "COALESCE(b.body, m.body)";

/// What a blocking database job gets: the connection, the current time, the queue names.
pub(super) struct Ctx<'a> {
    pub conn: &'a mut Connection,
    pub now: i64,
    pub name: &'a str,
    pub dlq: &'a str,
}

/// Inserts `rows` (body, attributes JSON) in one transaction, unless the database already holds
/// `limit` bytes.
pub(super) fn send(
    ctx: Ctx<'_>,
    rows: &[(Bytes, String)],
    limit: Option<u64>,
) -> Result<(), QueueError> {
    let tx = ctx
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error("begin send"))?;
    if let Some(max) = limit {
        let used: i64 = tx
            .query_row(
                "SELECT (p.page_count - f.freelist_count) * s.page_size \
                 FROM pragma_page_count() AS p, pragma_freelist_count() AS f, \
                 pragma_page_size() AS s",
                [],
                |row| row.get(0),
            )
            .map_err(sql_error("measure the database"))?;
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
                 VALUES (?1, ?2, x'', ?3, 0, ?4, ?4)",
            )
            .map_err(sql_error("prepare send"))?;
        let mut insert_body = tx
            .prepare_cached("INSERT INTO bodies (seq, body) VALUES (?1, ?2)")
            .map_err(sql_error("prepare send"))?;
        for (body, attributes) in rows {
            let seq = insert
                .insert(params![unique_id(), ctx.name, attributes, ctx.now])
                .map_err(sql_error("insert message"))?;
            insert_body
                .execute(params![seq, body.as_ref()])
                .map_err(sql_error("insert message body"))?;
        }
    }
    tx.commit().map_err(sql_error("commit send"))
}

/// A visible row, as a receive selects it.
struct Row {
    seq: i64,
    id: String,
    body: Vec<u8>,
    attributes: String,
    receive_count: i64,
}

/// Up to `wanted` rows of `queue` visible at `now` after `after`, in order.
fn select_visible(
    select: &mut rusqlite::CachedStatement<'_>,
    (queue, now): (&str, i64),
    after: i64,
    wanted: i64,
) -> Result<Vec<Row>, QueueError> {
    select
        .query_map(params![queue, now, after, wanted], |row| {
            Ok(Row {
                seq: row.get(0)?,
                id: row.get(1)?,
                body: row.get(2)?,
                attributes: row.get(3)?,
                receive_count: row.get(4)?,
            })
        })
        .map_err(sql_error("select visible"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error("read message"))
}

/// What a receive did: the messages delivered, the ones it dead-lettered (id, receives), and
/// how many were spared dead-lettering.
pub(super) struct Receipt {
    pub received: Vec<Received>,
    pub dead_lettered: Vec<(String, i64)>,
    pub spared: usize,
}

/// Receives up to `max` visible messages, oldest first, delivering, dead-lettering or sparing
/// each as `policy` says (`storage_outage`: the data folder refused a write recently), in one
/// transaction. Delivered messages are invisible until `visible_until` (unix ms).
pub(super) fn receive(
    ctx: Ctx<'_>,
    max: usize,
    policy: DeadLetterPolicy,
    storage_outage: bool,
    visible_until: i64,
) -> Result<Receipt, QueueError> {
    let tx = ctx
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error("begin receive"))?;
    let mut out = Receipt {
        received: Vec::new(),
        dead_lettered: Vec::new(),
        spared: 0,
    };
    {
        let mut select = tx
            .prepare_cached(&format!(
                "SELECT m.seq, m.id, {BODY}, m.attributes, m.receive_count \
                 FROM messages AS m LEFT JOIN bodies AS b ON b.seq = m.seq \
                 WHERE m.queue = ?1 AND m.visible_at <= ?2 AND m.seq > ?3 \
                 ORDER BY m.seq LIMIT ?4"
            ))
            .map_err(sql_error("prepare receive"))?;
        let mut to_dlq = tx
            .prepare_cached(
                "UPDATE messages SET queue = ?2, visible_at = ?3, receipt = NULL WHERE seq = ?1",
            )
            .map_err(sql_error("prepare dead-letter"))?;
        let mut deliver = tx
            .prepare_cached(
                "UPDATE messages SET receive_count = receive_count + 1, \
                 visible_at = ?2, receipt = ?3 WHERE seq = ?1",
            )
            .map_err(sql_error("prepare deliver"))?;
        // Each round delivers or dead-letters every row it selects and continues after the
        // last of them (a zero visibility timeout leaves delivered rows visible).
        let mut after = i64::MIN;
        while out.received.len() < max {
            let wanted = i64::try_from(max - out.received.len()).unwrap_or(i64::MAX);
            let rows = select_visible(&mut select, (ctx.name, ctx.now), after, wanted)?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                after = after.max(row.seq);
                match policy.disposition(row.receive_count, storage_outage) {
                    Disposition::DeadLetter => {
                        to_dlq
                            .execute(params![row.seq, ctx.dlq, ctx.now])
                            .map_err(sql_error("move to dead-letter queue"))?;
                        out.dead_lettered.push((row.id, row.receive_count));
                        continue;
                    }
                    Disposition::Spare => out.spared += 1,
                    Disposition::Deliver => {}
                }
                let attributes = decode_attributes(ctx.name, &row.id, &row.attributes)?;
                let receipt = unique_id();
                deliver
                    .execute(params![row.seq, visible_until, receipt])
                    .map_err(sql_error("mark received"))?;
                out.received.push(Received {
                    message: InboundMessage {
                        id: row.id,
                        body: Bytes::from(row.body),
                        attributes,
                        receive_count: u32::try_from(row.receive_count.saturating_add(1))
                            .unwrap_or(u32::MAX),
                    },
                    receipt,
                });
            }
        }
    }
    tx.commit().map_err(sql_error("commit receive"))?;
    Ok(out)
}

fn decode_attributes(queue: &str, id: &str, text: &str) -> Result<Attributes, QueueError> {
    serde_json::from_str(text).map_err(|source| QueueError::DecodeAttributes {
        queue: queue.to_string(),
        id: id.to_owned(),
        source,
    })
}

/// Deletes the messages handed out with these receipts (a stale receipt is a no-op).
pub(super) fn delete(ctx: Ctx<'_>, receipts: &[String]) -> Result<(), QueueError> {
    let tx = ctx
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error("begin delete"))?;
    {
        let mut delete = tx
            .prepare_cached("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2")
            .map_err(sql_error("prepare delete"))?;
        for receipt in receipts {
            delete
                .execute(params![ctx.name, receipt])
                .map_err(sql_error("delete message"))?;
        }
    }
    tx.commit().map_err(sql_error("commit delete"))
}

/// Makes the message of `receipt` visible `timeout_millis` from now.
pub(super) fn change_visibility(
    ctx: Ctx<'_>,
    receipt: &str,
    timeout_millis: i64,
) -> Result<(), QueueError> {
    ctx.conn
        .execute(
            "UPDATE messages SET visible_at = ?3 WHERE queue = ?1 AND receipt = ?2",
            params![ctx.name, receipt, ctx.now.saturating_add(timeout_millis)],
        )
        .map_err(sql_error("change visibility"))?;
    Ok(())
}

/// Moves every dead letter back, visible now, its receive count reset.
pub(super) fn redrive(ctx: Ctx<'_>) -> Result<usize, QueueError> {
    ctx.conn
        .execute(
            "UPDATE messages SET queue = ?1, receive_count = 0, visible_at = ?3, \
             receipt = NULL WHERE queue = ?2",
            params![ctx.name, ctx.dlq, ctx.now],
        )
        .map_err(sql_error("redrive"))
}

/// Makes every in-flight message visible now.
pub(super) fn release_in_flight(ctx: Ctx<'_>) -> Result<usize, QueueError> {
    ctx.conn
        .execute(
            "UPDATE messages SET visible_at = ?2 WHERE queue = ?1 AND visible_at > ?2",
            params![ctx.name, ctx.now],
        )
        .map_err(sql_error("release in-flight messages"))
}

/// Visible, in-flight and dead messages.
pub(super) fn counts(ctx: Ctx<'_>) -> Result<QueueCounts, QueueError> {
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
        .map_err(sql_error("count messages"))
}

/// Up to `limit` dead letters, oldest first, unchanged.
pub(super) fn peek_dead(ctx: Ctx<'_>, limit: i64) -> Result<Vec<InboundMessage>, QueueError> {
    let mut select = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT m.id, {BODY}, m.attributes, m.receive_count \
             FROM messages AS m LEFT JOIN bodies AS b ON b.seq = m.seq \
             WHERE m.queue = ?1 ORDER BY m.seq LIMIT ?2"
        ))
        .map_err(sql_error("prepare peek"))?;
    let rows = select
        .query_map(params![ctx.dlq, limit], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .map_err(sql_error("select dead letters"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error("read dead letter"))?;
    rows.into_iter()
        .map(|(id, body, attributes, receive_count)| {
            let attributes = decode_attributes(ctx.dlq, &id, &attributes)?;
            Ok(InboundMessage {
                id,
                body: Bytes::from(body),
                attributes,
                receive_count: u32::try_from(receive_count.max(0)).unwrap_or(u32::MAX),
            })
        })
        .collect()
}
