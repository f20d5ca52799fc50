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
