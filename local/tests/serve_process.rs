//! The real `sparklake serve` process: a kill -9 after batches were answered 200 loses none of
//! them once the process is restarted; SIGTERM drains everything accepted and exits 0.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};

use sparklake::http_client::post;
use support::http;
use support::lake::written_event_ids;
use support::process::{Server, serve, sparklake, terminate};

/// Starts `serve` on a free port and returns the child and its address.
fn start(data: &Path, extra: &[&str]) -> (Child, String) {
    let mut command = sparklake();
    command
        .env("SPARKLAKE_AUTH", "none")
        .env("SPARKLAKE_LOG", "warn")
        .stderr(Stdio::inherit());
    let Server { child, addr } = Server::start(serve(command, data, extra));
    (child, addr)
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

/// Every string value under `value` that looks like an address (holds `@`), and every
/// `rcpt_to` / `raw_rcpt_to` / `sms_dst` value whatever it looks like.
fn recipient_like(value: &serde_json::Value, key: &str, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::String(s)
            if s.contains('@') || matches!(key, "rcpt_to" | "raw_rcpt_to" | "sms_dst") =>
        {
            out.insert(s.clone());
        }
        serde_json::Value::Array(items) => {
            for item in items {
                recipient_like(item, key, out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                recipient_like(v, k, out);
            }
        }
        _ => {}
    }
}

/// SparkPost's sample batch with a distinct recipient on every event (in `rcpt_to`,
/// `raw_rcpt_to`, `rcpt_meta` and a `cust` sibling), ids prefixed by `tag`.
fn batch_with_recipients(tag: &str) -> Vec<u8> {
    let fixture = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/sparkpost/batch.json"),
    )
    .expect("fixture");
    let mut elements: Vec<serde_json::Value> = serde_json::from_slice(&fixture).expect("json");
    for (i, element) in elements.iter_mut().enumerate() {
        let address = format!("Rcpt.{tag}.{i}+Zq@Mail-{i}.example.net");
        if let Some(event) = element["msys"]
            .as_object_mut()
            .and_then(|m| m.values_mut().next())
            .and_then(|e| e.as_object_mut())
        {
            event.insert("event_id".into(), format!("{tag}-{i}").into());
            event.insert("rcpt_to".into(), address.to_lowercase().into());
            event.insert("raw_rcpt_to".into(), address.clone().into());
            event.insert(
                "rcpt_meta".into(),
                serde_json::json!({"backup": format!("alt.{tag}.{i}@backup.example.org")}),
            );
        }
        element["cust"] =
            serde_json::json!({"owner": format!("owner.{tag}.{i}@tenant.example.io")});
    }
    serde_json::to_vec_pretty(&elements).expect("json")
}

/// A full run at trace level, every command's stdout and stderr captured: valid batches,
/// rejected credentials carrying other secrets, malformed bodies quoting recipients, then
/// `status` and `redrive`. No configured secret, no attempted credential and no recipient
/// address (nor subject line) may appear in anything the processes printed.
#[tokio::test(flavor = "multi_thread")]
async fn logs_of_a_full_run_carry_no_secret_attempt_or_recipient() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let configured = [
        ("SPARKLAKE_BASIC_USER", "us3r-kappa"),
        ("SPARKLAKE_BASIC_PASSWORD", "pa55-lambda"),
        ("SPARKLAKE_BASIC_PASSWORD_PREVIOUS", "pa55-old-mu"),
        ("SPARKLAKE_BEARER_TOKENS", "t0ken-alpha,t0ken-beta"),
        ("SPARKLAKE_HEADER_VALUE", "h3ader-secret"),
        ("SPARKLAKE_HEADER_VALUE_PREVIOUS", "h3ader-old-nu"),
    ];
    let mut logs = Vec::new();
    for format in ["json", "text"] {
        let log = dir.path().join(format!("serve-{format}.stderr"));
        let mut command = sparklake();
        command
            .env("SPARKLAKE_AUTH", "basic,bearer,header")
            .env("SPARKLAKE_HEADER_NAME", "x-hook-secret")
            .env("SPARKLAKE_LOG", "trace")
            .env("SPARKLAKE_LOG_FORMAT", format)
            .env("SPARKLAKE_METRICS_INTERVAL_SECS", "1")
            .envs(configured)
            .stderr(std::fs::File::create(&log).expect("log file"));
        let stdout = dir.path().join(format!("serve-{format}.stdout"));
        let Server { child, addr } = Server::start_capturing(serve(command, &data, &[]), &stdout);
        let good_header = "X-Hook-Secret: h3ader-secret\r\n";
        let bearer = format!("Authorization: Bearer t0ken-beta\r\n{good_header}");
        let basic = format!(
            "Authorization: Basic {}\r\nX-Hook-Secret: h3ader-old-nu\r\n",
            b64("us3r-kappa:pa55-old-mu")
        );
        let accepted: [(&str, &[u8]); 2] = [(&bearer, b"a"), (&basic, b"b")];
        for (headers, tag) in accepted {
            let tag = format!("{format}-{}", String::from_utf8_lossy(tag));
            let body = batch_with_recipients(&tag);
            let answer = http::post_with(&addr, headers.as_bytes(), &body).await;
            assert_eq!(answer.status, 200, "{headers}: {}", answer.body);
        }
        for drift in ["numbers", "timestamps", "unknown"] {
            let body = std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("../fixtures/drift/{drift}.json")),
            )
            .expect("fixture");
            let answer = http::post_with(&addr, bearer.as_bytes(), &body).await;
            assert_eq!(answer.status, 200, "{drift}: {}", answer.body);
        }
        let attempts = [
            format!("Authorization: Bearer t0ken-gamma\r\n{good_header}"),
            "Authorization: Bearer t0ken-beta\r\nX-Hook-Secret: wr0ng-secret\r\n".to_owned(),
            format!(
                "Authorization: Basic {}\r\n{good_header}",
                b64("us3r-kappa:guess-pa55-xi")
            ),
            format!(
                "Authorization: Basic {}\r\n{good_header}",
                b64("intruder-omicron:pa55-lambda")
            ),
            format!("Authorization: Bearer pa55-lambda\r\n{good_header}"),
            "Authorization: Bearer h3ader-secret\r\nX-Hook-Secret: t0ken-alpha\r\n".to_owned(),
            format!(
                "Authorization: Bearer t0ken-alpha\r\nAuthorization: Bearer dup-t0ken-pi\r\n{good_header}"
            ),
            format!("Authorization: Digest t0ken-rho\r\n{good_header}"),
        ];
        let body = batch_with_recipients(&format!("{format}-refused"));
        for headers in &attempts {
            let answer = http::post_with(&addr, headers.as_bytes(), &body).await;
            assert_eq!(answer.status, 401, "{headers}");
        }
        // Malformed bodies whose parse errors can quote what is inside them.
        let mut not_utf8 =
            br#"[{"msys":{"message_event":{"type":"bounce","rcpt_to":"bad.utf8@quoted.example.net"#
                .to_vec();
        not_utf8.extend_from_slice(b"\xff\"}}}]");
        let malformed: Vec<Vec<u8>> = vec![
            br#"["quoted.one@malformed.example.net"]"#.to_vec(),
            br#"[{"msys":{"message_event":{"type":"bounce","rcpt_to":"quoted.two@malformed.example.net"}},"#.to_vec(),
            br#"[{"msys":{"message_event":{"type":"quoted.three@malformed.example.net","rcpt_to":"x"},"track_event":{}}}]"#.to_vec(),
            br#"[{"msys":{"message_event":{"type":["quoted.four@malformed.example.net"]}}}]"#.to_vec(),
            br#"[{"msys":{"message_event":{"type":"bounce","rcpt_to":"quoted.five@malformed.example.net"}}} "quoted.six@malformed.example.net"]"#.to_vec(),
            br#"{"rcpt_to":"quoted.seven@malformed.example.net"}"#.to_vec(),
            not_utf8,
        ];
        for body in &malformed {
            let answer = http::post_with(&addr, bearer.as_bytes(), body).await;
            assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(body));
        }
        // Let at least one metrics interval pass so its log line is in the capture too.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        terminate(child);
        logs.push(log);
        logs.push(stdout);
    }
    let ids = written_event_ids(&data);
    assert_eq!(
        ids.len(),
        2 * (2 * 19 + 6 + 7 + 3),
        "every accepted event written"
    );

    for command in ["status", "redrive"] {
        let output = sparklake()
            .args([command, "--data"])
            .arg(&data)
            .env("SPARKLAKE_LOG", "trace")
            .envs(configured)
            .output()
            .expect(command);
        assert!(output.status.success(), "{command}: {output:?}");
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            let path = dir.path().join(format!("{command}.{stream}"));
            std::fs::write(&path, bytes).expect("write capture");
            logs.push(path);
        }
    }

    let mut forbidden: BTreeSet<String> = configured
        .iter()
        .flat_map(|(_, v)| v.split(','))
        .map(str::to_owned)
        .collect();
    forbidden.extend(
        [
            "t0ken-gamma",
            "wr0ng-secret",
            "guess-pa55-xi",
            "intruder-omicron",
            "dup-t0ken-pi",
            "t0ken-rho",
            "Summer deals",
        ]
        .map(str::to_owned),
    );
    for creds in [
        "us3r-kappa:pa55-lambda",
        "us3r-kappa:pa55-old-mu",
        "us3r-kappa:guess-pa55-xi",
        "intruder-omicron:pa55-lambda",
    ] {
        forbidden.insert(b64(creds));
    }
    let mut recipients = BTreeSet::new();
    for tag in [
        "json-a",
        "json-b",
        "json-refused",
        "text-a",
        "text-b",
        "text-refused",
    ] {
        let value: serde_json::Value =
            serde_json::from_slice(&batch_with_recipients(tag)).expect("json");
        recipient_like(&value, "", &mut recipients);
    }
    for drift in ["numbers", "timestamps", "unknown"] {
        let value: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("../fixtures/drift/{drift}.json")),
            )
            .expect("fixture"),
        )
        .expect("json");
        recipient_like(&value, "", &mut recipients);
    }
    assert!(recipients.len() > 100, "{recipients:?}");
    for i in ["one", "two", "three", "four", "five", "six", "seven"] {
        recipients.insert(format!("quoted.{i}@malformed.example.net"));
    }
    recipients.insert("bad.utf8@quoted.example.net".into());
    // Lower-cased too: a log that normalises an address still leaks it.
    let lowered: Vec<String> = recipients.iter().map(|r| r.to_lowercase()).collect();
    recipients.extend(lowered);
    forbidden.extend(recipients);
    // Recipient domains of the test data are never logged either (keys and reasons are).
    forbidden.extend(["example.net", "example.org", "example.io"].map(str::to_owned));

    let mut total = 0;
    for path in &logs {
        let logged =
            String::from_utf8_lossy(&std::fs::read(path).expect("read capture")).into_owned();
        total += logged.lines().count();
        for secret in &forbidden {
            assert!(
                !logged.contains(secret.as_str()),
                "{} holds {secret:?}",
                path.display()
            );
        }
    }
    let serve_log = std::fs::read_to_string(&logs[0]).expect("read log");
    for expected in [
        "batch enqueued",
        "refused unauthenticated request",
        "quarantined refused body",
        "writer batch done",
    ] {
        assert!(
            serve_log.contains(expected),
            "the log is really captured: no {expected:?}"
        );
    }
    assert!(total > 100, "only {total} lines captured");
}
