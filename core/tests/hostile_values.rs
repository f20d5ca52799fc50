//! Valid JSON with odd values is accepted and written with the exact text in `raw`, each typed
//! column holding the value or null, never a wrong one (RELIABILITY.md's decision table): numbers
//! beyond i64 or f64, NaN-like strings, huge integers in text columns, escaped NULs, lone
//! surrogates, a byte order mark. And the shapes that make an event ambiguous are refused.
#![allow(clippy::unwrap_used)]

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
use sparklake_core::encode::{encode_csv, to_record_batch};
use sparklake_core::envelope::{self, ValidationError};
use sparklake_core::event::Event;
use sparklake_core::schema::{Row, TimestampPolicy};

const RECEIVED: i64 = 1_714_996_800_000; // 2024-05-06T12:00:00Z

/// One event of class `message_event`, type `bounce`, with `fields` (JSON members) in it.
fn element(fields: &str) -> String {
    format!(r#"{{"msys":{{"message_event":{{"type":"bounce","event_id":"e1",{fields}}}}}}}"#)
}

/// The row of the one event in `batch`, validated as ingest and the writer do.
fn one_row(batch: &str) -> arrow::array::RecordBatch {
    let parsed = envelope::validate(batch.as_bytes()).unwrap();
    let rows: Vec<Row<'_>> = parsed
        .events()
        .map(|(e, head)| {
            Row::new(
                Event::with_head(e.raw, head.clone()),
                None,
                RECEIVED,
                &TimestampPolicy::default(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 1, "{batch}");
    // The CSV of the same row encodes too (and has one record).
    let csv = encode_csv(&rows).unwrap();
    assert_eq!(csv::Reader::from_reader(&csv[..]).records().count(), 1);
    to_record_batch(&rows).unwrap()
}

fn int(batch: &arrow::array::RecordBatch, column: &str) -> Option<i64> {
    let a = batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Int64Type>();
    a.is_valid(0).then(|| a.value(0))
}

fn float(batch: &arrow::array::RecordBatch, column: &str) -> Option<f64> {
    let a = batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Float64Type>();
    a.is_valid(0).then(|| a.value(0))
}

fn text(batch: &arrow::array::RecordBatch, column: &str) -> Option<String> {
    let a = batch.column_by_name(column).unwrap().as_string::<i32>();
    a.is_valid(0).then(|| a.value(0).to_owned())
}

fn millis(batch: &arrow::array::RecordBatch, column: &str) -> Option<i64> {
    let a = batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<TimestampMillisecondType>();
    a.is_valid(0).then(|| a.value(0))
}

#[test]
fn integers_beyond_i64_or_not_integral_are_null_never_rounded() {
    // (JSON value, what num_retries must hold)
    let cases: &[(&str, Option<i64>)] = &[
        ("9223372036854775807", Some(i64::MAX)),
        ("-9223372036854775808", Some(i64::MIN)),
        ("9223372036854775808", None),
        ("-9223372036854775809", None),
        ("18446744073709551615", None),
        ("99999999999999999999999999999", None),
        ("1e400", None),
        ("-1e400", None),
        ("1e-400", None),
        ("0e5", Some(0)),
        ("-0.0", Some(0)),
        ("9007199254740993", Some(9_007_199_254_740_993)),
        ("9007199254740993.0", Some(9_007_199_254_740_993)),
        ("9223372036854775807.000", Some(i64::MAX)),
        ("9.223372036854775807e18", Some(i64::MAX)),
        ("9.223372036854775808e18", None),
        ("12.0", Some(12)),
        ("12.5", None),
        ("12.0000000000000000000001", None),
        ("1e3", Some(1000)),
        ("1200e-2", Some(12)),
        ("1201e-2", None),
        ("1E+2", Some(100)),
        ("1e19", None),
        ("1e999999999999999999999", None),
        (r#""12.""#, Some(12)),
        (r#"".""#, None),
        (r#"".5""#, None),
        (r#""+7""#, Some(7)),
        (r#""-""#, None),
        (r#""1e""#, None),
        (r#""9223372036854775808""#, None),
        (r#""1e400""#, None),
        (r#""NaN""#, None),
        (r#""nan""#, None),
        (r#""Infinity""#, None),
        (r#""-inf""#, None),
        (r#""0x10""#, None),
        (r#""1_000""#, None),
        (r#""12 apples""#, None),
        (r#"" 42 ""#, Some(42)),
        (r#""""#, None),
        ("true", None),
        ("null", None),
        ("[1]", None),
        (r#"{"n":1}"#, None),
    ];
    for (value, expected) in cases {
        let element = element(&format!(r#""num_retries":{value},"rcpt_to":"r@x.example""#));
        let batch = one_row(&format!("[{element}]"));
        assert_eq!(
            int(&batch, "num_retries"),
            *expected,
            "num_retries: {value}"
        );
        // The rest of the event is still read: one odd value nulls only its own column.
        assert_eq!(
            text(&batch, "rcpt_to").as_deref(),
            Some("r@x.example"),
            "{value}"
        );
        assert_eq!(text(&batch, "event_id").as_deref(), Some("e1"), "{value}");
        assert_eq!(text(&batch, "raw"), Some(element), "raw is exact");
    }
}

#[test]
fn floats_beyond_f64_or_nan_like_are_null() {
    let cases: &[(&str, Option<f64>)] = &[
        ("39.1749", Some(39.1749)),
        (r#""-76.8375""#, Some(-76.8375)),
        ("1e400", None),
        ("-1e400", None),
        (r#""NaN""#, None),
        (r#""inf""#, None),
        (r#""-Infinity""#, None),
        (r#""1e999""#, None),
        (r#""north""#, None),
        ("18446744073709551615", Some(18_446_744_073_709_551_615.0)),
    ];
    for (value, expected) in cases {
        let element = element(&format!(
            r#""geo_ip":{{"latitude":{value},"country":"US"}}"#
        ));
        let batch = one_row(&format!("[{element}]"));
        assert_eq!(float(&batch, "geo_latitude"), *expected, "{value}");
        assert_eq!(
            text(&batch, "geo_country").as_deref(),
            Some("US"),
            "{value}"
        );
    }
}

#[test]
fn numbers_in_text_columns_keep_their_exact_digits() {
    for value in [
        "123456789012345678901234567890",
        "18446744073709551615",
        "9223372036854775808",
        "-0",
        "1.50",
        "1E+2",
        "0.1000000000000000055511151231257827",
        "1e400",
    ] {
        let element = element(&format!(
            r#""message_id":{value},"template_version":{value}"#
        ));
        let batch = one_row(&format!("[{element}]"));
        assert_eq!(text(&batch, "message_id").as_deref(), Some(value));
        assert_eq!(text(&batch, "template_version").as_deref(), Some(value));
    }
    // An event_id given as a huge number is its identity's exact text too.
    let raw = element("").replace(
        r#""event_id":"e1""#,
        r#""event_id":123456789012345678901234567890"#,
    );
    let raw = raw.replace(",}", "}");
    let event = Event::parse(&raw).unwrap().unwrap();
    assert_eq!(
        event.fields.event_id.as_deref(),
        Some("123456789012345678901234567890")
    );
}

#[test]
fn timestamps_that_are_not_times_are_null_and_partitioned_by_receive_date() {
    for value in [
        r#""NaN""#,
        "1e400",
        r#""99999999999999999999""#,
        r#""-1""#,
        r#""2024-02-30T00:00:00Z""#,
        "true",
        r#""""#,
    ] {
        let element = element(&format!(r#""timestamp":{value}"#));
        let batch = one_row(&format!("[{element}]"));
        assert_eq!(millis(&batch, "timestamp"), None, "{value}");
        let unparsed = batch
            .column_by_name("timestamp_unparsed")
            .unwrap()
            .as_boolean()
            .value(0);
        assert!(unparsed, "{value}");
        assert_eq!(millis(&batch, "received_at"), Some(RECEIVED));
    }
}

#[test]
fn odd_strings_are_kept_exactly() {
    let huge = "x".repeat(512 * 1024);
    let cases: Vec<(String, Option<String>)> = vec![
        (r#""a\u0000b""#.into(), Some("a\0b".into())),
        (r#""tab\there""#.into(), Some("tab\there".into())),
        (r#""\u202eevil""#.into(), Some("\u{202e}evil".into())),
        (r#""\ud83d\ude00""#.into(), Some("\u{1f600}".into())),
        (r#""\u00e9t\u00e9""#.into(), Some("été".into())),
        ("\"été \u{1f600}\"".into(), Some("été \u{1f600}".into())),
        (r#""a\"b\\c""#.into(), Some("a\"b\\c".into())),
        // A lone surrogate is valid JSON but no text: null, the escape stays in raw.
        (r#""\ud800""#.into(), None),
        (r#""x\udc00y""#.into(), None),
        (format!("\"{huge}\""), Some(huge.clone())),
    ];
    for (value, expected) in cases {
        let element = element(&format!(r#""subject":{value},"rcpt_to":"r@x.example""#));
        let batch = one_row(&format!("[{element}]"));
        assert_eq!(
            text(&batch, "subject"),
            expected,
            "{}",
            &value[..value.len().min(40)]
        );
        assert_eq!(text(&batch, "rcpt_to").as_deref(), Some("r@x.example"));
        assert_eq!(text(&batch, "raw"), Some(element));
    }
}

#[test]
fn a_leading_byte_order_mark_is_ignored() {
    let element = element(r#""num_retries":"2""#);
    let body = format!("\u{feff}[{element}]");
    let parsed = envelope::validate(body.as_bytes()).unwrap();
    assert_eq!(parsed.event_count(), 1);
    assert_eq!(parsed.elements[0].raw, element);
    // Anywhere else it is not JSON.
    for bad in [
        format!("\u{feff}\u{feff}[{element}]"),
        format!("[\u{feff}{element}]"),
        format!(" \u{feff}[{element}]"),
    ] {
        assert!(envelope::validate(bad.as_bytes()).is_err(), "{bad:?}");
    }
    // UTF-16 (with its byte order mark) is not UTF-8.
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(
            format!("[{element}]")
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    assert!(matches!(
        envelope::validate(&utf16),
        Err(ValidationError::NotUtf8 { offset: 0 })
    ));
}

#[test]
fn ambiguous_or_unwritable_heads_are_refused() {
    // A long type is not refused: SparkPost drops what we refuse, and a type too long for a
    // path is written under a shortened partition once SPARKLAKE_PARTITION_VALUE_MAX_BYTES is
    // set (local/tests/poison_replay.rs shows it dead-lettered without, replayed with).
    let longest = "t".repeat(1_000);
    let cases = [
        (
            r#"[{"msys":{"message_event":{"type":"bounce","type":"delivery"}}}]"#.to_owned(),
            "`message_event.type` appears twice",
        ),
        (
            r#"[{"msys":{"message_event":{"type":"bounce","event_id":"1","type":"bounce"}}}]"#
                .to_owned(),
            "appears twice",
        ),
        (
            r#"[{"msys":{"message_event":{"type":"bounce"}},"msys":{}}]"#.to_owned(),
            "`msys` appears twice",
        ),
        (
            r#"[{"msys":{"message_event":{"type":"bounce"},"message_event":{"type":"bounce"}}}]"#
                .to_owned(),
            "two event classes",
        ),
        (
            r#"[{"msys":{"message_event":{"type":"\ud800"}}}]"#.to_owned(),
            "not a string",
        ),
    ];
    for (body, word) in cases {
        let error = envelope::validate(body.as_bytes()).unwrap_err();
        assert!(error.to_string().contains(word), "{body}: {error}");
        assert_eq!(error.index(), Some(0), "{body}");
        // What logs carry names no value.
        assert!(!error.redacted().contains("bounce"), "{}", error.redacted());
    }
    let ok = format!(r#"[{{"msys":{{"message_event":{{"type":"{longest}"}}}}}}]"#);
    assert_eq!(envelope::validate(ok.as_bytes()).unwrap().event_count(), 1);
}

#[test]
fn a_duplicated_field_keeps_the_event_with_its_raw_text() {
    // Not part of the head: the event is kept (refusing it would lose it after SparkPost's
    // retries), its typed columns are null rather than either copy, `raw` holds both.
    let element = r#"{"msys":{"message_event":{"type":"bounce","event_id":"e1","rcpt_to":"a@x.example","rcpt_to":"b@x.example"}}}"#;
    let batch = one_row(&format!("[{element}]"));
    assert_eq!(text(&batch, "rcpt_to"), None);
    assert_eq!(text(&batch, "type").as_deref(), Some("bounce"));
    assert_eq!(text(&batch, "raw").as_deref(), Some(element));
}

#[test]
fn nesting_up_to_the_limit_is_accepted_and_beyond_it_refused() {
    let nested = |depth: usize| {
        // The element itself, msys and the class are 3 levels, the array 1 more.
        let inner = depth - 4;
        format!(
            r#"[{{"msys":{{"message_event":{{"type":"bounce","rcpt_meta":{}1{}}}}}}}]"#,
            "[".repeat(inner),
            "]".repeat(inner)
        )
    };
    let ok = nested(envelope::MAX_DEPTH);
    let batch = one_row(&ok);
    let meta = text(&batch, "rcpt_meta").unwrap();
    assert!(meta.starts_with("[[[") && meta.ends_with("]]]"));
    let too_deep = nested(envelope::MAX_DEPTH + 1);
    assert!(matches!(
        envelope::validate(too_deep.as_bytes()),
        Err(ValidationError::TooDeep { index: 0, .. })
    ));
    // Brackets inside strings are not nesting.
    let in_string = format!(
        r#"[{{"msys":{{"message_event":{{"type":"bounce","subject":"{}"}}}}}}]"#,
        "[{".repeat(10_000)
    );
    assert_eq!(
        envelope::validate(in_string.as_bytes())
            .unwrap()
            .event_count(),
        1
    );
}
