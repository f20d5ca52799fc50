//! Hostile bodies: each gets a deliberate answer (the decision table in RELIABILITY.md), and the
//! service stays up. Structurally invalid or ambiguous batches → 400 naming the problem, kept in
//! the quarantine byte for byte; valid JSON with odd values → 200, written with the exact text
//! in `raw` (the typed columns are checked in core/tests/hostile_values.rs); too large → 413,
//! never read whole. First against the ingest handler, then the big and slow ones against the
//! running `sparklake serve`, which must still write a valid batch afterwards.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write as _;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::StatusCode;
use sha2::{Digest, Sha256};
use sparklake::queue::QueueConfig;
use sparklake_core::ports::QueueCounts;
use support::files::*;
use support::fixtures::*;
use support::handlers::*;
use support::http::*;
use support::lake::written_event_ids;
use support::process::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn event(fields: &str) -> String {
    format!(r#"{{"msys":{{"message_event":{{"type":"bounce","event_id":"h-1"{fields}}}}}}}"#)
}

fn batch(fields: &str) -> Vec<u8> {
    format!("[{}]", event(fields)).into_bytes()
}

/// A gzip body that inflates to `members` × `member_size` bytes of `[`: one member compressed
/// once and repeated (gzip allows members back to back), so building it costs almost nothing.
fn gzip_bomb(member_size: usize, members: usize) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(&vec![b'['; member_size]).unwrap();
    encoder.finish().unwrap().repeat(members)
}

fn nested(depth: usize) -> Vec<u8> {
    let mut body = br#"[{"msys":{"message_event":{"type":"bounce","rcpt_meta":"#.to_vec();
    body.extend(std::iter::repeat_n(b'[', depth));
    body.extend(std::iter::repeat_n(b']', depth));
    body.extend_from_slice(b"}}}]");
    body
}

/// `(case, body, status, a word of the reason for 4xx)`; every 400 is quarantined.
fn table() -> Vec<(&'static str, Vec<u8>, StatusCode, &'static str)> {
    let bad = StatusCode::BAD_REQUEST;
    let ok = StatusCode::OK;
    let mut invalid_utf8 = batch(r#","subject":"caf"#);
    invalid_utf8.truncate(invalid_utf8.len() - 4);
    invalid_utf8.extend_from_slice(b"\xe9\"}}}]");
    let mut raw_nul = batch(r#","subject":"a"#);
    raw_nul.truncate(raw_nul.len() - 4);
    raw_nul.extend_from_slice(b"\0b\"}}}]");
    let mut nul_between = batch("");
    nul_between.insert(nul_between.len() - 1, 0);
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend(batch(""));
    let mut two_boms = b"\xef\xbb\xbf\xef\xbb\xbf".to_vec();
    two_boms.extend(batch(""));
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(
            String::from_utf8(batch(""))
                .unwrap()
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    let huge_string = format!(r#","subject":"{}""#, "s".repeat(900 * 1024));
    vec![
        ("not JSON", b"hello".to_vec(), bad, "not a JSON array"),
        ("empty", b"".to_vec(), bad, "not a JSON array"),
        ("null", b"null".to_vec(), bad, "not a JSON array"),
        ("an object", b"{}".to_vec(), bad, "not a JSON array"),
        ("array of numbers", b"[1]".to_vec(), bad, "element 0"),
        ("array of arrays", b"[[]]".to_vec(), bad, "element 0"),
        ("array with null", b"[null]".to_vec(), bad, "element 0"),
        ("invalid UTF-8 in a string", invalid_utf8, bad, "UTF-8"),
        ("raw NUL in a string", raw_nul, bad, "control character"),
        ("NUL between elements", nul_between, bad, "invalid JSON"),
        ("10 000-deep nesting in a field", nested(10_000), bad, "nested deeper than 64"),
        ("10 000-deep body", vec![b'['; 10_000], bad, "nested deeper than 64"),
        ("two byte order marks", two_boms, bad, "not a JSON array"),
        ("UTF-16 with its BOM", utf16, bad, "UTF-8"),
        (
            "duplicate msys",
            br#"[{"msys":{"message_event":{"type":"bounce"}},"msys":{"track_event":{"type":"open"}}}]"#.to_vec(),
            bad,
            "`msys` appears twice",
        ),
        (
            "duplicate class",
            br#"[{"msys":{"message_event":{"type":"bounce"},"message_event":{"type":"delivery"}}}]"#.to_vec(),
            bad,
            "two event classes",
        ),
        (
            "duplicate type",
            br#"[{"msys":{"message_event":{"type":"bounce","type":"delivery"}}}]"#.to_vec(),
            bad,
            "`message_event.type` appears twice",
        ),
        (
            "type with a lone surrogate",
            br#"[{"msys":{"message_event":{"type":"\ud800"}}}]"#.to_vec(),
            bad,
            "not a string",
        ),
        ("trailing garbage", [batch(""), b"[]".to_vec()].concat(), bad, "invalid JSON"),
        ("truncated", batch("")[..30].to_vec(), bad, "invalid JSON"),
        // Accepted: valid JSON whose odd values are kept in `raw`, their typed columns null.
        ("a leading byte order mark", bom, ok, ""),
        ("number beyond i64", batch(r#","num_retries":9223372036854775808"#), ok, ""),
        ("number beyond f64", batch(r#","num_retries":1e400,"geo_ip":{"latitude":-1e400}"#), ok, ""),
        ("huge integer as event text", batch(r#","message_id":123456789012345678901234567890"#), ok, ""),
        ("NaN-like strings", batch(r#","msg_size":"NaN","queue_time":"Infinity","geo_ip":{"latitude":"nan"}"#), ok, ""),
        ("escaped NUL", batch(r#","subject":"a\u0000b""#), ok, ""),
        ("lone surrogate in a field", batch(r#","subject":"\udc00""#), ok, ""),
        ("duplicate ordinary field", batch(r#","rcpt_to":"a@x.example","rcpt_to":"b@x.example""#), ok, ""),
        ("900 KiB string", batch(&huge_string), ok, ""),
        ("nesting at the limit", nested(60), ok, ""),
        // An event larger than one queue message cannot be carried: 413, quarantined.
        (
            "a 2 MiB event",
            batch(&format!(r#","subject":"{}""#, "s".repeat(2 * 1024 * 1024))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "more than the",
        ),
    ]
}

#[tokio::test]
async fn each_hostile_body_gets_its_deliberate_answer() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    let mut accepted = 0;
    let mut quarantined = 0;
    for (case, body, status, word) in table() {
        let response = h
            .ingest(
                &config,
                &queue,
                post_request(&[], body.clone()),
                received_at(),
            )
            .await;
        assert_eq!(response.status(), status, "{case}: {:?}", response.body());
        if status == StatusCode::OK {
            accepted += 1;
            assert_eq!(queue.counts().await?.visible, accepted, "{case}");
            continue;
        }
        let reason = error_text(&response);
        assert!(reason.contains(word), "{case}: {reason}");
        assert!(
            reason.len() < 1000,
            "{case}: reason of {} bytes",
            reason.len()
        );
        // Kept byte for byte, with its reason.
        let hash = hex::encode(&Sha256::digest(&body)[..16]);
        let kept = std::fs::read(
            h.store_root()
                .join(format!("quarantine/dt=2024-05-06/{hash}.body")),
        )?;
        assert!(kept == body, "{case}: quarantined body differs");
        quarantined += 1;
        assert_eq!(queue.counts().await?.visible, accepted, "{case}: enqueued");
    }
    assert_eq!(h.store_files().len(), 2 * quarantined);
    Ok(())
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_nothing_is_kept() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    let limit = config.max_body_bytes;
    let mut big = batch("");
    big.resize(limit + 1, b' ');
    let bomb = gzip_bomb(10 * 1024 * 1024, 20);
    assert!(bomb.len() < limit / 10, "the bomb is small on the wire");
    type Case = (
        &'static str,
        Vec<u8>,
        &'static [(&'static str, &'static str)],
    );
    let cases: [Case; 3] = [
        ("one byte over the limit", big, &[]),
        (
            "gzip bomb (200 MiB inflated)",
            bomb.clone(),
            &[("content-encoding", "gzip")],
        ),
        (
            "gzip bomb, encoding in capitals",
            bomb,
            &[("content-encoding", "GZIP")],
        ),
    ];
    for (case, body, headers) in cases {
        let response = h
            .ingest(
                &config,
                &queue,
                post_request(headers, Bytes::from(body)),
                received_at(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{case}");
    }
    assert_eq!(queue.counts().await?, QueueCounts::default());
    assert!(h.store_files().is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Against the running server.

/// Streams `total` bytes of body in 64 KiB chunks after `head`, reading the answer meanwhile;
/// returns the answer (the server may answer early and close).
async fn stream_body(addr: &str, head: String, total: usize) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let chunked = head.contains("chunked");
    let write = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            if chunked {
                writer
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                writer.write_all(&chunk).await?;
                writer.write_all(b"\r\n").await?;
            } else {
                writer.write_all(&chunk).await?;
            }
            sent += chunk.len();
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").await?;
        }
        Ok::<_, std::io::Error>(sent)
    });
    let mut response = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    write.abort();
    parse_what_arrived(&response)
}

fn read_column(data: &std::path::Path, event_id: &str, column: &str) -> Option<String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    for path in files_ending(&data.join("parquet"), ".parquet") {
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch.column_by_name("event_id").unwrap().as_string::<i32>();
            for row in 0..batch.num_rows() {
                if ids.is_valid(row) && ids.value(row) == event_id {
                    let c = batch.column_by_name(column).unwrap();
                    if !c.is_valid(row) {
                        return None;
                    }
                    return Some(match c.data_type() {
                        arrow::datatypes::DataType::Int64 => {
                            c.as_primitive::<Int64Type>().value(row).to_string()
                        }
                        _ => c.as_string::<i32>().value(row).to_owned(),
                    });
                }
            }
        }
    }
    panic!("event {event_id} not written")
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_survives_big_slow_and_malformed_bodies_and_still_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut command = sparklake();
    command
        .env("SPARKLAKE_AUTH", "bearer")
        .env("SPARKLAKE_BEARER_TOKENS", "hostile-test-token")
        .env("SPARKLAKE_LOG", "warn")
        .stderr(std::process::Stdio::null());
    let Server { mut child, addr } =
        Server::start(serve(command, &data, &["--writer-window-ms", "100"]));
    let pid = child.id();
    let auth = "Authorization: Bearer hostile-test-token\r\n";
    let baseline = peak_rss_kb(pid).unwrap();

    // 100 MB declared: refused from its Content-Length before any of it is read.
    let head =
        format!("POST / HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 100000000\r\n\r\n");
    let answer = stream_body(&addr, head, 100_000_000).await;
    assert_eq!(answer.status, 413, "100 MB with Content-Length: {answer:?}");
    assert!(alive(&mut child));

    // 100 MB chunked (no length to refuse it by): read up to the limit, then 413.
    let head =
        format!("POST / HTTP/1.1\r\nHost: {addr}\r\n{auth}Transfer-Encoding: chunked\r\n\r\n");
    let answer = stream_body(&addr, head, 100_000_000).await;
    assert_eq!(answer.status, 413, "100 MB chunked: {answer:?}");
    assert!(alive(&mut child));

    // A gzip bomb: 1 GiB inflated from about 1 MiB on the wire.
    let bomb = gzip_bomb(16 * 1024 * 1024, 64);
    assert!(bomb.len() < 2 * 1024 * 1024, "{} bytes", bomb.len());
    let answer = post_with(
        &addr,
        format!("{auth}Content-Encoding: gzip\r\n").as_bytes(),
        &bomb,
    )
    .await;
    assert_eq!(answer.status, 413, "gzip bomb: {answer:?}");
    assert!(alive(&mut child));

    // Neither the 100 MB bodies nor the 1 GiB of inflated bomb was ever held in memory: the
    // peak stays within the 10 MiB limit's order (a buffered 100 MB body alone would pass it).
    let peak = peak_rss_kb(pid).unwrap();
    assert!(
        peak < baseline + 80 * 1024,
        "peak resident memory grew from {baseline} kB to {peak} kB"
    );

    // A client that promises a body and goes away mid-way.
    {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 5000\r\n\r\n[{{\"msys\""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
    }
    // Every malformed case of the table, over HTTP.
    for (case, body, status, _) in table() {
        if status == StatusCode::OK || body.len() > 1024 * 1024 {
            continue;
        }
        let answer = post_with(&addr, auth.as_bytes(), &body).await;
        assert_eq!(answer.status, status.as_u16(), "{case}: {}", answer.body);
        assert!(alive(&mut child), "{case}");
    }

    // Odd values are accepted, and a valid batch still goes through.
    let odd = batch(
        r#","num_retries":9223372036854775808,"message_id":123456789012345678901234567890,"subject":"a\u0000b""#,
    );
    let answer = post_with(&addr, auth.as_bytes(), &odd).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let valid = std::fs::read(fixture_path("sparkpost/batch.json")).unwrap();
    let answer = post_with(&addr, auth.as_bytes(), &valid).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    terminate(child);

    let ids = written_event_ids(&data);
    assert_eq!(
        ids.len(),
        20,
        "the sample's 19 events and the odd one: {ids:?}"
    );
    assert_eq!(read_column(&data, "h-1", "num_retries"), None);
    assert_eq!(
        read_column(&data, "h-1", "message_id").as_deref(),
        Some("123456789012345678901234567890")
    );
    assert_eq!(
        read_column(&data, "h-1", "subject").as_deref(),
        Some("a\0b")
    );
    assert_eq!(
        read_column(&data, "h-1", "raw").as_deref(),
        Some(std::str::from_utf8(&odd[1..odd.len() - 1]).unwrap())
    );
}
