//! The fields SparkPost's event model documents beyond its sample batch, read into their typed
//! columns from fixtures written from the documentation (`fixtures/documented/`): values as
//! SparkPost sends them (numbers as strings, flags as `"1"`), missing fields, fields of the
//! wrong type, and fields it may add later.

mod common;

use common::fixture;
use sparklake_core::envelope::{EventHead, validate};
use sparklake_core::event::Event;
use sparklake_core::schema::{COLUMNS, Row, TimestampPolicy, Value};

const RECEIVED: i64 = 1_700_000_000_000;

/// The row of one validated element, received at [`RECEIVED`].
fn row<'a>(raw: &'a str, head: &EventHead<'a>, policy: &TimestampPolicy) -> Row<'a> {
    Row::new(Event::with_head(raw, head.clone()), None, RECEIVED, policy)
}

/// Every row of a fixture, with each column's value by name.
fn rows(name: &str) -> Vec<Vec<(&'static str, String)>> {
    let body = fixture(name);
    let batch = validate(&body).expect("a valid batch");
    batch
        .events()
        .map(|(element, head)| {
            let row = row(element.raw, head, &TimestampPolicy::default());
            COLUMNS
                .iter()
                .map(|c| (c.name, show((c.read)(&row))))
                .collect()
        })
        .collect()
}

/// A value as text: `-` for null.
fn show(value: Value<'_>) -> String {
    match value {
        Value::Text(t) => t.map_or("-".into(), str::to_owned),
        Value::Int(i) | Value::Millis(i) => i.map_or("-".into(), |i| i.to_string()),
        Value::Float(f) => f.map_or("-".into(), |f| f.to_string()),
        Value::Bool(b) => b.to_string(),
        Value::OptBool(b) => b.map_or("-".into(), |b| b.to_string()),
    }
}

fn get<'r>(row: &'r [(&'static str, String)], column: &str) -> &'r str {
    &row.iter()
        .find(|(c, _)| *c == column)
        .unwrap_or_else(|| panic!("no column {column}"))
        .1
}

fn check(row: &[(&'static str, String)], expected: &[(&str, &str)]) {
    let id = get(row, "event_id");
    for (column, want) in expected {
        assert_eq!(get(row, column), *want, "{column} of {id}");
    }
}

#[test]
fn message_events_read_every_documented_field() {
    let rows = rows("documented/message_events.json");
    assert_eq!(rows.len(), 6);
    check(
        &rows[0],
        &[
            ("type", "delivery"),
            ("mailbox_provider", "Gsuite"),
            ("mailbox_provider_region", "Europe - UK"),
            ("recipient_domain", "example.com"),
            ("sending_domain", "example.com"),
            // 2016-04-18T14:25:07.000Z
            ("injection_time", "1460989507000"),
            // Unix seconds as a string, as the documentation's sample has it.
            ("scheduled_time", "1588348800000"),
            ("outbound_tls", "-1"),
            ("recv_method", "esmtp"),
            ("click_tracking", "true"),
            ("open_tracking", "true"),
            ("initial_pixel", "true"),
            ("amp_enabled", "true"),
            ("transactional", "true"),
            ("rcpt_hash", "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"),
            ("ab_test_id", "password-reset"),
            ("ab_test_version", "1"),
            (
                "device_token",
                "45c19189783f867973f6e6a5cca60061ffe4fa77c547150563a1192fa9847f8a",
            ),
            ("sms_coding", "ASCII"),
            ("sms_segments", "5"),
            ("sms_src_npi", "E164"),
            ("sms_src_ton", "Unknown"),
            ("sms_dst_npi", "E164"),
            ("sms_dst_ton", "International"),
            (
                "sms_remoteids",
                r#"["0000", "0001", "0002", "0003", "0004"]"#,
            ),
            ("queue_time", "12"),
            ("timestamp_implausible", "false"),
        ],
    );
    // The field SparkPost may add later has no column; `raw` keeps it.
    assert!(get(&rows[0], "raw").contains("a_field_sparkpost_adds_later"));
    check(
        &rows[1],
        &[
            ("type", "bounce"),
            ("mailbox_provider", "Gmail"),
            ("injection_time", "1460989507000"),
            ("outbound_tls", "-1"),
            ("recv_method", "rest"),
            ("click_tracking", "true"),
            ("open_tracking", "false"),
            ("initial_pixel", "true"),
            ("amp_enabled", "false"),
            ("transactional", "false"),
            ("sms_segments", "1"),
            ("sms_remoteids", r#"{"0": "a92d84ab"}"#),
        ],
    );
    check(
        &rows[2],
        &[
            ("type", "spam_complaint"),
            ("fbtype", "abuse"),
            ("report_by", "server.email.com"),
            ("report_to", "abuse.example.com"),
            ("mailbox_provider", "-"),
        ],
    );
    check(
        &rows[3],
        &[
            ("type", "sms_status"),
            ("event_id", "-"),
            ("sms_dst_ton", "International"),
            ("sms_src_ton", "Unknown"),
            ("sms_remoteids", r#"["0000", "0001"]"#),
        ],
    );
    // None of the new fields: every new column null (the flag columns too).
    let new_columns = COLUMNS
        .iter()
        .skip_while(|c| c.name != "raw")
        .skip(2)
        .map(|c| c.name);
    for column in new_columns {
        assert_eq!(
            get(&rows[4], column),
            "-",
            "{column} of an event without it"
        );
    }
    // Every new field of the wrong type: null in its column, the event kept whole.
    check(
        &rows[5],
        &[
            ("type", "delay"),
            ("outbound_tls", "-"),
            ("click_tracking", "-"),
            ("transactional", "-"),
            ("injection_time", "-"),
            ("sms_segments", "-"),
            // A number in a text column keeps its digits.
            ("mailbox_provider", "42"),
            ("ab_test_version", "-"),
            ("sms_remoteids", "-"),
            ("timestamp", "1460989507000"),
        ],
    );
}

#[test]
fn track_events_read_the_tracking_flags() {
    let rows = rows("documented/track_events.json");
    check(
        &rows[0],
        &[
            ("type", "amp_open"),
            ("initial_pixel", "true"),
            ("amp_enabled", "true"),
            ("transactional", "true"),
            ("ab_test_id", "password-reset"),
            ("geo_latitude", "39.1749"),
        ],
    );
    check(
        &rows[1],
        &[
            ("type", "initial_open"),
            ("amp_enabled", "false"),
            ("click_tracking", "-"),
            ("geo_longitude", "-76.8375"),
        ],
    );
}

#[test]
fn ab_test_events_read_the_test_object() {
    let rows = rows("documented/ab_test_events.json");
    check(
        &rows[0],
        &[
            ("event_class", "ab_test_event"),
            ("type", "ab_test_completed"),
            ("ab_test_id", "password-reset"),
            ("ab_test_name", "Password Reset"),
            ("ab_test_version", "1"),
            ("ab_test_mode", "bayesian"),
            ("ab_test_engagement_metric", "count_unique_clicked"),
            ("ab_test_winning_template_id", "templ-1234"),
            ("ab_test_default_template_id", "templ-1234"),
            ("subaccount_id", "101"),
        ],
    );
    // The whole object, as sent, for its variants and counts.
    let object: serde_json::Value =
        serde_json::from_str(get(&rows[0], "ab_test")).expect("the ab_test column is JSON");
    assert_eq!(object["variants"][0]["template_id"], "templ-5678");
    check(
        &rows[1],
        &[
            ("type", "ab_test_cancelled"),
            ("ab_test_id", "welcome"),
            ("ab_test_version", "2"),
            ("ab_test_mode", "learning"),
            ("ab_test_winning_template_id", "-"),
            ("ab_test_default_template_id", "templ-1"),
        ],
    );
    // Not an object: the columns are null, the event is kept.
    check(
        &rows[2],
        &[
            ("ab_test", "-"),
            ("ab_test_id", "-"),
            ("type", "ab_test_completed"),
        ],
    );
}

#[test]
fn ingest_events_read_their_batch_counts() {
    let rows = rows("documented/ingest_events.json");
    check(
        &rows[0],
        &[
            ("event_class", "ingest_event"),
            ("type", "success"),
            ("ingest_batch_id", "704c1176-fa52-4ce0-81f5-290b6c917a15"),
            ("number_succeeded", "500"),
            ("number_duplicates", "350"),
            ("number_failed", "-"),
            ("retryable", "-"),
            // 2019-06-16T19:02:09.373Z
            ("expiration_timestamp", "1560711729373"),
            // The webhook's own batch id column is not the ingest batch's.
            ("batch_id", "-"),
        ],
    );
    check(
        &rows[1],
        &[
            ("type", "error"),
            ("timestamp", "1559847729373"),
            ("customer_id", "8675308"),
            ("number_succeeded", "440"),
            ("number_failed", "460"),
            ("error_type", "validation"),
            ("retryable", "false"),
            (
                "ingest_href",
                "https://api.sparkpost.com/api/v1/ingest/events/failures/fbd59e4c-1629-4736-803d-201ff9fa8dd6",
            ),
        ],
    );
}

/// Timestamps SparkPost cannot mean: before the floor (`0`), or years ahead of receipt, are
/// kept as sent and flagged; the row is placed by its receive time.
#[test]
fn implausible_timestamps_are_flagged_and_placed_by_the_receive_time() {
    let body = br#"[{"msys":{"message_event":{"type":"delivery","event_id":"zero","timestamp":"0"}}},
        {"msys":{"message_event":{"type":"delivery","event_id":"far","timestamp":"253402300799000"}}},
        {"msys":{"message_event":{"type":"delivery","event_id":"skew","timestamp":1700000060}}},
        {"msys":{"message_event":{"type":"delivery","event_id":"tomorrow","timestamp":1700090000}}}]"#;
    let batch = validate(body).expect("valid");
    let policy = TimestampPolicy::default();
    let placed: Vec<(bool, i64, String)> = batch
        .events()
        .map(|(element, head)| {
            let row = row(element.raw, head, &policy);
            (
                row.timestamp_implausible,
                row.event.timestamp_millis().unwrap_or(-1),
                row.partition().dt.to_string(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [
            (true, 0, "2023-11-14".to_owned()),
            (true, 253_402_300_799_000, "2023-11-14".to_owned()),
            // A minute ahead (clock skew) is plausible.
            (false, 1_700_000_060_000, "2023-11-14".to_owned()),
            // 25 hours ahead is not.
            (true, 1_700_090_000_000, "2023-11-14".to_owned()),
        ]
    );
    let later = TimestampPolicy::with_floor_date("2024-01-01").expect("a date");
    assert!(
        !later.is_plausible(RECEIVED, RECEIVED),
        "before a later floor"
    );
    assert!(TimestampPolicy::with_floor_date("2024-13-01").is_err());
}
