//! What the ingest handler answers to each kind of body and request (the ping, malformed bodies
//! and their quarantine, other methods and the health check, size limits, content encodings),
//! over the in-memory queue and quarantine.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use http::StatusCode;
use http::header::ALLOW;
use support::*;

// ---------------------------------------------------------------------------------------------
// 2. The ping

#[tokio::test]
async fn the_ping_is_accepted_and_stores_nothing() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[]);
    for ping in [
        &br#"[{"msys":{}}]"#[..],
        b" [ {\"msys\" : {}} , {\"msys\":{}} ]\n",
        b"[]",
    ] {
        let response = h.ingest(&config, post(&[], Bytes::from_static(ping))).await;
        assert_eq!(response.status(), StatusCode::OK);
        let answer: serde_json::Value = serde_json::from_slice(response.body())?;
        assert_eq!(answer["accepted"], 0);
    }
    assert_eq!(h.queue.sent().len(), 0);
    assert_eq!(h.stored_keys(), Vec::<String>::new());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. and 4. Malformed bodies

/// Every malformed body with the element index its refusal must name (if any) and a word of
/// its reason.
fn malformed_bodies() -> Vec<(String, Vec<u8>, Option<usize>, &'static str)> {
    let mut nested = br#"[{"msys":{"message_event":{"type":"delivery"}}},"#.to_vec();
    nested.extend(std::iter::repeat_n(b'[', 100_000));
    nested.extend(std::iter::repeat_n(b']', 100_000));
    nested.push(b']');
    let cases = [
        ("not_json.txt", Some(1), "invalid JSON"),
        ("not_array.json", None, "not a JSON array"),
        ("no_msys.json", Some(1), "msys"),
        ("two_classes.json", Some(0), "two event classes"),
        ("type_not_string.json", Some(1), "not a string"),
        ("invalid_utf8.bin", None, "UTF-8"),
        ("truncated.json", Some(1), "invalid JSON"),
    ];
    let mut bodies: Vec<_> = cases
        .into_iter()
        .map(|(name, index, word)| {
            (
                name.to_owned(),
                fixture(&format!("malformed/{name}")),
                index,
                word,
            )
        })
        .collect();
    bodies.push((
        "nested 100000 levels".into(),
        nested,
        Some(1),
        "nested deeper",
    ));
    bodies.push(("empty".into(), Vec::new(), None, "not a JSON array"));
    bodies.push((
        "trailing garbage".into(),
        br#"[{"msys":{}}] [1]"#.to_vec(),
        Some(0),
        "invalid JSON",
    ));
    bodies
}

#[tokio::test]
async fn malformed_bodies_are_refused_with_400_and_quarantined_byte_for_byte() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[]);
    let bodies = malformed_bodies();
    for (name, body, index, word) in &bodies {
        let response = h
            .ingest(
                &config,
                post(&[("x-messagesystems-batch-id", "b-42")], body.clone()),
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        let reason = error_text(&response);
        assert!(reason.contains(word), "{name}: {reason}");
        if let Some(index) = index {
            let named = reason.starts_with(&format!("element {index}:"))
                || reason.starts_with(&format!("after element {index}:"));
            assert!(
                named,
                "{name}: the reason must name element {index}: {reason}"
            );
        }
        assert!(
            reason.len() < 1000,
            "{name}: reason too long: {} bytes",
            reason.len()
        );
        assert_eq!(h.queue.sent().len(), 0, "{name}");
        let note = h.assert_quarantined(body, &reason, 400)?;
        assert_eq!(note["batch_id"], "b-42", "{name}");
        assert_eq!(note["received_at"], "2024-05-06 12:00:00.000", "{name}");
    }
    // Two objects per body, each put once, nothing else.
    let keys = h.stored_keys();
    assert_eq!(keys.len(), 2 * bodies.len(), "{keys:?}");
    assert_eq!(h.store.objects().len(), 2 * bodies.len(), "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("quarantine/dt=2024-05-06/"))
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_body_that_cannot_be_quarantined_gets_503() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[]);
    h.store.fail_keys_containing("quarantine/");
    for (name, body, _, _) in malformed_bodies() {
        let response = h.ingest(&config, post(&[], body)).await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{name}: a body that is not kept must be retried by the sender"
        );
        assert_eq!(response.headers()["retry-after"], "30", "{name}");
    }
    // Invalid gzip is quarantined too, so it gets 503 as well.
    let response = h
        .ingest(
            &config,
            post(&[("content-encoding", "gzip")], &b"not gzip"[..]),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "bad gzip"
    );
    assert_eq!(h.queue.sent().len(), 0);
    assert_eq!(h.stored_keys(), Vec::<String>::new());

    // Once the quarantine is writable again, the retry is answered 400 and kept.
    h.store.heal();
    let body = fixture("malformed/two_classes.json");
    let response = h.ingest(&config, post(&[], body.clone())).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    h.assert_quarantined(&body, &error_text(&response), 400)?;
    Ok(())
}

#[tokio::test]
async fn a_refused_body_kept_without_its_reason_note_gets_503() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[]);
    h.store.fail_keys_containing(".reason.json");
    let body = fixture("malformed/two_classes.json");
    let response = h.ingest(&config, post(&[], body.clone())).await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a body kept without its reason is not kept: the sender must retry"
    );
    assert_eq!(response.headers()["retry-after"], "30");
    let (body_key, _) = quarantine_keys(&body);
    assert_eq!(h.stored_keys(), [body_key]);

    // The retry stores the note beside the body (rewritten with the same bytes).
    h.store.heal();
    let response = h.ingest(&config, post(&[], body.clone())).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    h.assert_quarantined(&body, &error_text(&response), 400)?;
    assert_eq!(h.queue.sent().len(), 0);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Methods, health, size limits and content encodings

#[tokio::test]
async fn only_post_is_accepted_and_health_answers() -> TestResult {
    let h = Harness::new();
    let config = config(&[
        ("SPARKLAKE_AUTH", "bearer"),
        ("SPARKLAKE_BEARER_TOKENS", "t1"),
    ])?;
    for method in ["GET", "PUT", "DELETE", "PATCH", "HEAD"] {
        let response = h
            .ingest(
                &config,
                request(
                    method,
                    "/",
                    &[("authorization", "Bearer t1")],
                    fixture(BATCH),
                ),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
        assert_eq!(
            response.headers().get(ALLOW).map(|v| v.as_bytes()),
            Some(&b"POST"[..])
        );
    }
    for method in ["GET", "HEAD"] {
        let response = h
            .ingest(&config, request(method, "/health", &[], Bytes::new()))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{method} /health");
    }
    assert_eq!(h.queue.sent().len(), 0);
    assert_eq!(h.stored_keys(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_at_the_limit_pass() -> TestResult {
    let h = Harness::new();
    let body = fixture(BATCH);
    let limit = body.len().to_string();
    let one_less = (body.len() - 1).to_string();

    let config_exact = open_config(&[("SPARKLAKE_MAX_BODY_BYTES", &limit)]);
    let config_under = open_config(&[("SPARKLAKE_MAX_BODY_BYTES", &one_less)]);
    assert_eq!(config_exact.max_body_bytes, body.len());

    let response = h.ingest(&config_under, post(&[], body.clone())).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.queue.sent().len(), 0);
    assert_eq!(h.stored_keys(), Vec::<String>::new());

    let response = h.ingest(&config_exact, post(&[], body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.queue.sent().len(), 1);
    Ok(())
}

#[tokio::test]
async fn gzip_bodies_are_decompressed_before_they_are_enqueued() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[]);
    let body = fixture(BATCH);
    for encoding in ["gzip", "GZIP", "x-gzip", " gzip "] {
        let response = h
            .ingest(
                &config,
                post(&[("content-encoding", encoding)], gzip(&body)),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{encoding}");
        let sent = h.queue.take();
        assert_eq!(sent.len(), 1, "{encoding}");
        assert!(
            sent[0].body == body,
            "{encoding}: the decompressed JSON is enqueued"
        );
    }
    // Two gzip members back to back are one body.
    let (first, second) = body.split_at(body.len() / 2);
    let mut members = gzip(first);
    members.extend(gzip(second));
    let response = h
        .ingest(&config, post(&[("content-encoding", "gzip")], members))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let sent = h.queue.take();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].body == body);
    assert_eq!(h.stored_keys(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn invalid_gzip_is_refused_with_400_and_quarantined() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[]);
    let compressed = gzip(&fixture(BATCH));
    let mut corrupted = compressed.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    let cases: [(&str, Vec<u8>); 3] = [
        ("not gzip", fixture(BATCH)),
        (
            "truncated gzip",
            compressed[..compressed.len() / 2].to_vec(),
        ),
        ("corrupted gzip", corrupted),
    ];
    for (what, body) in cases {
        let response = h
            .ingest(&config, post(&[("content-encoding", "gzip")], body.clone()))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        let reason = error_text(&response);
        assert!(
            reason.starts_with("body is not valid gzip"),
            "{what}: {reason}"
        );
        h.assert_quarantined_gzip(&body, &reason, 400)?;
    }
    assert_eq!(h.queue.sent().len(), 0);
    Ok(())
}

#[tokio::test]
async fn a_gzip_bomb_gets_413_without_being_inflated() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[("SPARKLAKE_MAX_BODY_BYTES", "65536")]);
    let bomb = gzip(&vec![b' '; 8 * 1024 * 1024]);
    assert!(bomb.len() < 65536, "the compressed bomb is under the limit");
    let response = h
        .ingest(&config, post(&[("content-encoding", "gzip")], bomb))
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // One byte over the limit after decompression is too much; exactly the limit is not.
    let mut padded = br#"[{"msys":{"message_event":{"type":"delivery","event_id":"1"}}}"#.to_vec();
    padded.resize(65535, b' ');
    padded.push(b']');
    assert_eq!(padded.len(), 65536);
    let response = h
        .ingest(
            &config,
            post(&[("content-encoding", "gzip")], gzip(&padded)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "exactly at the limit");
    let mut over = padded.clone();
    over.insert(1, b' ');
    let response = h
        .ingest(&config, post(&[("content-encoding", "gzip")], gzip(&over)))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "one byte over"
    );
    assert_eq!(h.queue.sent().len(), 1);
    assert_eq!(h.stored_keys(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn unsupported_content_encodings_get_415() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[]);
    for encoding in ["br", "deflate", "zstd", "gzip, br"] {
        let response = h
            .ingest(
                &config,
                post(&[("content-encoding", encoding)], fixture(BATCH)),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{encoding}"
        );
    }
    // `identity` is no encoding at all.
    let response = h
        .ingest(
            &config,
            post(&[("content-encoding", "identity")], fixture(BATCH)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.queue.sent().len(), 1);
    assert_eq!(h.stored_keys(), Vec::<String>::new());
    Ok(())
}

/// A malformed body sent gzipped is kept as it was sent (what it cost the sender, not what it
/// inflates to), with its encoding in the note.
#[tokio::test]
async fn a_gzipped_malformed_body_is_quarantined_compressed() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[]);
    let malformed = format!("[{{\"msys\": {}", "x".repeat(100_000));
    let sent = gzip(malformed.as_bytes());
    assert!(sent.len() < 2_000);
    let response = h
        .ingest(&config, post(&[("content-encoding", "gzip")], sent.clone()))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    h.assert_quarantined_gzip(&sent, &error_text(&response), 400)?;
    let kept: usize = h.store.objects().values().map(|o| o.body.len()).sum();
    assert!(
        kept < 3_000,
        "the quarantine holds {kept} bytes for a {} byte post",
        sent.len()
    );
    Ok(())
}

/// Past its byte budget the quarantine keeps only reasons, then (past a sixteenth more)
/// nothing; the answer stays 400 and each body not kept is counted.
#[tokio::test]
async fn the_quarantine_stops_at_its_budget() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[("SPARKLAKE_QUARANTINE_MAX_BYTES", "16000")]);
    let mut over = 0;
    for i in 0..40 {
        let body = format!("[{{\"msys\": {i} {}", "y".repeat(2_000));
        let (response, metrics) = h.ingest_measured(&config, post(&[], body)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        over += metrics.quarantine_over_budget;
    }
    let objects = h.store.objects();
    let bytes: usize = objects.values().map(|o| o.body.len()).sum();
    assert!(
        bytes <= 16_000 + 1_000,
        "the quarantine holds {bytes} bytes"
    );
    let bodies = objects.keys().filter(|k| k.ends_with(".body")).count();
    let reasons = objects
        .keys()
        .filter(|k| k.ends_with(".reason.json"))
        .count();
    assert!((5..=7).contains(&bodies), "{bodies} bodies");
    assert!(
        reasons > bodies && reasons < 40,
        "{reasons} reasons, {bodies} bodies"
    );
    assert_eq!(over, 40 - bodies as u64);
    let without_body = objects
        .iter()
        .filter(|(k, _)| k.ends_with(".reason.json"))
        .map(|(_, o)| serde_json::from_slice::<serde_json::Value>(&o.body).expect("json"))
        .filter(|note| note["body_key"].is_null())
        .count();
    assert_eq!(without_body, reasons - bodies);
    Ok(())
}

/// A batch may not make more partitions than SPARKLAKE_MAX_TYPES_PER_BATCH.
#[tokio::test]
async fn a_batch_of_too_many_types_is_refused_and_quarantined() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[("SPARKLAKE_MAX_TYPES_PER_BATCH", "2")]);
    let batch = |types: &[&str]| {
        let events: Vec<String> = types
            .iter()
            .map(|t| {
                format!(r#"{{"msys":{{"message_event":{{"type":"{t}","event_id":"{t}-1"}}}}}}"#)
            })
            .collect();
        format!("[{}]", events.join(","))
    };
    let three = batch(&["delivery", "bounce", "open"]);
    let response = h.ingest(&config, post(&[], three.clone())).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let reason = error_text(&response);
    assert!(reason.contains("3 distinct event types"), "{reason}");
    h.assert_quarantined(three.as_bytes(), &reason, 400)?;
    assert!(h.queue.sent().is_empty());
    let response = h
        .ingest(&config, post(&[], batch(&["delivery", "bounce"])))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    Ok(())
}
