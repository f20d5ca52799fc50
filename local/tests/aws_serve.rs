//! `sparklake serve --backend aws` end to end against the emulator: POST the sample batch, stop
//! gracefully, and every event is in S3 exactly once; then `sparklake status --backend aws`.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};

use support::aws::*;
use support::fixtures::fixture;
use support::process::{Server, sparklake};

#[tokio::test(flavor = "multi_thread")]
async fn serve_backend_aws_writes_every_event_once_and_drains_on_sigterm() {
    let aws = aws().await;
    let (ingest_url, _) = queue_with_dlq(&aws, &unique("serve-in"), 3, 30).await;
    let (events_url, _) = queue_with_dlq(&aws, &unique("serve-events"), 3, 30).await;
    let lake = unique("serve-lake");
    bucket(&aws, &lake).await;
    let stream = unique("serve-archive");
    firehose_to(&aws, &stream, &lake).await;

    let env = |command: &mut Command| {
        command
            .env("AWS_ENDPOINT_URL", &aws.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("SPARKLAKE_S3_FORCE_PATH_STYLE", "true")
            .env("SPARKLAKE_BACKEND", "aws")
            .env("SPARKLAKE_INGEST_QUEUE_URL", &ingest_url)
            .env("SPARKLAKE_WRITER_QUEUE_URL", &events_url)
            .env("SPARKLAKE_BUCKET", &lake)
            .env("SPARKLAKE_PREFIX", "lake")
            .env("SPARKLAKE_ARCHIVE_STREAM", &stream)
            .env("SPARKLAKE_AUTH", "none")
            .env("SPARKLAKE_LOG", "warn");
    };
    let mut command = sparklake();
    env(&mut command);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--poll-wait-secs",
            "1",
            "--writer-window-ms",
            "200",
        ])
        .stderr(Stdio::inherit());
    let server = Server::start(command);
    let addr = server.addr.clone();

    let (status, body) = sparklake::http_client::post(&addr, &fixture("sparkpost/batch.json"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = sparklake::http_client::post(&addr, br#"[{"msys":{}}]"#)
        .await
        .unwrap();
    assert_eq!(status, 200);

    // SIGTERM: serve drains what it accepted and exits 0.
    server.terminate();

    let ids = parquet_event_ids(&aws, &lake, "lake/parquet/").await;
    assert_eq!(ids.len(), 19, "{ids:?}");
    let mut unique_ids = ids.clone();
    unique_ids.dedup();
    assert_eq!(unique_ids.len(), 19, "each event once");
    assert_eq!(keys(&aws, &lake, "lake/csv/").await.len(), 19);
    assert!(
        !keys(&aws, &lake, "archive/").await.is_empty(),
        "raw archive through Firehose"
    );

    let mut status = sparklake();
    env(&mut status);
    let output = status.arg("status").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("ingest") && said.contains("events"), "{said}");
}
