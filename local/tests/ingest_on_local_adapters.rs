//! The ingest handler over the real local adapters, for what only they can show: an SQLite
//! queue whose database is locked, and a folder store as the quarantine (its files on disk,
//! and a quarantine folder that cannot be written). The handler's behaviour itself is tested
//! over the in-memory ports in `ingest/tests`.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use sha2::{Digest, Sha256};
use sparklake::queue::{LocalQueue, QueueConfig};
use sparklake_core::ports::QueueCounts;
use support::fixtures::*;
use support::handlers::*;

const BATCH: &str = "sparkpost/batch.json";

/// The malformed fixtures: each is refused with 400 and quarantined.
const MALFORMED: [&str; 7] = [
    "not_json.txt",
    "not_array.json",
    "no_msys.json",
    "two_classes.json",
    "type_not_string.json",
    "invalid_utf8.bin",
    "truncated.json",
];

/// `(body key, reason key)` of a quarantined body received at [`received_at`].
fn quarantine_keys(body: &[u8]) -> (String, String) {
    let hash = hex::encode(&Sha256::digest(body)[..16]);
    (
        format!("quarantine/dt=2024-05-06/{hash}.body"),
        format!("quarantine/dt=2024-05-06/{hash}.reason.json"),
    )
}

/// Asserts that `body` is on disk in the quarantine with a reason note saying `reason`.
fn assert_quarantined(h: &Harness, body: &[u8], reason: &str, status: u16) -> TestResult {
    let (body_key, reason_key) = quarantine_keys(body);
    let kept = std::fs::read(h.store_root().join(&body_key))
        .map_err(|e| format!("{body_key} should be in the quarantine: {e}"))?;
    assert!(kept == body, "{body_key} must hold the exact body bytes");
    let note: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.store_root().join(&reason_key))?)?;
    assert_eq!(note["reason"], reason, "{reason_key}");
    assert_eq!(note["status"], status, "{reason_key}");
    assert_eq!(note["bytes"], body.len(), "{reason_key}");
    assert_eq!(note["body_key"], body_key.as_str(), "{reason_key}");
    Ok(())
}

async fn counts(queue: &LocalQueue) -> QueueCounts {
    queue.counts().await.expect("queue counts")
}

fn nothing_queued() -> QueueCounts {
    QueueCounts::default()
}

// ---------------------------------------------------------------------------------------------
// The quarantine folder

#[tokio::test]
async fn quarantined_bodies_are_two_files_each_on_disk_and_nothing_else() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    let mut expected = Vec::new();
    for name in MALFORMED {
        let body = fixture(&format!("malformed/{name}"));
        let response = h
            .ingest(
                &config,
                &queue,
                post_request(&[], body.clone()),
                received_at(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert_quarantined(&h, &body, &error_text(&response), 400)?;
        let (body_key, reason_key) = quarantine_keys(&body);
        expected.extend([body_key, reason_key]);
    }
    assert_eq!(counts(&queue).await, nothing_queued());
    // Two files per body, nothing else, no temporary file left behind.
    expected.sort();
    assert_eq!(h.store_files(), expected);
    Ok(())
}

#[tokio::test]
async fn a_quarantine_folder_that_cannot_be_written_gets_503_and_recovers() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    std::fs::create_dir_all(h.store_root())?;
    std::fs::write(h.store_root().join("quarantine"), b"in the way")?;
    for name in MALFORMED {
        let body = fixture(&format!("malformed/{name}"));
        let response = h
            .ingest(&config, &queue, post_request(&[], body), received_at())
            .await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{name}: a body that is not kept must be retried by the sender"
        );
        assert_eq!(response.headers()["retry-after"], "30", "{name}");
    }
    assert_eq!(counts(&queue).await, nothing_queued());
    assert_eq!(h.store_files(), ["quarantine"], "nothing half-written");

    // Once the quarantine is writable again, the retry is answered 400 and kept.
    std::fs::remove_file(h.store_root().join("quarantine"))?;
    let body = fixture("malformed/two_classes.json");
    let response = h
        .ingest(
            &config,
            &queue,
            post_request(&[], body.clone()),
            received_at(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_quarantined(&h, &body, &error_text(&response), 400)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The queue database

/// The queue fails for real: another connection to the database holds its write lock for longer
/// than the queue waits for it (10 s), as a stuck process or a long backup would.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_queue_database_gets_503_and_the_retry_succeeds() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    let body = fixture(BATCH);

    let blocker = rusqlite::Connection::open(h.dir.path().join("queues.sqlite3"))?;
    blocker.execute_batch("BEGIN IMMEDIATE")?;
    let started = Instant::now();
    let response = h
        .ingest(
            &config,
            &queue,
            post_request(&[], body.clone()),
            received_at(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "30");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the queue waited for the lock"
    );
    blocker.execute_batch("ROLLBACK")?;
    drop(blocker);

    assert_eq!(
        counts(&queue).await,
        nothing_queued(),
        "nothing half-enqueued"
    );
    assert_eq!(
        h.store_files(),
        Vec::<String>::new(),
        "a valid body is not quarantined"
    );

    let response = h
        .ingest(&config, &queue, post_request(&[], body), received_at())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(counts(&queue).await.visible, 1);
    Ok(())
}
