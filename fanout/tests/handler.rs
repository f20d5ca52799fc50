//! The fanout handler over the in-memory ports (the writer's queue, a route's queue, the raw
//! archive), its input enqueued by the ingest handler or sent straight to its queue.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::error::Error;
use std::path::PathBuf;

use bytes::Bytes;
use http::{Request, StatusCode};
use ingest::{Ingest, IngestConfig};
use serde_json::Value as Json;
use sparklake_core::envelope;
use sparklake_core::memory::{MemoryArchive, MemoryQueue, MemoryStore};
use sparklake_core::message::{InboundMessage, OutboundMessage};
use sparklake_core::ports::QueueSend as _;

type TestResult = Result<(), Box<dyn Error>>;

const BATCH: &str = "sparkpost/batch.json";
/// The local queue's default message size limit.
const MAX_MESSAGE_BYTES: usize = 1_048_576;
/// The receive time ingest stamps: 2024-05-06T12:00:00Z.
const RECEIVED_AT: i64 = 1_714_996_800_000;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The `type` of an element's event (`msys`'s one entry).
fn type_of(element: &Json) -> String {
    let msys = element["msys"].as_object().expect("msys object");
    let (_, event) = msys.iter().next().expect("an event class");
    event["type"].as_str().unwrap().to_owned()
}

/// Messages sent to a queue as it delivers them: each with an id of its own, first receive.
fn deliver(sent: Vec<OutboundMessage>, queue: &str) -> Vec<InboundMessage> {
    sent.into_iter()
        .enumerate()
        .map(|(n, m)| m.delivered(format!("{queue}-{n}")))
        .collect()
}

/// POSTs the body to ingest (open, no authentication), which enqueues it on `queue`.
async fn post(queue: &MemoryQueue, body: Vec<u8>, batch_id: &str, received_at: i64) {
    let config = IngestConfig::from_lookup(|k| (k == "SPARKLAKE_AUTH").then(|| "none".into()))
        .expect("a valid open configuration");
    let quarantine = MemoryStore::default();
    let request = Request::builder()
        .method("POST")
        .uri("/")
        .header("x-messagesystems-batch-id", batch_id)
        .body(Bytes::from(body))
        .expect("a valid request");
    let response = Ingest {
        config: &config,
        queue,
        quarantine: &quarantine,
    }
    .handle(request, received_at)
    .await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    assert_eq!(quarantine.puts(), Vec::new());
}

#[tokio::test]
async fn fanout_splits_by_type_routes_archives_and_fails_per_message() -> TestResult {
    let incoming = MemoryQueue::new(MAX_MESSAGE_BYTES);
    let events = MemoryQueue::new(MAX_MESSAGE_BYTES);
    let suppression = MemoryQueue::new(MAX_MESSAGE_BYTES);
    let archive = MemoryArchive::default();
    let routed: BTreeSet<String> = [
        "bounce",
        "list_unsubscribe",
        "link_unsubscribe",
        "spam_complaint",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let routes = [fanout::Route {
        name: "suppression".into(),
        event_types: routed.clone(),
        queue: &suppression,
    }];

    // A message that is not a batch, the sample batch, another broken one, then a ping.
    let attributes = || [("received_at".to_owned(), "1".to_owned())].into();
    incoming
        .send(vec![OutboundMessage {
            body: Bytes::from_static(b"this is not a batch"),
            attributes: attributes(),
        }])
        .await?;
    post(&incoming, fixture(BATCH), "batch-9", RECEIVED_AT).await;
    incoming
        .send(vec![
            OutboundMessage {
                body: Bytes::from_static(br#"[{"msys":{"a":{"type":"x"},"b":{"type":"y"}}}]"#),
                attributes: attributes(),
            },
            OutboundMessage {
                body: Bytes::from_static(br#"[{"msys":{}}]"#),
                attributes: attributes(),
            },
        ])
        .await?;

    let received = deliver(incoming.take(), "incoming");
    assert_eq!(received.len(), 4);
    let fanout = fanout::Fanout {
        events: &events,
        routes: &routes,
        archive: Some(&archive),
    };
    let outcome = fanout.handle(&received).await;
    assert_eq!(outcome.events, 19);
    assert_eq!(
        outcome.failed,
        vec![received[0].id.clone(), received[2].id.clone()],
        "exactly the two broken messages fail"
    );

    // The writer's queue: one message per type, each holding only that type, with the context.
    let elements: Vec<Json> = serde_json::from_slice(&fixture(BATCH))?;
    let batch_text = fixture(BATCH);
    let sample = envelope::validate(&batch_text)?;
    let out = deliver(events.sent(), "events");
    assert_eq!(out.len(), 19);
    let mut seen = Vec::new();
    for m in &out {
        let event_type = m.attribute("event_type").unwrap();
        let batch = envelope::validate(&m.body)?;
        assert!(!batch.elements.is_empty());
        for element in &batch.elements {
            assert_eq!(element.head.as_ref().unwrap().event_type, event_type);
            let original = sample
                .elements
                .iter()
                .find(|e| e.head == element.head)
                .unwrap();
            assert_eq!(element.raw, original.raw, "events travel byte for byte");
            seen.push(event_type.to_owned());
        }
        assert_eq!(m.attribute("batch_id"), Some("batch-9"));
        assert_eq!(m.received_at_millis(), Some(RECEIVED_AT));
    }
    seen.sort();
    let mut all_types: Vec<String> = elements.iter().map(type_of).collect();
    all_types.sort();
    assert_eq!(seen, all_types, "every event exactly once");

    // The route: exactly the routed types.
    let mut routed_seen = Vec::new();
    for m in deliver(suppression.sent(), "suppression") {
        for element in envelope::validate(&m.body)?.elements {
            routed_seen.push(element.head.unwrap().event_type.into_owned());
        }
        assert_eq!(m.attribute("batch_id"), Some("batch-9"));
    }
    routed_seen.sort();
    assert_eq!(routed_seen, routed.iter().cloned().collect::<Vec<_>>());

    // The archive: one record per event, in order, each the element, compact (one NDJSON line).
    let archived = archive.records();
    assert_eq!(archived.len(), 19);
    for (record, element) in archived.iter().zip(&elements) {
        let line = std::str::from_utf8(record)?;
        assert!(!line.contains(['\n', '\r']), "{line}");
        let value: Json = serde_json::from_str(line)?;
        assert_eq!(&value, element);
    }

    // The failed messages, redelivered, fail again (to be dead-lettered in the end) and send
    // nothing more anywhere.
    let again: Vec<InboundMessage> = received
        .iter()
        .filter(|m| outcome.failed.contains(&m.id))
        .map(|m| InboundMessage {
            receive_count: 2,
            ..m.clone()
        })
        .collect();
    let routed_messages = suppression.sent().len();
    let retried = fanout.handle(&again).await;
    assert_eq!(retried.failed, outcome.failed);
    assert_eq!(retried.events, 0);
    assert_eq!(
        (
            events.sent().len(),
            suppression.sent().len(),
            archive.records().len()
        ),
        (19, routed_messages, 19),
        "nothing more sent or archived"
    );
    Ok(())
}

/// Fanout over `messages` (with `outlines`, or validating each body): what it sent to the
/// writer's queue and the archive, and which messages failed.
async fn fan_out(
    messages: &[InboundMessage],
    outlines: &[Option<std::sync::Arc<envelope::Outline>>],
) -> (Vec<OutboundMessage>, Vec<Bytes>, Vec<String>) {
    let events = MemoryQueue::new(MAX_MESSAGE_BYTES);
    let archive = MemoryArchive::default();
    let fanout = fanout::Fanout {
        events: &events,
        routes: &[],
        archive: Some(&archive),
    };
    let outcome = fanout.handle_outlined(messages, outlines).await;
    (events.take(), archive.records(), outcome.failed)
}

#[tokio::test]
async fn an_outline_from_ingest_spares_the_second_walk_and_changes_nothing_fanout_sends() {
    // Ingest, on a queue in this process, hands over what its validation found.
    let incoming = MemoryQueue::new(MAX_MESSAGE_BYTES);
    post(&incoming, fixture(BATCH), "batch-1", RECEIVED_AT).await;
    let (sent, outlines): (Vec<_>, Vec<_>) = incoming.take_outlined().into_iter().unzip();
    let messages = deliver(sent, "incoming");
    assert_eq!(messages.len(), 1);
    let outline = outlines[0]
        .clone()
        .expect("ingest outlines a body it sends whole");
    assert_eq!(
        Some(outline.as_ref().clone()),
        envelope::validate(&messages[0].body)
            .ok()
            .map(|b| b.outline(&messages[0].body))
    );

    let validated = fan_out(&messages, &[]).await;
    assert!(
        !validated.0.is_empty() && validated.1.len() == 19,
        "the sample batch, sent on"
    );
    assert_eq!(fan_out(&messages, &outlines).await, validated);

    // An outline that is not of the message's body is not used: the body is validated, and a
    // broken one still fails alone.
    let broken = deliver(
        vec![OutboundMessage {
            body: Bytes::from_static(b"[{\"msys\": not json"),
            attributes: messages[0].attributes.clone(),
        }],
        "broken",
    );
    let (sent, archived, failed) = fan_out(&broken, &outlines).await;
    assert_eq!((sent, archived), (Vec::new(), Vec::new()));
    assert_eq!(failed, vec![broken[0].id.clone()]);
}
