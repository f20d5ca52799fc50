//! The internet-facing edge under attack, against the real `sparklake serve` on 127.0.0.1 with
//! its limits lowered through the settings so each test is quick: each shows the bound holds, a
//! legitimate POST is still answered (200, or 503 that a retry turns into 200), and every
//! accepted event is written. Memory is read from /proc.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::http::{Answer, TOKEN, parse_what_arrived};
use support::lake::{numbered_batch, serve_command, written_event_ids};
use support::process::{Server, sparklake};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut command = serve_command(&dir.join("data"), &dir.join("serve.log"), &[]);
    command
        .env("SPARKLAKE_WRITER_WINDOW_MS", "50")
        .env("SPARKLAKE_COMPACT_INTERVAL_SECS", "0");
    for (k, v) in env {
        command.env(k, v);
    }
    Server::start(command)
}

/// Reads what the server sends within `limit` (until it closes, or the limit): a bound on a
/// hang, not a timing assertion.
async fn read_for(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// A legitimate batch, retried (as SparkPost retries) while the server answers 503: the first
/// non-503 answer.
async fn post_until_not_503(addr: &str, body: &str) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = support::http::try_post(addr, body.as_bytes())
            .await
            .unwrap_or_default();
        if answer.status != 503 && answer.status != 0 || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn head(addr: &str, credential: &str, extra: &str) -> String {
    format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {credential}\r\nContent-Type: application/json\r\n{extra}\r\n"
    )
}

/// Issue 14, attack 1: without a credential nothing of the body is read, so 200 connections
/// each declaring a 9 MB body (`Expect: 100-continue` on half of them) cost no memory, get 401
/// at once, and never a `100 Continue`.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_the_credential_is_refused_on_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let addr = server.addr.clone();
    let before = support::process::rss_kb(server.child.id()).unwrap();
    let mut held = Vec::new();
    for i in 0..200 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let expect = if i % 2 == 0 {
            "Expect: 100-continue\r\n"
        } else {
            ""
        };
        let request = head(
            &addr,
            "wrong",
            &format!("Content-Length: 9000000\r\n{expect}"),
        );
        // The head with a first slice of the body, in one write: the body is never read on.
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(&[b' '; 1024]);
        stream.write_all(&bytes).await.unwrap();
        held.push(stream);
    }
    for stream in &mut held {
        let (answer, _) = read_for(stream, Duration::from_secs(10)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
        assert!(!text.contains("100 Continue"), "{text}");
    }
    let grown = support::process::rss_kb(server.child.id())
        .unwrap()
        .saturating_sub(before);
    eprintln!("RSS {before} kB before, grew {grown} kB with 200 refused 9 MB heads held open");
    assert!(
        grown < 64 * 1024,
        "RSS grew {grown} kB while refusing 200 heads"
    );
    // A declared length over the limit without a credential is 401 too (not 413).
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let request = head(&addr, "wrong", "Content-Length: 99999999999\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (answer, _) = read_for(&mut stream, Duration::from_secs(10)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 401"));
    // The legitimate sender meanwhile.
    let answer = support::http::try_post(&addr, numbered_batch("legit", 1).as_bytes())
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    drop(held);
    server.terminate();
    assert_eq!(written_event_ids(&dir.path().join("data")), ["legit-1-0"]);
}

/// Attacks 1 and 2 with the credential: requests under way and body bytes in memory are
/// bounded (503 + Retry-After past them), a body trickling in is cut off with 408, and the
/// legitimate sender's retry gets 200 once the holders are gone.
#[tokio::test(flavor = "multi_thread")]
async fn requests_and_body_memory_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            ("SPARKLAKE_MAX_REQUESTS", "8"),
            ("SPARKLAKE_MAX_BODY_BYTES", "1048576"),
            ("SPARKLAKE_MAX_BODY_MEMORY_BYTES", "4194304"),
            ("SPARKLAKE_BODY_TIMEOUT_SECS", "8"),
        ],
    );
    let addr = server.addr.clone();
    // Bodies of 1,000,000 bytes declared (977 KiB each): the memory budget (4 MiB) holds four,
    // the fifth and sixth are refused.
    let mut holders = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..6 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let request = head(&addr, TOKEN, "Content-Length: 1000000\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(b"[").await.unwrap();
        holders.push(stream);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for stream in &mut holders {
        let (answer, _) = read_for(stream, Duration::from_millis(300)).await;
        answers.push(parse_what_arrived(&answer));
    }
    let busy: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!(busy.len(), 2, "{answers:?}");
    assert!(busy.iter().all(|a| a.header("retry-after") == Some("30")));
    assert!(
        busy[0].body.contains("bodies in memory"),
        "{}",
        busy[0].body
    );
    // More requests than SPARKLAKE_MAX_REQUESTS at once: the excess is 503 as well.
    let mut more = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let request = head(&addr, TOKEN, "Transfer-Encoding: chunked\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(b"1\r\n[\r\n").await.unwrap();
        more.push(stream);
    }
    let mut too_many = 0;
    for stream in &mut more {
        let (answer, _) = read_for(stream, Duration::from_millis(300)).await;
        let answer = parse_what_arrived(&answer);
        if answer.status == 503 && answer.body.contains("too many requests") {
            too_many += 1;
        }
    }
    assert!(
        too_many >= 4,
        "{too_many} of 8 refused past the request limit"
    );
    // Every holder still trickling is cut off by the body timeout: 408.
    let mut timed_out = 0;
    for stream in holders.iter_mut().chain(more.iter_mut()) {
        let (answer, _) = read_for(stream, Duration::from_secs(10)).await;
        if parse_what_arrived(&answer).status == 408 {
            timed_out += 1;
        }
    }
    assert!(timed_out >= 4, "{timed_out} cut off with 408");
    let answer = post_until_not_503(&addr, &numbered_batch("legit", 2)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    server.terminate();
    assert_eq!(written_event_ids(&dir.path().join("data")), ["legit-2-0"]);
}

/// Attack 2: an HTTP/2 preface (h2c with prior knowledge) is not served.
#[tokio::test(flavor = "multi_thread")]
async fn http2_in_cleartext_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let mut stream = TcpStream::connect(&server.addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (answer, closed) = read_for(&mut stream, Duration::from_secs(10)).await;
    assert!(closed, "the connection stays open");
    // An HTTP/2 server answers with a SETTINGS frame (type 4 at byte 3); HTTP/1 with text.
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "{answer:?}"
    );
    server.terminate();
}

/// Attack 3: connections that send nothing, trickle a head, or stay idle after a response are
/// closed; past SPARKLAKE_MAX_CONNECTIONS new ones wait, and are served once the slow ones are
/// gone.
#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_connections_are_closed_and_connections_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            ("SPARKLAKE_MAX_CONNECTIONS", "16"),
            ("SPARKLAKE_HEADER_TIMEOUT_SECS", "1"),
            ("SPARKLAKE_IDLE_TIMEOUT_SECS", "1"),
        ],
    );
    let addr = server.addr.clone();
    // Sixteen connections that send nothing take every slot.
    let mut silent = Vec::new();
    for _ in 0..16 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    // One trickling a head, a byte every 200 ms.
    let trickle_addr = addr.clone();
    let trickler = tokio::spawn(async move {
        let mut stream = TcpStream::connect(&trickle_addr).await.unwrap();
        for byte in
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if stream.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (_, closed) = read_for(&mut stream, Duration::from_secs(10)).await;
        closed
    });
    for stream in &mut silent {
        let (_, closed) = read_for(stream, Duration::from_secs(10)).await;
        assert!(closed, "a silent connection was kept open");
    }
    assert!(trickler.await.unwrap(), "a trickled head was kept open");
    // Served once the slots are free; then an idle keep-alive connection is closed.
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let body = numbered_batch("legit", 3);
    let request = format!(
        "{}{body}",
        head(&addr, TOKEN, &format!("Content-Length: {}\r\n", body.len()))
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (answer, closed) = read_for(&mut stream, Duration::from_secs(10)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(closed, "an idle keep-alive connection was kept open");
    server.terminate();
    assert_eq!(written_event_ids(&dir.path().join("data")), ["legit-3-0"]);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(!log.contains("panicked"));
}

/// Attack 7: each way a body can go wrong has its own answer.
#[tokio::test(flavor = "multi_thread")]
async fn body_failures_get_the_status_that_says_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            ("SPARKLAKE_BODY_TIMEOUT_SECS", "1"),
            ("SPARKLAKE_MAX_BODY_BYTES", "100000"),
        ],
    );
    let addr = server.addr.clone();
    let exchange = |bytes: Vec<u8>| {
        let addr = addr.clone();
        async move {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
            let (answer, _) = read_for(&mut stream, Duration::from_secs(10)).await;
            parse_what_arrived(&answer)
        }
    };
    let chunked = head(&addr, TOKEN, "Transfer-Encoding: chunked\r\n");
    // A chunk size that is not hex.
    let bad_chunk = exchange(format!("{chunked}zz\r\n[]\r\n0\r\n\r\n").into_bytes()).await;
    assert_eq!(bad_chunk.status, 400, "{bad_chunk:?}");
    assert!(bad_chunk.body.contains("framing"), "{}", bad_chunk.body);
    // A trailer flood.
    let mut flood = format!("{chunked}2\r\n[]\r\n0\r\n").into_bytes();
    for i in 0..5_000 {
        flood.extend_from_slice(format!("X-T{i}: v\r\n").as_bytes());
    }
    flood.extend_from_slice(b"\r\n");
    let flooded = exchange(flood).await;
    assert_eq!(flooded.status, 400, "{flooded:?}");
    // A body that arrives too slowly: 408.
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(head(&addr, TOKEN, "Content-Length: 50\r\n").as_bytes())
        .await
        .unwrap();
    stream.write_all(b"[").await.unwrap();
    let (answer, _) = read_for(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(parse_what_arrived(&answer).status, 408);
    // Over the limit: 413, only then.
    let big = exchange(
        format!(
            "{}{}",
            head(&addr, TOKEN, "Content-Length: 200000\r\n"),
            "["
        )
        .into_bytes(),
    )
    .await;
    assert_eq!(big.status, 413);
    server.terminate();
}

/// Attack 5: after SIGTERM, a half-sent head and a body still trickling do not keep the
/// process alive past the grace: the body is answered 503, the head's connection closed, and
/// what was accepted before is written.
#[tokio::test(flavor = "multi_thread")]
async fn half_sent_requests_do_not_block_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            ("SPARKLAKE_SHUTDOWN_GRACE_SECS", "1"),
            ("SPARKLAKE_HEADER_TIMEOUT_SECS", "600"),
            ("SPARKLAKE_IDLE_TIMEOUT_SECS", "600"),
            ("SPARKLAKE_BODY_TIMEOUT_SECS", "600"),
        ],
    );
    let addr = server.addr.clone();
    let accepted = support::http::try_post(&addr, numbered_batch("before", 4).as_bytes())
        .await
        .unwrap();
    assert_eq!(accepted.status, 200);
    let mut half_head = TcpStream::connect(&addr).await.unwrap();
    half_head
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut slow_body = TcpStream::connect(&addr).await.unwrap();
    slow_body
        .write_all(head(&addr, TOKEN, "Content-Length: 100\r\n").as_bytes())
        .await
        .unwrap();
    slow_body.write_all(b"[").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut child = server.child;
    support::process::signal(child.id(), "TERM");
    let (answer, _) = read_for(&mut slow_body, Duration::from_secs(30)).await;
    let answer = parse_what_arrived(&answer);
    assert_eq!(answer.status, 503, "{answer:?}");
    let status =
        support::process::wait_exit(&mut child, Duration::from_secs(60), "serve after SIGTERM");
    assert!(status.success(), "{status}");
    let (_, closed) = read_for(&mut half_head, Duration::from_secs(5)).await;
    assert!(closed);
    assert_eq!(written_event_ids(&dir.path().join("data")), ["before-4-0"]);
}

/// Attack 6: the quarantine keeps refused bodies as sent (gzip stays gzip) within its budget,
/// then only their reasons; and a batch cannot make more partitions than the types cap.
#[tokio::test(flavor = "multi_thread")]
async fn the_quarantine_has_a_budget_and_a_batch_a_types_cap() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            ("SPARKLAKE_QUARANTINE_MAX_BYTES", "20000"),
            ("SPARKLAKE_MAX_TYPES_PER_BATCH", "3"),
        ],
    );
    let addr = server.addr.clone();
    // 10 KB of malformed JSON, gzipped to a few hundred bytes: kept as sent.
    let malformed = format!("[{{\"msys\": {}", "x".repeat(10_000));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(malformed.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let answer = support::http::post_with(
        &addr,
        format!("Authorization: Bearer {TOKEN}\r\nContent-Encoding: gzip\r\n").as_bytes(),
        &gz,
    )
    .await;
    assert_eq!(answer.status, 400);
    let quarantine = dir.path().join("data/quarantine");
    let kept = support::files::files_ending(&quarantine, ".body.gz");
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(&kept[0]).unwrap(), gz);
    // Distinct malformed bodies of 3 KB each until well past the budget: all answered 400.
    for i in 0..20 {
        let body = format!("[{{\"msys\": {i} {}", "y".repeat(3_000));
        let answer = support::http::try_post(&addr, body.as_bytes())
            .await
            .unwrap();
        assert_eq!(answer.status, 400, "{}", answer.body);
    }
    let bodies = support::files::files_ending(&quarantine, ".body");
    let reasons = support::files::files_ending(&quarantine, ".reason.json");
    let bytes: u64 = support::files::files_ending(&quarantine, "")
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        bytes <= 20_000 + 20_000 / 16,
        "quarantine holds {bytes} bytes"
    );
    assert!(
        bodies.len() < 20,
        "{} bodies kept past the budget",
        bodies.len()
    );
    assert!(
        reasons.len() > bodies.len() + 1,
        "reasons are kept past the budget"
    );
    let over: Vec<String> = reasons
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .filter(|r| r.contains("body_not_kept"))
        .collect();
    assert!(!over.is_empty());
    // Four types where three are allowed: refused, with no partition made.
    let types = ["delivery", "bounce", "open", "click"];
    let batch: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!(r#"{{"msys":{{"message_event":{{"type":"{t}","event_id":"cap-{i}","timestamp":"1717243200"}}}}}}"#))
        .collect();
    let answer = support::http::try_post(&addr, format!("[{}]", batch.join(",")).as_bytes())
        .await
        .unwrap();
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("SPARKLAKE_MAX_TYPES_PER_BATCH"),
        "{}",
        answer.body
    );
    let answer = support::http::try_post(&addr, format!("[{}]", batch[..3].join(",")).as_bytes())
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    server.terminate();
    let mut ids = written_event_ids(&dir.path().join("data"));
    ids.sort();
    assert_eq!(ids, ["cap-0", "cap-1", "cap-2"]);
}

/// Attack 4: with the process out of file descriptors (held by idle connections), messages are
/// delayed, never dead-lettered; failed accepts are logged; once the connections are gone the
/// batch is written. The descriptor limit is lowered with the shell's `ulimit -n`.
#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_descriptors_delays_messages_and_dead_letters_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "ulimit -n 96 && exec {} serve --listen 127.0.0.1:0 --data {}",
            support::process::binary().display(),
            data.display()
        ))
        .env("SPARKLAKE_AUTH", "bearer")
        .env("SPARKLAKE_BEARER_TOKENS", TOKEN)
        .env("SPARKLAKE_LOG", "info")
        .env("SPARKLAKE_LOG_FORMAT", "json")
        .env("SPARKLAKE_COMPACT_INTERVAL_SECS", "0")
        .env("SPARKLAKE_HEADER_TIMEOUT_SECS", "3")
        .env("SPARKLAKE_WRITER_WINDOW_MS", "1500")
        .env("SPARKLAKE_VISIBILITY_TIMEOUT_SECS", "1")
        .env("SPARKLAKE_MAX_RECEIVES", "2")
        .stderr(support::lake::log_file(&log));
    let server = Server::start(command);
    let addr = server.addr.clone();
    let batch = numbered_batch("fd", 5);
    let answer = support::http::try_post(&addr, batch.as_bytes())
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    // Hold more connections than the process has descriptors.
    let mut held = Vec::new();
    for _ in 0..200 {
        if let Ok(stream) = TcpStream::connect(&addr).await {
            held.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(held);
    // Once the descriptors are back the batch is written, and a new post is answered.
    let answer = post_until_not_503(&addr, &numbered_batch("after", 6)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A message whose writes failed waits out its visibility timeout before the next try.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ids = written_event_ids(&data);
    while ids.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ids = written_event_ids(&data);
    }
    server.terminate();
    ids.sort();
    assert_eq!(ids, ["after-6-0", "fd-5-0"]);
    let status = sparklake()
        .args(["status", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    for line in text
        .lines()
        .filter(|l| l.starts_with("ingest") || l.starts_with("events"))
    {
        assert!(line.trim_end().ends_with(" 0"), "dead letters: {line}");
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("could not accept a connection"),
        "no accept failure was logged"
    );
    assert!(!log.contains("moved a message to the dead-letter queue"));
    // For the record (timing decides whether the workers also hit the limit).
    let emfile = log.lines().filter(|l| l.contains("os error 24")).count();
    eprintln!("log lines naming EMFILE (os error 24): {emfile}");
}

/// Attack 7: `sparklake status | head -1` ends quietly.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new("sh")
        .arg("-c")
        // The reader is gone before the command writes its first line.
        .arg(format!(
            "{{ sleep 0.3; exec {} status --data {}; }} | true",
            support::process::binary().display(),
            dir.path().display()
        ))
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
