//! The real `sparklake serve` process: a kill -9 after batches were answered 200 loses none of
//! them once the process is restarted; SIGTERM drains everything accepted and exits 0.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sparklake::commands::post;

fn sparklake() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sparklake"))
}

/// Starts `serve` on a free port and returns the child and its address.
fn start(data: &Path, extra: &[&str]) -> (Child, String) {
    let mut command = sparklake();
    command
        .env("SPARKLAKE_AUTH", "none")
        .env("SPARKLAKE_LOG", "warn")
        .stderr(Stdio::inherit());
    start_with(command, data, extra)
}

fn start_with(mut command: Command, data: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sparklake serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .trim()
        .strip_prefix("sparklake listening on http://")
        .and_then(|a| a.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

fn terminate(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    // Bounded wait so a hung drain fails the test instead of hanging CI.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "serve exited with {status} after SIGTERM");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A batch of `n` distinct events of mixed types, ids prefixed by `batch`.
fn batch(batch: usize, n: usize) -> String {
    let types = [
        ("message_event", "delivery"),
        ("message_event", "bounce"),
        ("track_event", "open"),
        ("unsubscribe_event", "list_unsubscribe"),
    ];
    let elements: Vec<String> = (0..n)
        .map(|i| {
            let (class, t) = types[i % types.len()];
            format!(r#"{{"msys":{{"{class}":{{"type":"{t}","event_id":"{batch}-{i}","timestamp":"1454442600","subject":"line one\nline two"}}}}}}"#)
        })
        .collect();
    format!("[{}]", elements.join(","))
}

fn written_event_ids(data: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for entry in walk(&data.join("parquet")) {
        let file = std::fs::File::open(&entry).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let column = batch.column_by_name("event_id").expect("event_id column");
            let strings = column
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .expect("utf8");
            ids.extend(strings.iter().map(|s| s.unwrap_or_default().to_owned()));
        }
    }
    ids
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                vec![e.path()]
            }
        })
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_dash_nine_then_restart_loses_no_accepted_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    // A writer window far longer than the test: nothing is written before the kill.
    let (mut child, addr) = start(
        data,
        &[
            "--writer-window-ms",
            "3600000",
            "--writer-batch-size",
            "10000",
        ],
    );
    let (batches, per_batch) = (6, 25);
    for b in 0..batches {
        let (status, body) = post(&addr, batch(b, per_batch).as_bytes())
            .await
            .expect("post");
        assert_eq!(status, 200, "{body}");
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert!(
        written_event_ids(data).is_empty(),
        "the long window kept the writer from writing before the kill"
    );

    let (child, _) = start(data, &[]);
    terminate(child);
    let ids = written_event_ids(data);
    let unique: BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        batches * per_batch,
        "every accepted event written"
    );
    assert_eq!(ids.len(), unique.len(), "and written once");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_what_was_accepted_and_health_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, addr) = start(
        dir.path(),
        &[
            "--writer-window-ms",
            "3600000",
            "--visibility-timeout-secs",
            "7200",
        ],
    );
    let (status, _) = post(&addr, batch(0, 10).as_bytes()).await.expect("post");
    assert_eq!(status, 200);
    let (status, _) = post(&addr, br#"[{"msys":{}}]"#).await.expect("ping");
    assert_eq!(status, 200);
    let (status, body) = post(&addr, b"[{\"msys\":{\"a\":1,\"b\":2}}]")
        .await
        .expect("bad");
    assert_eq!(status, 400, "{body}");
    terminate(child);
    assert_eq!(written_event_ids(dir.path()).len(), 10);

    // The numbers serve kept, as `status` shows them.
    let snapshot: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("metrics.json")).expect("metrics.json"),
    )
    .expect("json");
    let totals = &snapshot["totals"];
    assert_eq!(totals["batches"], 2, "the batch and the ping");
    assert_eq!(totals["rejected"], 1);
    assert_eq!(totals["events_in"]["delivery"], 3);
    assert_eq!(
        totals["rows_per_object"]
            .as_array()
            .map(|r| r.iter().filter_map(|n| n.as_u64()).sum::<u64>()),
        Some(10)
    );
    assert_eq!(totals["oldest_event_millis"], 1_454_442_600_000_i64);
    let output = sparklake()
        .args(["status", "--data"])
        .arg(dir.path())
        .output()
        .expect("status");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("metrics, since start: batches 2 "), "{said}");
    assert!(
        said.contains("events 10 rejected 1 failures 0 objects 4 rows 10"),
        "{said}"
    );
}

/// Posts with extra headers over plain HTTP/1.1; returns the status code.
async fn post_with(addr: &str, headers: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status")
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_carry_no_token_password_or_recipient_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr.log");
    let mut command = sparklake();
    command
        .env("SPARKLAKE_AUTH", "bearer,header")
        .env("SPARKLAKE_BEARER_TOKENS", "t0ken-alpha,t0ken-beta")
        .env("SPARKLAKE_HEADER_NAME", "x-hook-secret")
        .env("SPARKLAKE_HEADER_VALUE", "h3ader-secret")
        .env("SPARKLAKE_LOG", "trace")
        .env("SPARKLAKE_LOG_FORMAT", "json")
        .stderr(std::fs::File::create(&log).expect("log file"));
    let data = dir.path().join("data");
    let (child, addr) = start_with(command, &data, &[]);
    let good = "Authorization: Bearer t0ken-beta\r\nX-Hook-Secret: h3ader-secret\r\n";
    let sample = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/sparkpost/batch.json"),
    )
    .expect("fixture");
    assert_eq!(post_with(&addr, good, &sample).await, 200);
    assert_eq!(
        post_with(
            &addr,
            "Authorization: Bearer t0ken-gamma\r\nX-Hook-Secret: h3ader-secret\r\n",
            &sample
        )
        .await,
        401
    );
    assert_eq!(
        post_with(
            &addr,
            "Authorization: Bearer t0ken-beta\r\nX-Hook-Secret: wr0ng-secret\r\n",
            &sample
        )
        .await,
        401
    );
    // serde's error for this element quotes the string: the response may, the log must not.
    assert_eq!(
        post_with(&addr, good, br#"["someone@example.org"]"#).await,
        400
    );
    terminate(child);
    assert_eq!(written_event_ids(&data).len(), 19);

    let logged = std::fs::read_to_string(&log).expect("read log");
    assert!(
        logged.contains("batch enqueued"),
        "the log is really captured"
    );
    for secret in [
        "t0ken-alpha",
        "t0ken-beta",
        "t0ken-gamma",
        "h3ader-secret",
        "wr0ng-secret",
        "@example.com",
        "@example.org",
        "Summer deals",
    ] {
        assert!(!logged.contains(secret), "log holds {secret:?}");
    }
}
