//! A full disk and a read-only data folder, for real, under the running `sparklake serve`.
//!
//! The server runs in its own user and mount namespaces (`unshare --user --map-root-user
//! --mount`, which needs no privilege where unprivileged user namespaces are allowed, and works
//! as root) with its data folder on a small tmpfs. The test reaches that folder from outside
//! through `/proc/<pid>/root/...`: it fills the tmpfs with a file until the kernel says ENOSPC,
//! and deletes the file to give the space back (first the output volume, `parquet/` on a tmpfs
//! of its own, then the data folder's, which holds the queue); it bind-mounts `parquet/` and
//! `quarantine/` read-only with `nsenter`, then read-write again. Throughout: ingest answers 200 or 503 (with
//! `Retry-After`), never 500; nothing answered 200 is lost or dead-lettered; the service recovers
//! by itself, without a restart, once the space or the write access is back.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sparklake::generate::Generator;
use sparklake::queue::{LocalQueues, QueueConfig};
use sparklake_core::ports::QueueCounts;
use support::http::Answer;
use support::lake::Identity;
use support::{http, lake, process};

/// The tmpfs the data folder lives on.
const TMPFS_SIZE: &str = "24m";
/// The tmpfs mounted on `parquet/` inside it: the output volume.
const OUTPUT_TMPFS_SIZE: &str = "8m";
/// Receives before a message is dead-lettered: the read-only phase outlasts them.
const MAX_RECEIVES: usize = 3;

/// Whether this machine lets us mount a tmpfs in new user and mount namespaces.
fn namespaces_work(scratch: &Path) -> bool {
    let dir = scratch.join("probe");
    std::fs::create_dir_all(&dir).expect("probe dir");
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg("mount -t tmpfs -o size=1m tmpfs \"$0\" && touch \"$0/x\"")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `serve` on a tmpfs in its own namespaces. `wrapper` is the shell around it (it copies the
/// data folder out after serve exits, since the tmpfs goes away with the namespace); `pid` is
/// serve's own.
struct Boxed {
    wrapper: Child,
    pid: u32,
    addr: String,
    /// The data folder as seen from outside the namespace.
    inside: PathBuf,
    /// Where the data folder is copied after a clean exit.
    out: PathBuf,
}

impl Boxed {
    fn start(dir: &Path, log: &Path) -> Self {
        let data = dir.join("data");
        let out = dir.join("out");
        std::fs::create_dir_all(&data).expect("mount point");
        std::fs::create_dir_all(&out).expect("out");
        let script = r#"
            mount -t tmpfs -o size="$TMPFS_SIZE" tmpfs "$DATA" || exit 90
            mkdir "$DATA/parquet" || exit 90
            mount -t tmpfs -o size="$OUTPUT_TMPFS_SIZE" tmpfs "$DATA/parquet" || exit 90
            "$BIN" serve --listen 127.0.0.1:0 --data "$DATA" --visibility-timeout-secs 1 \
                --writer-window-ms 100 --max-receives "$MAX_RECEIVES" &
            pid=$!
            echo "serve pid $pid"
            wait "$pid"
            rc=$?
            cp -a "$DATA/." "$OUT/" || exit 91
            exit "$rc"
        "#;
        let mut wrapper = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", script])
            .env("TMPFS_SIZE", TMPFS_SIZE)
            .env("OUTPUT_TMPFS_SIZE", OUTPUT_TMPFS_SIZE)
            .env("DATA", &data)
            .env("OUT", &out)
            .env("BIN", process::binary())
            .env("MAX_RECEIVES", MAX_RECEIVES.to_string())
            .env("SPARKLAKE_AUTH", "bearer")
            .env("SPARKLAKE_BEARER_TOKENS", http::TOKEN)
            .env("SPARKLAKE_LOG", "info")
            .env("SPARKLAKE_LOG_FORMAT", "json")
            .env("SPARKLAKE_METRICS_INTERVAL_SECS", "3600")
            .stdout(Stdio::piped())
            .stderr(lake::log_file(log))
            .spawn()
            .expect("spawn unshare");
        let mut lines = BufReader::new(wrapper.stdout.take().expect("stdout")).lines();
        let (mut pid, mut addr) = (None, None);
        while pid.is_none() || addr.is_none() {
            let line = lines
                .next()
                .expect("serve printed its pid and address")
                .expect("read");
            if let Some(p) = line.strip_prefix("serve pid ") {
                pid = p.trim().parse().ok();
            } else if let Some(a) = process::listening_addr(&line) {
                addr = Some(a);
            } else {
                panic!("unexpected output {line:?}");
            }
        }
        let pid: u32 = pid.expect("pid");
        let inside = PathBuf::from(format!("/proc/{pid}/root"))
            .join(data.strip_prefix("/").expect("absolute"));
        Self {
            wrapper,
            pid,
            addr: addr.expect("addr"),
            inside,
            out,
        }
    }

    /// Runs a shell command in serve's namespaces.
    fn nsenter(&self, command: &str) {
        let status = Command::new("nsenter")
            .args([
                "-t",
                &self.pid.to_string(),
                "-U",
                "-m",
                "--preserve-credentials",
            ])
            .args(["sh", "-c", command])
            .status()
            .expect("nsenter");
        assert!(status.success(), "in the namespace: {command}");
    }

    /// Makes `sub` of the data folder read-only (true) or writable again (false).
    fn read_only(&self, sub: &str, on: bool) {
        let path = self.inside_path(sub);
        if on {
            self.nsenter(&format!(
                "mkdir -p '{path}' && mount --bind '{path}' '{path}' && mount -o remount,bind,ro '{path}'"
            ));
        } else {
            self.nsenter(&format!("umount '{path}'"));
        }
    }

    /// `sub` as serve sees it.
    fn inside_path(&self, sub: &str) -> String {
        let data = self
            .inside
            .strip_prefix(format!("/proc/{}/root", self.pid))
            .expect("prefix");
        format!("/{}/{sub}", data.display())
    }

    /// Writes to a filler file in `sub` (`""`: the data folder) until its tmpfs is full.
    /// Returns the filler's size.
    fn fill(&self, sub: &str) -> u64 {
        let path = self.inside.join(sub).join("filler");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("filler");
        for chunk in [1 << 20, 4096, 1] {
            let buffer = vec![0u8; chunk];
            loop {
                match file.write(&buffer) {
                    Ok(n) if n == chunk => {}
                    Ok(_) => break,
                    Err(e) => {
                        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                        break;
                    }
                }
            }
        }
        // Proof that the disk is full: not one more byte fits.
        let error = file.write_all(b"x").expect_err("the tmpfs is full");
        assert_eq!(error.kind(), std::io::ErrorKind::StorageFull);
        file.metadata().expect("filler metadata").len()
    }

    /// Deletes the filler in `sub`.
    fn free_space(&self, sub: &str) {
        std::fs::remove_file(self.inside.join(sub).join("filler")).expect("remove filler");
    }

    fn terminate(mut self) -> PathBuf {
        process::signal(self.pid, "TERM");
        process::wait_success(&mut self.wrapper, "serve (and the copy of its data folder)");
        self.out
    }
}

/// Posts until the answer is 200: for retrying what was answered 503 once the fault is gone.
async fn post_until_accepted(addr: &str, body: &[u8]) -> Vec<u16> {
    let mut statuses = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http::try_post(addr, body).await.expect("an answer");
        statuses.push(answer.status);
        if answer.status == 200 {
            return statuses;
        }
        assert_unavailable(&answer);
        assert!(Instant::now() < deadline, "still refused: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_unavailable(answer: &Answer) {
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(
        answer.headers.get("retry-after").map(String::as_str),
        Some("30")
    );
}

/// Waits until every identity of `want` is in the Parquet and the CSV output under `data`.
fn wait_written(data: &Path, want: &BTreeSet<Identity>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let written: BTreeSet<Identity> = lake::parquet_identities(data).into_iter().collect();
        let csv: BTreeSet<Identity> = lake::csv_identities(data).into_iter().collect();
        if want.is_subset(&written) && want.is_subset(&csv) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted events still not written",
            want.difference(&written).count()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const FANOUT: &str = "fanout batch done";
const WRITER: &str = "writer batch done";

/// Fanout or writer calls (by their closing log line) that failed some of their messages.
fn failed_calls(log: &Path, done: &str) -> usize {
    lake::log_events(log, done)
        .iter()
        .filter(|f| f["failed"].as_u64().unwrap_or(0) > 0)
        .count()
}

/// Waits until the writer has failed `n` calls.
fn wait_failed_writer_calls(log: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while failed_calls(log, WRITER) < n {
        assert!(
            Instant::now() < deadline,
            "the writer stopped retrying after {} failed calls: its messages were dead-lettered",
            failed_calls(log, WRITER)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn identities(batches: &[&String]) -> BTreeSet<Identity> {
    batches
        .iter()
        .flat_map(|b| lake::batch_identities(b))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn full_and_read_only_data_folder_answer_503_lose_nothing_and_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !namespaces_work(dir.path()) {
        eprintln!(
            "note: this machine does not allow `unshare --user --map-root-user --mount` with a tmpfs; \
             the full-disk test cannot run here (the queue size limit test still covers the 503 path)"
        );
        return;
    }
    let log = dir.path().join("serve.log");
    let server = Boxed::start(dir.path(), &log);
    let addr = server.addr.clone();
    // Batches of ~100 KB: a few dozen exhaust the slack SQLite's write-ahead log keeps.
    let mut generator = Generator::new(7, 1_000_000_000);
    let batches: Vec<String> = (0..200).map(|_| generator.batch(100)).collect();
    let mut next = batches.iter();
    let mut accepted: Vec<&String> = Vec::new();

    // Healthy: accepted and written.
    for _ in 0..3 {
        let batch = next.next().expect("batch");
        let answer = http::try_post(&addr, batch.as_bytes())
            .await
            .expect("answer");
        assert_eq!(answer.status, 200, "{}", answer.body);
        accepted.push(batch);
    }
    wait_written(&server.inside, &identities(&accepted));

    // The output volume full (`parquet/` is its own small tmpfs): ingest is unaffected, the
    // writer fails with ENOSPC and keeps its messages, received again past the maximum receives
    // instead of dead-lettered, until the space returns.
    let output_filled = server.fill("parquet");
    let failures_before = failed_calls(&log, WRITER);
    for _ in 0..3 {
        let batch = next.next().expect("batch");
        let answer = http::try_post(&addr, batch.as_bytes())
            .await
            .expect("answer");
        assert_eq!(answer.status, 200, "{}", answer.body);
        accepted.push(batch);
    }
    // The messages are received MAX_RECEIVES times and fail; one more failed call means they
    // were received again instead of being dead-lettered.
    wait_failed_writer_calls(&log, failures_before + MAX_RECEIVES + 1);
    let output_failures = failed_calls(&log, WRITER) - failures_before;
    server.free_space("parquet");
    wait_written(&server.inside, &identities(&accepted));
    println!(
        "output volume full: parquet/ tmpfs {OUTPUT_TMPFS_SIZE}, filler {output_filled} bytes; 3 batches 200; {output_failures} failed writer calls (max receives {MAX_RECEIVES}); space back: all written"
    );

    // The data folder full: a refused body cannot be quarantined, so it is 503, not 400; valid
    // batches are 200 while the queue still fits in the space SQLite already holds, then 503.
    let fanout_before = failed_calls(&log, FANOUT);
    let filled = server.fill("");
    let malformed = br#"[{"msys":{"message_event":{"type":"bounce"},"track_event":{}}}]"#;
    let answer = http::try_post(&addr, malformed).await.expect("answer");
    assert_unavailable(&answer);
    let mut refused: Vec<&String> = Vec::new();
    let mut accepted_while_full = 0;
    while refused.len() < 2 {
        let batch = next
            .next()
            .expect("a post is refused before the batches run out");
        server.fill("");
        let answer = http::try_post(&addr, batch.as_bytes())
            .await
            .expect("answer");
        if answer.status == 200 {
            accepted_while_full += 1;
            accepted.push(batch);
        } else {
            assert_unavailable(&answer);
            refused.push(batch);
        }
    }
    // A few more, all refused or accepted, never anything else.
    for _ in 0..3 {
        let batch = next.next().expect("batch");
        let answer = http::try_post(&addr, batch.as_bytes())
            .await
            .expect("answer");
        if answer.status == 200 {
            accepted.push(batch);
        } else {
            assert_unavailable(&answer);
            refused.push(batch);
        }
    }
    let reasons: BTreeSet<String> = lake::log_events(&log, "enqueue failed; SparkPost will retry")
        .iter()
        .filter_map(|f| f["error"].as_str().map(str::to_owned))
        .collect();
    let fanout_failures = failed_calls(&log, FANOUT) - fanout_before;

    // Space returns: the same server takes the refused batches and the malformed body again.
    server.free_space("");
    let mut retries = 0;
    for batch in &refused {
        retries += post_until_accepted(&addr, batch.as_bytes()).await.len();
        accepted.push(batch);
    }
    let answer = http::try_post(&addr, malformed).await.expect("answer");
    assert_eq!(answer.status, 400, "quarantined now: {}", answer.body);
    wait_written(&server.inside, &identities(&accepted));
    println!(
        "data folder full: tmpfs {TMPFS_SIZE}, filler {filled} bytes; malformed body 503; {accepted_while_full} batch(es) 200, then {} refused 503 with Retry-After ({reasons:?}); failed fanout calls {fanout_failures}; space back: {retries} post(s) to get them all 200, malformed 400",
        refused.len(),
    );

    // Read-only output and quarantine: ingest still takes valid batches (the queue is
    // writable), a refused body is 503, the writer fails (EROFS) and keeps its messages.
    server.read_only("parquet", true);
    server.read_only("quarantine", true);
    let failures_before = failed_calls(&log, WRITER);
    let mut while_read_only = Vec::new();
    for _ in 0..3 {
        let batch = next.next().expect("batch");
        let answer = http::try_post(&addr, batch.as_bytes())
            .await
            .expect("answer");
        assert_eq!(answer.status, 200, "{}", answer.body);
        while_read_only.push(batch);
    }
    let other_malformed = br#"[{"msys":{"message_event":{"type":""}}}]"#;
    let answer = http::try_post(&addr, other_malformed)
        .await
        .expect("answer");
    assert_unavailable(&answer);
    wait_failed_writer_calls(&log, failures_before + MAX_RECEIVES + 1);
    let failures = failed_calls(&log, WRITER) - failures_before;
    server.read_only("parquet", false);
    server.read_only("quarantine", false);
    accepted.extend(while_read_only);
    wait_written(&server.inside, &identities(&accepted));
    let answer = http::try_post(&addr, other_malformed)
        .await
        .expect("answer");
    assert_eq!(answer.status, 400, "{}", answer.body);
    println!(
        "read-only parquet/ and quarantine/: 3 batches 200, malformed body 503; {failures} failed writer calls (max receives {MAX_RECEIVES}); writable again: all written, malformed 400"
    );

    // A clean stop: everything accepted is in Parquet and CSV, nothing waits or is dead.
    let out = server.terminate();
    let want = identities(&accepted);
    let parquet_rows = lake::parquet_identities(&out);
    let parquet_count = parquet_rows.len();
    let parquet: BTreeSet<Identity> = parquet_rows.into_iter().collect();
    let csv_rows = lake::csv_identities(&out);
    let csv_count = csv_rows.len();
    let csv: BTreeSet<Identity> = csv_rows.into_iter().collect();
    assert!(
        want.is_subset(&parquet),
        "accepted events missing from Parquet"
    );
    assert!(want.is_subset(&csv), "accepted events missing from CSV");
    let queues = LocalQueues::open(&out.join("queue.sqlite3")).expect("queue database");
    for name in ["ingest", "events"] {
        let counts = queues
            .queue(name, QueueConfig::default())
            .counts()
            .await
            .expect("counts");
        assert_eq!(counts, QueueCounts::default(), "queue {name}");
    }
    println!(
        "  events accepted {}; Parquet {} rows, {} distinct; CSV {} rows, {} distinct; queues empty, nothing dead-lettered",
        want.len(),
        parquet_count,
        parquet.len(),
        csv_count,
        csv.len()
    );
    let logged = std::fs::read_to_string(&log).expect("log");
    let leaks: Vec<&str> = logged.lines().filter(|l| l.contains(http::TOKEN)).collect();
    assert!(leaks.is_empty(), "the log holds the token: {leaks:?}");
}

/// The queue size limit (`SPARKLAKE_QUEUE_MAX_BYTES`) takes the same path as a full disk, on any
/// machine: while the queue database holds the limit, ingest answers 503 with `Retry-After`;
/// as the writer drains it, the same batches are accepted, without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn queue_size_limit_answers_503_and_recovers_as_the_writer_drains() {
    const LIMIT: u64 = 1024 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let mut command = lake::serve_command(
        &data,
        &log,
        // The writer gathers for two seconds: the backlog outgrows the limit meanwhile.
        &["--writer-window-ms", "2000", "--writer-batch-size", "10000"],
    );
    command.env("SPARKLAKE_QUEUE_MAX_BYTES", LIMIT.to_string());
    let server = process::Server::start(command);
    let mut generator = Generator::new(11, 1_000_000_000);
    let batches: Vec<String> = (0..100).map(|_| generator.batch(100)).collect();
    let mut accepted = Vec::new();
    let mut refused = None;
    for batch in &batches {
        let answer = http::try_post(&server.addr, batch.as_bytes())
            .await
            .expect("answer");
        if answer.status == 200 {
            accepted.push(batch);
        } else {
            assert_unavailable(&answer);
            refused = Some(batch);
            break;
        }
    }
    let refused = refused.expect("the limit is reached before 100 batches of 100 KB");
    let before = accepted.len();
    let statuses = post_until_accepted(&server.addr, refused.as_bytes()).await;
    accepted.push(refused);
    server.terminate();

    let want = identities(&accepted);
    let parquet: BTreeSet<Identity> = lake::parquet_identities(&data).into_iter().collect();
    assert!(want.is_subset(&parquet), "accepted events missing");
    let reasons = lake::log_events(&log, "enqueue failed; SparkPost will retry");
    assert!(
        reasons.iter().all(|f| f["error"]
            .as_str()
            .is_some_and(|e| e.contains("SPARKLAKE_QUEUE_MAX_BYTES"))),
        "{reasons:?}"
    );
    println!(
        "queue limit {LIMIT} bytes: {before} batches of ~100 KB accepted, then 503 with Retry-After; accepted after {} post(s) as the writer drained; {} events, all written",
        statuses.len(),
        want.len()
    );
}
