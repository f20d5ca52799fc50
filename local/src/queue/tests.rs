//! The local queue's behaviour, over a real SQLite database in a temporary folder.
use std::collections::BTreeSet;

use bytes::Bytes;
use rusqlite::params;
use sparklake_core::message::{Attributes, attr};
use sparklake_core::ports::QueueSend;

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
                .map_err(sql_error("journal_mode"))?;
            let synchronous: i64 = ctx
                .conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .map_err(sql_error("synchronous"))?;
            Ok((journal, synchronous))
        })
        .await?;
    assert_eq!(journal, "wal");
    assert_eq!(synchronous, 2, "FULL");
    Ok(())
}

#[tokio::test]
async fn bodies_live_apart_and_go_with_their_messages() -> TestResult {
    let dir = tempfile::tempdir()?;
    let queue = open(&dir)?.queue("events", immediate(5));
    queue.send_messages(vec![msg("one"), msg("two")]).await?;
    let rows = |queue: &LocalQueue| {
        let queue = queue.clone();
        async move {
            queue
                .run(|ctx| {
                    let count = |sql: &str| -> Result<i64, QueueError> {
                        ctx.conn
                            .query_row(sql, [], |r| r.get(0))
                            .map_err(sql_error("count"))
                    };
                    Ok((
                        count("SELECT COUNT(*) FROM bodies")?,
                        count("SELECT COALESCE(SUM(length(body)), 0) FROM messages")?,
                    ))
                })
                .await
        }
    };
    // Each body once, in its own table; the message rows carry none.
    assert_eq!(rows(&queue).await?, (2, 0));
    let received = queue.receive(1).await?;
    assert_eq!(bodies(&received), [b"one"]);
    queue.delete(&receipts(&received)).await?;
    assert_eq!(
        rows(&queue).await?,
        (1, 0),
        "the deleted message's body is gone"
    );
    Ok(())
}

#[tokio::test]
async fn a_message_stored_with_its_body_in_its_row_still_reads_and_deletes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let queue = open(&dir)?.queue("events", immediate(5));
    // As every send stored a message before bodies had their own table.
    queue
        .run(|ctx| {
            ctx.conn
                .execute(
                    "INSERT INTO messages (id, queue, body, attributes, receive_count, \
                     visible_at, sent_at) VALUES ('old', 'events', x'6f6c64', '{}', 0, 0, 0)",
                    [],
                )
                .map_err(sql_error("insert"))?;
            Ok(())
        })
        .await?;
    queue.send_messages(vec![msg("new")]).await?;
    let received = queue.receive(10).await?;
    assert_eq!(bodies(&received), [&b"old"[..], b"new"]);
    queue.delete(&receipts(&received)).await?;
    assert_eq!(queue.counts().await?, QueueCounts::default());
    Ok(())
}

impl LocalQueue {
    /// Ids of this queue's messages in order, whatever their state.
    async fn peek_ids(&self) -> Result<Vec<String>, QueueError> {
        self.run(|ctx| {
            let mut select = ctx
                .conn
                .prepare("SELECT id FROM messages WHERE queue = ?1 ORDER BY seq")
                .map_err(sql_error("prepare ids"))?;
            select
                .query_map(params![ctx.name], |row| row.get(0))
                .map_err(sql_error("select ids"))?
                .collect::<Result<Vec<String>, _>>()
                .map_err(sql_error("read ids"))
        })
        .await
    }
}
