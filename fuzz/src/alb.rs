//! The `alb_request` target's checks: an ALB event through the ingest Lambda's decoding and
//! handler, against an independent reading of what the answer must be.

use std::io::Read as _;

use flate2::read::MultiGzDecoder;
use http::{Method, StatusCode};
use ingest::{Ingest, IngestConfig};
use sparklake_aws::alb;
use sparklake_core::envelope;
use sparklake_core::message::attr;

use crate::block_on;
use crate::checks::{RECEIVED_AT, check_body};
use crate::gen_alb::AlbEvent;
use sparklake_core::memory::{MemoryQueue, MemoryStore, StoredObject};

/// Small limits, so the fuzzer reaches 413s and split batches with small inputs.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// What the handler must answer a POST with, read independently of it.
enum Expected {
    TooLarge,
    Unsupported,
    BadGzip,
    Body(Vec<u8>),
}

fn expected_post(headers: &http::HeaderMap, body: &[u8]) -> Expected {
    if body.len() > MAX_BODY_BYTES {
        return Expected::TooLarge;
    }
    let encoding = headers
        .get(http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Expected::Body(body.to_vec()),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::new();
            match MultiGzDecoder::new(body)
                .take(MAX_BODY_BYTES as u64 + 1)
                .read_to_end(&mut out)
            {
                Ok(_) if out.len() > MAX_BODY_BYTES => Expected::TooLarge,
                Ok(_) => Expected::Body(out),
                Err(_) => Expected::BadGzip,
            }
        }
        Some(_) => Expected::Unsupported,
    }
}

/// Decodes one ALB event and runs it through the handler; `generated` is what the event was
/// built from, when it was.
pub fn check_event(json: &str, generated: Option<&AlbEvent>) {
    let Ok(request) = alb::decode(json) else {
        return;
    };
    let request = alb::to_handler(request);
    if let Some(event) = generated {
        // (An empty method reads as GET.)
        if !event.method.is_empty() {
            assert_eq!(request.method().as_str(), event.method, "method");
        }
        assert_eq!(&request.body()[..], &event.body[..], "body after base64");
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let body = request.body().clone();

    let config = IngestConfig::open(MAX_BODY_BYTES);
    let queue = MemoryQueue::new(MAX_MESSAGE_BYTES);
    let quarantine = MemoryStore::default();
    let ingest = Ingest {
        config: &config,
        queue: &queue,
        quarantine: &quarantine,
    };
    let response = block_on(ingest.handle(request, RECEIVED_AT));
    let status = response.status();
    let answer: serde_json::Value =
        serde_json::from_slice(response.body()).expect("every answer is JSON");
    let sent = queue.take();
    let kept = quarantine.take();

    if matches!(method, Method::GET | Method::HEAD) && path == "/health" {
        assert_eq!(status, StatusCode::OK);
    } else if method != Method::POST {
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    } else {
        let batch_id = headers
            .get("x-messagesystems-batch-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 256);
        match expected_post(&headers, &body) {
            Expected::TooLarge => assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE),
            Expected::Unsupported => assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE),
            Expected::BadGzip => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                check_quarantined(&kept, &body, gzip(&headers), 400);
            }
            Expected::Body(plain) => match check_body(&plain) {
                Err(_) => {
                    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
                    check_quarantined(&kept, &body, gzip(&headers), 400);
                }
                Ok(batch) if batch.event_count() == 0 => {
                    assert_eq!(status, StatusCode::OK);
                    assert!(sent.is_empty() && kept.is_empty());
                }
                Ok(batch) => {
                    let events: Vec<&str> = batch.events().map(|(e, _)| e.raw).collect();
                    let types: std::collections::HashSet<&str> =
                        batch.events().map(|(_, h)| &*h.event_type).collect();
                    if types.len() > ingest::config::DEFAULT_MAX_TYPES_PER_BATCH {
                        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
                        check_quarantined(&kept, &body, gzip(&headers), 400);
                        return;
                    }
                    if events.iter().any(|e| e.len() + 2 > MAX_MESSAGE_BYTES)
                        && plain.len() > MAX_MESSAGE_BYTES
                    {
                        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
                        check_quarantined(&kept, &body, gzip(&headers), 413);
                        return;
                    }
                    assert_eq!(status, StatusCode::OK, "{answer}");
                    assert_eq!(answer["accepted"], events.len());
                    assert_eq!(answer["messages"], sent.len());
                    assert!(kept.is_empty());
                    check_enqueued(&sent, &plain, &events, batch_id);
                }
            },
        }
    }

    // The ALB response stays within the ALB's limit.
    let out = alb::from_handler(response);
    assert!(out.body().len() <= alb::MAX_RESPONSE_BYTES);
}

/// The messages hold the batch: the body itself when it fits, else its events in order, each
/// message within the limit and numbered.
fn check_enqueued(
    sent: &[sparklake_core::message::OutboundMessage],
    plain: &[u8],
    events: &[&str],
    batch_id: Option<&str>,
) {
    if plain.len() <= MAX_MESSAGE_BYTES {
        assert_eq!(sent.len(), 1);
        assert_eq!(&sent[0].body[..], plain);
    }
    let mut got: Vec<String> = Vec::new();
    for (i, m) in sent.iter().enumerate() {
        let received = RECEIVED_AT.to_string();
        assert_eq!(m.attributes.get(attr::RECEIVED_AT), Some(&received));
        assert_eq!(
            m.attributes.get(attr::BATCH_ID).map(String::as_str),
            batch_id
        );
        if sent.len() > 1 {
            assert!(m.body.len() <= MAX_MESSAGE_BYTES);
            let part = format!("{}/{}", i + 1, sent.len());
            assert_eq!(m.attributes.get(attr::PART), Some(&part));
        }
        let batch = envelope::validate(&m.body).expect("an enqueued message validates");
        got.extend(batch.events().map(|(e, _)| e.raw.to_owned()));
    }
    assert_eq!(got, events, "the queue does not hold the batch's events");
}

/// Whether the request says its body is gzip (the handler then quarantines it as sent).
fn gzip(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "gzip" | "x-gzip"))
}

/// The body is kept exactly as it was sent (a gzip body compressed, as `.body.gz`).
fn check_quarantined(kept: &[StoredObject], body: &[u8], gzip: bool, status: u16) {
    assert_eq!(kept.len(), 2, "body and reason quarantined");
    let suffix = if gzip { ".body.gz" } else { ".body" };
    assert!(kept[0].key.starts_with("quarantine/dt=") && kept[0].key.ends_with(suffix));
    assert_eq!(&kept[0].body[..], body);
    let reason: serde_json::Value = serde_json::from_slice(&kept[1].body).expect("reason JSON");
    assert_eq!(reason["status"], status);
    assert_eq!(reason["bytes"], body.len());
}
