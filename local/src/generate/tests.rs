//! The generator: deterministic, valid, every type.
use std::collections::{BTreeMap, HashSet};

use sparklake_core::envelope::validate;
use sparklake_core::event::Event;

use super::*;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, fs::read(&path).expect("read"))
        })
        .collect();
    out.sort();
    out
}

/// The bytes for a seed are pinned (benchmark inputs stay comparable across changes), and
/// do not depend on how the binary was built (serde_json's `preserve_order` feature).
#[test]
fn a_seed_gives_these_exact_bytes() {
    use sha2::{Digest, Sha256};
    let body = Generator::new(7, 100).batch(100);
    assert_eq!(
        hex::encode(Sha256::digest(body.as_bytes())),
        "5fdd3beaeb7d7aa52c999185698dc351637cd4fb97c79f6e89e2dcf4b231a1bc"
    );
}

#[test]
fn same_seed_same_bytes_and_different_seed_different_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    generate(1_000, 300, 7, a.path()).expect("gen");
    generate(1_000, 300, 7, b.path()).expect("gen");
    generate(1_000, 300, 8, c.path()).expect("gen");
    assert_eq!(files(a.path()), files(b.path()));
    assert_ne!(files(a.path()), files(c.path()));
}

#[test]
fn ten_thousand_events_validate_parse_and_cover_every_type() {
    let dir = tempfile::tempdir().expect("tmp");
    let summary = generate(10_000, 350, 42, dir.path()).expect("gen");
    assert_eq!(summary.events, 10_000);
    assert_eq!(summary.files, 29);
    let per_event = summary.bytes / summary.events;
    assert!(
        (700..=1_500).contains(&per_event),
        "{per_event} bytes/event"
    );

    let files = files(dir.path());
    assert_eq!(files.len(), 29);
    assert_eq!(files[0].0, "batch-000000.json");
    let mut counts = BTreeMap::<String, usize>::new();
    let mut ids = HashSet::new();
    let mut message_ids = HashSet::new();
    let mut total = 0;
    let (mut iso, mut int, mut string) = (0, 0, 0);
    for (i, (name, body)) in files.iter().enumerate() {
        let batch = validate(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = if i == 28 { 10_000 - 28 * 350 } else { 350 };
        assert_eq!(batch.elements.len(), expected, "{name}");
        for (element, head) in batch.events() {
            total += 1;
            let event = Event::parse(element.raw)
                .expect("parses")
                .expect("not a ping");
            assert_eq!(event.head, *head);
            let class = TYPES
                .iter()
                .find(|t| t.0 == head.event_type)
                .map(|t| t.1)
                .expect("known type");
            assert_eq!(head.class, class);
            assert!(event.timestamp_millis().is_some(), "{}", element.raw);
            match event.fields.event_id.as_deref() {
                Some(id) => {
                    assert_ne!(head.event_type, "sms_status");
                    assert!(id.bytes().all(|b| b.is_ascii_digit()));
                    assert!(ids.insert(id.to_owned()), "duplicate event_id {id}");
                }
                None => assert_eq!(head.event_type, "sms_status", "{}", element.raw),
            }
            if let Some(m) = event.fields.message_id.as_deref() {
                message_ids.insert(m.to_owned());
            }
            let value: serde_json::Value = serde_json::from_str(element.raw).expect("json");
            match &value["msys"][class]["timestamp"] {
                serde_json::Value::Number(_) => int += 1,
                serde_json::Value::String(s) if s.contains('T') => iso += 1,
                _ => string += 1,
            }
            *counts.entry(head.event_type.to_string()).or_default() += 1;
        }
    }
    assert_eq!(total, 10_000);
    for (event_type, _, _) in TYPES {
        assert!(
            counts.contains_key(*event_type),
            "no {event_type}: {counts:?}"
        );
    }
    assert!(
        message_ids.len() > 1_000,
        "{} message ids",
        message_ids.len()
    );
    assert!(
        string > 8_000 && int > 500 && iso > 200,
        "{string} {int} {iso}"
    );
}

/// `--days 1 --types delivery`: one type, every timestamp within the last day of the window
/// (what the compaction benchmark's single large partition is made of).
#[test]
fn a_shaped_generator_draws_only_its_types_within_its_days() {
    let types = vec!["delivery".to_owned(), "bounce".to_owned()];
    let mut generator = Generator::shaped(3, 2_000, 1, &types).expect("shape");
    let body = generator.batch(2_000);
    let batch = validate(body.as_bytes()).expect("valid");
    let mut seen = HashSet::new();
    for (element, head) in batch.events() {
        seen.insert(head.event_type.to_string());
        let millis = Event::parse(element.raw)
            .expect("parses")
            .expect("not a ping")
            .timestamp_millis()
            .expect("timestamp");
        assert!(millis >= (WINDOW_END - 86_400) * 1000, "{}", element.raw);
    }
    assert_eq!(
        seen,
        HashSet::from(["delivery".to_owned(), "bounce".to_owned()])
    );
    assert!(Generator::shaped(3, 10, 1, &["nope".to_owned()]).is_err());
    assert!(Generator::shaped(3, 10, 0, &[]).is_err());
}
