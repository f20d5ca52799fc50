//! `sparklake serve --backend aws` end to end against the emulator: POST the sample batch, stop
//! gracefully, and every event is in S3 exactly once; then `sparklake status --backend aws`.
#![allow(clippy::unwrap_used)]

mod aws_common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_common::*;

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
    let mut command = Command::new(env!("CARGO_BIN_EXE_sparklake"));
    env(&mut command);
    let mut child = command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--poll-wait-secs",
            "1",
            "--writer-window-ms",
            "200",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .trim_start_matches("sparklake listening on http://")
        .trim_end_matches('/')
        .to_owned();

    let (status, body) = sparklake::http_client::post(&addr, &fixture("sparkpost/batch.json"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = sparklake::http_client::post(&addr, br#"[{"msys":{}}]"#)
        .await
        .unwrap();
    assert_eq!(status, 200);

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not drain and exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit}");

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

    let mut status = Command::new(env!("CARGO_BIN_EXE_sparklake"));
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
