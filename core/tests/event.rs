//! Reading events across the type drift real payloads show.

mod common;

use std::collections::HashSet;

use common::fixture;
use sparklake_core::envelope::validate;
use sparklake_core::event::{Event, Identity};

fn events(body: &[u8]) -> Vec<Event<'_>> {
    let batch = validate(body).expect("valid batch");
    batch
        .elements
        .iter()
        .filter_map(|e| Event::parse(e.raw).expect("parses"))
        .collect()
}

const FEB_2_2016: i64 = 1_454_442_600_000;

#[test]
fn sample_batch_reads_typed_fields() {
    let body = fixture("sparkpost/batch.json");
    let events = events(&body);
    assert_eq!(events.len(), 19);
    let bounce = &events[0];
    assert_eq!(bounce.head.event_type, "bounce");
    assert_eq!(bounce.timestamp_millis(), Some(FEB_2_2016));
    let f = &bounce.fields;
    assert_eq!(f.bounce_class.0, Some(1));
    assert_eq!(f.error_code.0, Some(554));
    assert_eq!(f.num_retries.0, Some(2));
    assert_eq!(f.msg_size.0, Some(1337));
    assert_eq!(f.customer_id.0, Some(1));
    assert_eq!(f.subaccount_id.0, Some(101));
    assert_eq!(f.event_id.as_deref(), Some("92356927693813856"));
    assert_eq!(
        f.rcpt_tags
            .as_str()
            .map(|t| t.replace(char::is_whitespace, "")),
        Some(r#"["male","US"]"#.into())
    );
    let click = events
        .iter()
        .find(|e| e.head.event_type == "click")
        .expect("click");
    assert!(click.fields.geo_ip.latitude.0.is_some());
    assert!(
        click
            .fields
            .target_link_url
            .as_deref()
            .is_some_and(|u| u.starts_with("http"))
    );
    assert!(
        events
            .iter()
            .all(|e| e.timestamp_millis() == Some(FEB_2_2016))
    );
}

#[test]
fn identity_is_type_and_id_so_shared_ids_stay_distinct() {
    let body = fixture("sparkpost/batch.json");
    let events = events(&body);
    let ids: HashSet<_> = events.iter().map(Event::identity).collect();
    assert_eq!(
        ids.len(),
        19,
        "18 events share one event_id but differ in type"
    );
    let sms = events
        .iter()
        .find(|e| e.head.event_type == "sms_status")
        .expect("sms");
    assert!(
        matches!(sms.identity(), Identity::RawHash(_)),
        "no event_id: hash of raw"
    );
}

#[test]
fn every_timestamp_form_parses_and_unreadable_ones_are_flagged() {
    let body = fixture("drift/timestamps.json");
    let got: Vec<_> = events(&body).iter().map(Event::timestamp_millis).collect();
    let oct_11 = 1_539_300_285_000;
    assert_eq!(
        got,
        [
            Some(FEB_2_2016),
            Some(FEB_2_2016),
            Some(oct_11),
            Some(oct_11),
            Some(FEB_2_2016 + 500),
            None,
            None
        ]
    );
}

#[test]
fn numbers_as_strings_or_numbers_read_the_same() {
    let body = fixture("drift/numbers.json");
    let events = events(&body);
    let (s, n) = (&events[0].fields, &events[1].fields);
    for f in [s, n] {
        assert_eq!(
            (
                f.num_retries.0,
                f.queue_time.0,
                f.msg_size.0,
                f.bounce_class.0,
                f.error_code.0
            ),
            (Some(2), Some(12), Some(1337), Some(10), Some(554))
        );
        assert_eq!((f.customer_id.0, f.subaccount_id.0), (Some(1), Some(101)));
    }
    let odd = &events[2].fields;
    assert_eq!(odd.num_retries.0, None, "empty string");
    assert_eq!(odd.queue_time.0, None, "null");
    assert_eq!(odd.msg_size.0, None, "words");
    assert_eq!(odd.bounce_class.0, Some(10), "10.0");
    assert_eq!(odd.error_code.0, None, "5.7.1 is not an integer");
    assert!(
        events[2].raw.contains("5.7.1"),
        "raw keeps what the columns cannot"
    );

    let click = &events[3];
    assert_eq!(
        click.fields.event_id.as_deref(),
        Some("0b3f6e1c-8e4f-4b5d-9a27-3c1f2d4e5a6b")
    );
    assert_eq!(click.fields.geo_ip.latitude.0, Some(39.1749));
    assert_eq!(click.fields.geo_ip.longitude.0, Some(-76.8375));
    assert_eq!(click.fields.geo_ip.city.as_deref(), Some("Columbia"));
    assert_eq!(events[4].fields.geo_ip.latitude.0, Some(39.1749));
    let sms = &events[5];
    assert_eq!(sms.head.event_type, "sms_status");
    assert_eq!(sms.fields.event_id.as_deref(), None);
}

#[test]
fn fields_of_unexpected_types_do_not_lose_the_event() {
    let body = br#"[{"msys":{"message_event":{"type":"delivery","subject":{"a":1},"geo_ip":"x","rcpt_tags":null,"num_retries":true,"timestamp":[1]}}},
                   {"msys":{"message_event":{"type":"delivery","subject":"a","subject":"b"}}}]"#;
    let events = events(body);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].fields.subject.as_deref(), None);
    assert_eq!(events[0].fields.num_retries.0, None);
    assert_eq!(events[0].timestamp_millis(), None);
    assert_eq!(
        events[1].head.event_type, "delivery",
        "duplicate keys keep the event"
    );
}

/// The writer's one pass over an element reads what the two passes (`read_head`, then the
/// fields) read, and refuses what they refuse with the same error, on every fixture and on the
/// shapes that send it the long way.
#[test]
fn one_pass_reads_what_the_two_passes_read() {
    let mut elements: Vec<String> = Vec::new();
    for dir in ["sparkpost", "documented", "drift", "legacy", "compat"] {
        let Ok(entries) = std::fs::read_dir(common::fixture_path(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(body) = std::fs::read(entry.path()) else {
                continue;
            };
            if let Ok(raws) = sparklake_core::envelope::elements(&body) {
                elements.extend(raws.into_iter().map(str::to_owned));
            }
        }
    }
    assert!(elements.len() > 40, "{} fixture elements", elements.len());
    for hostile in [
        r#"{"msys":{}}"#,
        r#"{"msys":{},"cust":1}"#,
        r#"{"nomsys":{}}"#,
        r#"{"msys":{"message_event":{"type":"delivery"}},"msys":{}}"#,
        r#"{"msys":{"message_event":{"type":"delivery"},"track_event":{"type":"open"}}}"#,
        r#"{"msys":{"message_event":{"type":""}}}"#,
        r#"{"msys":{"message_event":{"type":5}}}"#,
        r#"{"msys":{"message_event":{"type":"a","type":"b"}}}"#,
        r#"{"msys":{"message_event":{"event_id":"1"}}}"#,
        r#"{"msys":{"message_event":{"type":"bounce","subject":"a","subject":"b"}}}"#,
        r#"{"msys":{"message_event":{"type":"bounce","geo_ip":[1,2],"timestamp":{}}}}"#,
        r#"{"msys":{"message_event":{"type":"bo\u0075nce","event_id":"\u00e9"}}}"#,
        r#"{"msys":{"message_event":5}}"#,
        r#"{"msys":[]}"#,
        r#"[]"#,
        r#"[{"msys":{"message_event":{"type":"delivery"}}}]"#,
        r#"{"msys":{"message_event":["delivery","1"]}}"#,
        r#"{"msys":{"message_event":[]}}"#,
    ] {
        elements.push(hostile.to_owned());
    }
    for raw in &elements {
        let two = sparklake_core::envelope::read_head(raw)
            .map(|head| head.map(|h| Event::with_head(raw, h)));
        let one = Event::read_element(raw);
        match (one, two) {
            (Ok(one), Ok(two)) => assert_eq!(format!("{one:?}"), format!("{two:?}"), "{raw}"),
            (Err(one), Err(two)) => assert_eq!(one.to_string(), two.to_string(), "{raw}"),
            (one, two) => panic!("{raw}: one pass {one:?}, two passes {two:?}"),
        }
    }
}

/// `read_events` is `read_batch` without the pings, in order, with the same refusals.
#[test]
fn read_events_is_read_batch_without_pings() {
    use sparklake_core::event::{read_batch, read_events};
    let mut bodies: Vec<Vec<u8>> = ["sparkpost/batch.json", "documented/message_events.json"]
        .into_iter()
        .map(fixture)
        .collect();
    for text in [
        r#"[{"msys":{}},{"msys":{"message_event":{"type":"delivery","event_id":"1"}}},{"msys":{}}]"#,
        r#"[{"msys":{"message_event":{"type":"delivery"}}},{"msys":{"message_event":5}}]"#,
        r#"[{"msys":{"message_event":{"type":"delivery"}}},{"nomsys":1}]"#,
        r#"{"not":"an array"}"#,
        "[]",
    ] {
        bodies.push(text.as_bytes().to_vec());
    }
    for body in &bodies {
        let batch = read_batch(body).map(|events| {
            events
                .into_iter()
                .flatten()
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
        });
        let events = read_events(body, |e| format!("{e:?}"));
        match (events, batch) {
            (Ok(events), Ok(batch)) => assert_eq!(events, batch),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("read_events {a:?}, read_batch {b:?}"),
        }
    }
}
