//! Poison and replay on the local backend: an event the writer cannot write for real (its type
//! is too long to be a folder name: 255 bytes on local filesystems) does not block its
//! neighbours in the same writer batch; its message is retried, dead-lettered after
//! `max_receives`; with `SPARKLAKE_PARTITION_VALUE_MAX_BYTES` set (the fix), `sparklake
//! redrive` brings it back and `serve` writes it under a shortened partition, its `type` whole.
//!
//! (The emulator does not enforce S3's 1 024-byte key limit, so the same failure is not real on
//! it; `aws_pipeline.rs` shows a poison message through SQS's dead-letter queue and back.)

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use arrow::array::Array as _;
use bytes::Bytes;
use ingest::IngestConfig;
use sparklake::config::Settings;
use sparklake::pipeline::Pipeline;
use sparklake::queue::QueueConfig;
use sparklake::report;
use sparklake_core::encode::ParquetEncoder;
use support::fixtures::fixture;
use support::process::{Server, serve, sparklake};

/// A type from outside SparkPost's list, as a misconfigured relay might forward it: 320 bytes.
fn poison_type() -> String {
    "relay_forwarded_".repeat(20)
}

fn batch_with_poison() -> Vec<u8> {
    let mut elements: Vec<serde_json::Value> =
        serde_json::from_slice(&fixture("sparkpost/batch.json")).expect("array");
    elements.push(serde_json::json!({"msys": {"message_event": {
        "type": poison_type(),
        "event_id": "92356927693813856",
        "timestamp": "1454442600",
        "message_id": "000443ee14578172be22",
    }}}));
    serde_json::to_vec(&elements).expect("json")
}

fn rows(data: &Path) -> i64 {
    report::partitions(data)
        .expect("report")
        .values()
        .map(|p| p.rows)
        .sum()
}

fn run(data: &Path, args: &[&str]) -> String {
    let output = sparklake()
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .expect("run sparklake");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn an_unwritable_event_is_dead_lettered_without_blocking_its_batch_then_fixed_and_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let settings = Settings {
        queue: QueueConfig {
            // Zero: a failed message is visible again at once, so no test waits on a clock.
            visibility_timeout: Duration::ZERO,
            max_receives: 3,
            ..QueueConfig::default()
        },
        ..Settings::default()
    };
    let pipeline = Pipeline::open(data, settings).expect("open");
    let config = IngestConfig::open(ingest::config::DEFAULT_MAX_BODY_BYTES);
    let request = http::Request::post("/")
        .body(Bytes::from(batch_with_poison()))
        .expect("request");
    let response = pipeline
        .ingest(&config)
        .handle(request, 1_700_000_000_000)
        .await;
    assert_eq!(response.status(), 200, "the batch is accepted whole");

    // Fanout splits by type: 19 messages of SparkPost's types and one of the long type.
    while pipeline.fanout_once(Duration::ZERO).await.expect("fanout") > 0 {}
    let queued = pipeline.events_queue.counts().await.expect("counts");
    assert_eq!(queued.visible, 20);

    // One writer batch holds all 20: the poison one fails, its 19 neighbours are written.
    let encoder = ParquetEncoder::default();
    let taken = pipeline
        .write_once(&encoder, Duration::ZERO, None)
        .await
        .expect("write");
    assert_eq!(taken, 20, "one batch");
    assert_eq!(rows(data), 19, "the neighbours are written");
    let left = pipeline.events_queue.counts().await.expect("counts");
    assert_eq!(
        (left.visible + left.in_flight, left.dead),
        (1, 0),
        "only the poison message is left, to be retried"
    );

    // Retried until the dead-letter queue takes it; nothing else is held up meanwhile.
    pipeline.drain().await.expect("drain");
    let events = pipeline.events_queue.counts().await.expect("counts");
    assert_eq!((events.visible, events.in_flight, events.dead), (0, 0, 1));
    let dead = pipeline
        .local
        .as_ref()
        .expect("local")
        .events
        .peek_dead(10)
        .await
        .expect("peek");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].receive_count, 3, "tried max_receives times");
    assert_eq!(rows(data), 19);
    drop(pipeline);

    let status = run(data, &["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("events") && l.split_whitespace().nth(3) == Some("1")),
        "status shows the dead letter: {status}"
    );

    // The fix: shorten over-long partition values; then re-drive and let serve write it.
    let said = run(data, &["redrive", "--queue", "events"]);
    assert!(said.contains("events: moved 1 message(s)"), "{said}");
    let mut command = sparklake();
    command
        .env("SPARKLAKE_PARTITION_VALUE_MAX_BYTES", "200")
        .env("SPARKLAKE_AUTH", "none")
        .env("SPARKLAKE_LOG", "warn")
        .stderr(Stdio::null());
    // SIGTERM: serve stops accepting, drains both queues and exits 0.
    Server::start(serve(command, data, &[])).terminate();

    assert_eq!(rows(data), 20, "the replayed event is written");
    let partitions = report::partitions(data).expect("report");
    let long = poison_type();
    let (shortened, _) = partitions
        .keys()
        .find(|(t, _)| t.contains("%7E"))
        .expect("a shortened partition");
    assert_eq!(shortened.len(), 200);
    assert!(long.starts_with(shortened.split("%7E").next().unwrap_or_default()));

    // The `type` column keeps the whole type.
    let report = &partitions[&(shortened.clone(), "2016-02-02".to_owned())];
    let parquet = report
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "parquet"))
        .expect("a parquet file");
    let file = std::fs::File::open(parquet).expect("open");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut types = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let column = batch.column_by_name("type").expect("type column");
        let strings = column
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("strings");
        types.extend((0..strings.len()).map(|i| strings.value(i).to_owned()));
    }
    assert_eq!(types, vec![long]);

    let status = run(data, &["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("events") && l.split_whitespace().nth(3) == Some("0")),
        "no dead letter left: {status}"
    );
}
