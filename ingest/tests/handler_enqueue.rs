//! What the ingest handler sends to the queue for a valid batch (the body as received with its
//! attributes, or its events split on element boundaries into numbered parts that fit a
//! message), what it does when the queue fails, and the metrics it reports, over the in-memory
//! queue and quarantine.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use http::StatusCode;
use sparklake_core::envelope;
use sparklake_core::metrics::Metrics;
use support::*;

// ---------------------------------------------------------------------------------------------
// 6. and 7. Enqueueing

#[tokio::test]
async fn a_valid_batch_is_enqueued_as_received_with_its_context() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[]);
    let body = fixture(BATCH);
    let response = h
        .ingest(
            &config,
            post(
                &[(
                    "X-MessageSystems-Batch-ID",
                    "77cc3c40-c9d6-11e5-a4e0-76a4b0b1b2d3",
                )],
                body.clone(),
            ),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(response.body())?;
    assert_eq!(answer, serde_json::json!({"accepted": 19, "messages": 1}));

    let sent = h.queue.take();
    assert_eq!(sent.len(), 1);
    let message = &sent[0];
    assert!(message.body == body, "the body is enqueued byte for byte");
    assert_eq!(attribute(message, "received_at"), Some("1714996800000"));
    assert_eq!(
        attribute(message, "received_at").and_then(|v| v.parse::<i64>().ok()),
        Some(received_at())
    );
    assert_eq!(
        attribute(message, "batch_id"),
        Some("77cc3c40-c9d6-11e5-a4e0-76a4b0b1b2d3")
    );
    assert_eq!(attribute(message, "part"), None);
    assert_eq!(message.attributes.len(), 2, "{:?}", message.attributes);
    assert_eq!(h.stored_keys(), Vec::<String>::new());

    // Without the header (or with an unusable one) there is no batch_id attribute.
    let long_id = "x".repeat(257);
    for headers in [
        vec![],
        vec![("x-messagesystems-batch-id", "  ")],
        vec![("x-messagesystems-batch-id", long_id.as_str())],
    ] {
        let response = h.ingest(&config, post(&headers, body.clone())).await;
        assert_eq!(response.status(), StatusCode::OK);
        let sent = h.queue.take();
        assert_eq!(sent.len(), 1);
        assert_eq!(attribute(&sent[0], "batch_id"), None, "{headers:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_batch_larger_than_a_message_is_split_on_element_boundaries() -> TestResult {
    let max = 4096;
    let h = Harness::with_max_message_bytes(max);
    let config = open_config(&[]);
    // The sample batch with pings around its events: they are dropped when it is split.
    let original = fixture(BATCH);
    let elements = envelope::validate(&original)?;
    let mut with_pings: Vec<&str> = vec![r#"{"msys":{}}"#];
    for (i, element) in elements.elements.iter().enumerate() {
        with_pings.push(element.raw);
        if i == 7 {
            with_pings.push(r#"{"msys":{}}"#);
        }
    }
    let body = envelope::join(with_pings);
    assert!(body.len() > max);

    let response = h
        .ingest(
            &config,
            post(&[("x-messagesystems-batch-id", "b-1")], body.clone()),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let sent = h.queue.take();
    let total = sent.len();
    assert!(total >= 21192 / 4096, "{total} messages");
    let answer: serde_json::Value = serde_json::from_slice(response.body())?;
    assert_eq!(answer["accepted"], 19);
    assert_eq!(answer["messages"], total);

    let mut events = Vec::new();
    for (i, m) in sent.iter().enumerate() {
        assert!(m.body.len() <= max, "part {i} is {} bytes", m.body.len());
        let part = envelope::validate(&m.body).map_err(|e| format!("part {i}: {e}"))?;
        assert!(
            part.elements.iter().all(|e| e.head.is_some()),
            "part {i} holds a ping"
        );
        assert_eq!(
            attribute(m, "part"),
            Some(format!("{}/{total}", i + 1).as_str())
        );
        assert_eq!(attribute(m, "received_at"), Some("1714996800000"));
        assert_eq!(attribute(m, "batch_id"), Some("b-1"));
        events.extend(part.elements.iter().map(|e| e.raw.to_owned()));
    }
    let expected: Vec<&str> = elements.elements.iter().map(|e| e.raw).collect();
    assert_eq!(
        events, expected,
        "every event exactly once, in order, byte for byte"
    );
    assert_eq!(h.stored_keys(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn an_element_larger_than_a_message_gets_413_and_is_quarantined() -> TestResult {
    let h = Harness::with_max_message_bytes(4096);
    let config = open_config(&[]);
    let small = r#"{"msys":{"message_event":{"type":"delivery","event_id":"1"}}}"#;
    let big = format!(
        r#"{{"msys":{{"message_event":{{"type":"delivery","event_id":"2","subject":"{}"}}}}}}"#,
        "x".repeat(5000)
    );
    let body = envelope::join([r#"{"msys":{}}"#, small, big.as_str(), small]);
    let response = h.ingest(&config, post(&[], body.clone())).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let reason = error_text(&response);
    assert!(
        reason.starts_with("element 2 is"),
        "the reason must name the big element by its index in the body (2): {reason}"
    );
    assert_eq!(h.queue.sent().len(), 0, "no part of the batch is enqueued");
    h.assert_quarantined(body.as_bytes(), &reason, 413)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 8. Queue failure

#[tokio::test]
async fn a_queue_failure_gets_503_and_the_retry_succeeds() -> TestResult {
    let h = Harness::new();
    let config = open_config(&[]);
    let body = fixture(BATCH);

    h.queue.fail(true);
    let response = h.ingest(&config, post(&[], body.clone())).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "30");
    h.queue.fail(false);

    assert_eq!(h.queue.sent().len(), 0, "nothing half-enqueued");
    assert_eq!(
        h.stored_keys(),
        Vec::<String>::new(),
        "a valid body is not quarantined"
    );

    let response = h.ingest(&config, post(&[], body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.queue.sent().len(), 1);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 9. Metrics

/// The events of a fixture batch per type, counted from its JSON (pings have none).
fn events_by_type(body: &[u8]) -> BTreeMap<String, u64> {
    let elements: Vec<serde_json::Value> = serde_json::from_slice(body).expect("a JSON array");
    let mut by_type = BTreeMap::new();
    for element in &elements {
        for event in element["msys"].as_object().expect("msys object").values() {
            let kind = event["type"].as_str().expect("a type").to_owned();
            *by_type.entry(kind).or_default() += 1;
        }
    }
    by_type
}

#[tokio::test]
async fn each_request_counts_in_the_metrics_for_what_it_was_answered() -> TestResult {
    let h = Harness::new();
    let config = config(&[
        ("SPARKLAKE_AUTH", "bearer"),
        ("SPARKLAKE_BEARER_TOKENS", "t1"),
    ])?;
    let authorized = [("authorization", "Bearer t1")];
    let body = fixture(BATCH);
    let malformed = fixture("malformed/two_classes.json");
    let compressed = gzip(&body);
    let by_type = events_by_type(&body);
    assert_eq!(by_type.values().sum::<u64>(), 19);

    let cases = [
        (
            "accepted",
            post(&authorized, body.clone()),
            StatusCode::OK,
            Metrics {
                batches: 1,
                bytes: body.len() as u64,
                events_in: by_type.clone(),
                ..Metrics::default()
            },
        ),
        (
            "accepted gzip: the bytes received, not inflated",
            post(
                &[authorized[0], ("content-encoding", "gzip")],
                compressed.clone(),
            ),
            StatusCode::OK,
            Metrics {
                batches: 1,
                bytes: compressed.len() as u64,
                events_in: by_type.clone(),
                ..Metrics::default()
            },
        ),
        (
            "ping",
            post(&authorized, &br#"[{"msys":{}}]"#[..]),
            StatusCode::OK,
            Metrics {
                batches: 1,
                bytes: 13,
                ..Metrics::default()
            },
        ),
        (
            "malformed",
            post(&authorized, malformed.clone()),
            StatusCode::BAD_REQUEST,
            Metrics {
                rejected: 1,
                bytes: malformed.len() as u64,
                ..Metrics::default()
            },
        ),
        (
            "unauthenticated",
            post(&[], body.clone()),
            StatusCode::UNAUTHORIZED,
            Metrics {
                rejected: 1,
                bytes: body.len() as u64,
                ..Metrics::default()
            },
        ),
        (
            "health check",
            request("GET", "/health", &[], &b"ignored"[..]),
            StatusCode::OK,
            Metrics::default(),
        ),
        (
            "another method",
            request("PUT", "/", &authorized, body.clone()),
            StatusCode::METHOD_NOT_ALLOWED,
            Metrics::default(),
        ),
    ];
    for (what, request, status, expected) in cases {
        let (response, metrics) = h.ingest_measured(&config, request).await;
        assert_eq!(response.status(), status, "{what}");
        assert_eq!(metrics, expected, "{what}");
    }

    // A queue failure is a failure, not a batch, and counts no event as received.
    h.queue.fail(true);
    let (response, metrics) = h
        .ingest_measured(&config, post(&authorized, body.clone()))
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        metrics,
        Metrics {
            failures: 1,
            bytes: body.len() as u64,
            ..Metrics::default()
        }
    );
    Ok(())
}
