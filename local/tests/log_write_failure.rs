//! `serve` whose logs cannot be written (stderr on a full disk: `/dev/full` answers every write
//! with ENOSPC) still processes and writes everything it accepted. Before, tracing reported the
//! failed write with `eprintln!`, which panicked on the same error and killed the fanout and
//! writer workers, while the HTTP server went on answering 200 with nothing draining the queues.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: `SPARKLAKE_BIN` if set, else the one cargo built.
fn sparklake_bin() -> std::path::PathBuf {
    std::env::var_os("SPARKLAKE_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_sparklake").into())
}

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
    let mut serve = Command::new(sparklake_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("SPARKLAKE_AUTH", "none")
        .env("SPARKLAKE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("serve");
    let mut line = String::new();
    BufReader::new(serve.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    assert!(
        line.starts_with("sparklake listening on http://"),
        "serve did not start with an unwritable log: {line:?}"
    );
    let addr = line
        .trim()
        .trim_start_matches("sparklake listening on http://")
        .trim_end_matches('/')
        .to_owned();
    let sample = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/sparkpost/batch.json"),
    )
    .expect("fixture");
    let (status, body) = sparklake::http_client::post(&addr, &sample)
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
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(status) = serve.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = serve.kill();
            panic!("serve did not drain and exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(rows, 19, "every accepted event is written");
    assert!(exit.success(), "serve's workers ended cleanly: {exit}");
}
