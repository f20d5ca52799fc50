//! Failures through the local pipeline: a message that keeps failing is dead-lettered after
//! `max_receives`, `sparklake redrive` brings it back, and it is then written. A batch larger
//! than one queue message is split and every event written.

mod support;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use ingest::IngestConfig;
use sparklake::config::Settings;
use sparklake::pipeline::Pipeline;
use sparklake::queue::QueueConfig;
use sparklake::report;
use support::fixtures::fixture;
use support::process::sparklake;

fn settings(max_message_bytes: usize) -> Settings {
    Settings {
        queue: QueueConfig {
            // Zero: a failed message is visible again at once, so no test waits on a clock.
            visibility_timeout: Duration::ZERO,
            max_receives: 3,
            max_message_bytes,
            max_database_bytes: None,
        },
        ..Settings::default()
    }
}

async fn post(pipeline: &Pipeline, body: Vec<u8>) -> u16 {
    let config = IngestConfig::open(ingest::config::DEFAULT_MAX_BODY_BYTES);
    let request = http::Request::post("/")
        .body(Bytes::from(body))
        .expect("request");
    pipeline
        .ingest(&config)
        .handle(request, 1_700_000_000_000)
        .await
        .status()
        .as_u16()
}

fn rows(data: &Path) -> i64 {
    report::partitions(data)
        .expect("report")
        .values()
        .map(|p| p.rows)
        .sum()
}

#[tokio::test]
async fn failing_writes_are_dead_lettered_then_redriven_and_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let pipeline = Pipeline::open(data, settings(1_048_576)).expect("open");
    assert_eq!(post(&pipeline, fixture("sparkpost/batch.json")).await, 200);

    // A real failure: a file where the writer must create the `parquet/` folder.
    std::fs::write(data.join("parquet"), b"in the way").expect("block parquet/");
    pipeline.drain().await.expect("drain");
    let events = pipeline.events_queue.counts().await.expect("counts");
    assert_eq!(
        events.visible + events.in_flight,
        0,
        "nothing left to retry"
    );
    assert!(
        events.dead > 0,
        "the failing messages are in the dead-letter queue: {events:?}"
    );
    let dead = pipeline
        .local
        .as_ref()
        .expect("local")
        .events
        .peek_dead(100)
        .await
        .expect("peek");
    assert!(
        dead.iter().all(|m| m.receive_count == 3),
        "each was tried max_receives times"
    );
    assert_eq!(
        pipeline.ingest_queue.counts().await.expect("counts").dead,
        0,
        "fanout was fine"
    );

    std::fs::remove_file(data.join("parquet")).expect("unblock");
    let output = sparklake()
        .args(["redrive", "--data"])
        .arg(data)
        .output()
        .expect("run sparklake redrive");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains(&format!("events: moved {} message(s)", events.dead)),
        "{said}"
    );
    assert_eq!(
        pipeline.events_queue.counts().await.expect("counts").dead,
        0
    );

    pipeline.drain().await.expect("drain");
    assert_eq!(rows(data), 19, "every event written after the redrive");
}

#[tokio::test]
async fn a_batch_larger_than_one_message_is_split_and_fully_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = Pipeline::open(dir.path(), settings(4096)).expect("open");
    let body = fixture("sparkpost/batch.json");
    assert!(body.len() > 4096 * 4);
    assert_eq!(post(&pipeline, body).await, 200);
    let queued = pipeline
        .ingest_queue
        .counts()
        .await
        .expect("counts")
        .visible;
    assert!(queued > 1, "split across {queued} messages");
    pipeline.drain().await.expect("drain");
    let partitions = report::partitions(dir.path()).expect("report");
    assert_eq!(partitions.len(), 19);
    assert!(partitions.values().all(|p| p.rows == 1));
}
