//! `serve` whose logs cannot be written (stderr on a full disk: `/dev/full` answers every write
//! with ENOSPC) still processes and writes everything it accepted. Before, tracing reported the
//! failed write with `eprintln!`, which panicked on the same error and killed the fanout and
//! writer workers, while the HTTP server went on answering 200 with nothing draining the queues.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::fixtures::fixture;
use support::process::{Server, serve, sparklake};

#[tokio::test]
async fn serve_keeps_working_when_its_log_cannot_be_written() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        eprintln!("no /dev/full on this system; nothing to test");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let stderr = std::fs::OpenOptions::new()
        .write(true)
        .open(full)
        .expect("open /dev/full");
    let mut command = sparklake();
    command
        .env("SPARKLAKE_AUTH", "none")
        .env("SPARKLAKE_LOG", "debug")
        .stderr(Stdio::from(stderr));
    // Starting at all (the listening line read) is the first thing an unwritable log broke.
    let server = Server::start(serve(command, data, &[]));
    let (status, body) =
        sparklake::http_client::post(&server.addr, &fixture("sparkpost/batch.json"))
            .await
            .expect("post");
    assert_eq!(status, 200, "{body}");

    // The workers must write the batch while serve runs (every step logs, every log fails).
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows: i64 = sparklake::report::partitions(data)
            .map(|p| p.values().map(|r| r.rows).sum())
            .unwrap_or(0);
        if rows >= 19 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let exit = server.stop(Duration::from_secs(60));
    assert_eq!(rows, 19, "every accepted event is written");
    assert!(exit.success(), "serve's workers ended cleanly: {exit}");
}
