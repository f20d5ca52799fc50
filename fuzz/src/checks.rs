//! Invariants of the envelope and of everything downstream of an accepted batch. Each check
//! panics (a crash for libFuzzer) with what went wrong.

use std::collections::HashSet;

use sparklake_core::encode::{encode_csv, to_record_batch};
use sparklake_core::envelope::{self, Batch, ValidationError};
use sparklake_core::event::{Event, Identity};
use sparklake_core::partition::{
    Format, escape_path_value, hive_escapes, object_key, unescape_path_value,
};
use sparklake_core::schema::{COLUMNS, Row, TimestampPolicy, Value};

use crate::reference::{self, J};

/// The receive time the targets stamp: 2024-05-06T12:00:00Z.
pub const RECEIVED_AT: i64 = 1_714_996_800_000;

/// Validates `body` and checks the verdict against the reference reading, then, for an
/// accepted batch, every downstream step. Returns the verdict.
pub fn check_body(body: &[u8]) -> Result<Batch<'_>, ValidationError> {
    let verdict = envelope::validate(body);
    let expected = reference::heads(body);
    match (&verdict, &expected) {
        (Ok(batch), Some(heads)) => {
            let got: Vec<_> = batch
                .elements
                .iter()
                .map(|e| owned_head(e.head.as_ref()))
                .collect();
            assert_eq!(
                &got, heads,
                "validate and the reference read different heads"
            );
            check_batch(batch);
        }
        (Err(e), None) => check_error(body, e),
        // A number beyond f64 (`1e999`) is JSON the envelope reads past; the tree cannot hold it.
        (Ok(batch), None) if std::str::from_utf8(body).is_ok_and(J::out_of_range) => {
            check_batch(batch);
        }
        _ => panic!("validate and the reference disagree: {verdict:?} vs {expected:?}"),
    }
    verdict
}

fn owned_head(head: Option<&envelope::EventHead<'_>>) -> reference::Head {
    head.map(|h| (h.class.to_string(), h.event_type.to_string()))
}

/// A refusal's redacted text quotes nothing from the body.
pub fn check_error(body: &[u8], e: &ValidationError) {
    let redacted = e.redacted();
    assert!(
        [
            "body is not valid UTF-8",
            "body is not a JSON array",
            "element ",
            "after element "
        ]
        .iter()
        .any(|p| redacted.starts_with(p)),
        "unexpected redacted error {redacted:?}"
    );
    assert!(
        !redacted.contains(['"', '`', '\'']),
        "redacted error quotes something: {redacted:?}"
    );
    if let ValidationError::NotUtf8 { offset } = e {
        let valid = std::str::from_utf8(body).map_err(|u| u.valid_up_to());
        assert_eq!(valid, Err(*offset), "wrong UTF-8 offset");
    }
}

/// Everything that must hold for an accepted batch.
pub fn check_batch(batch: &Batch<'_>) {
    let raws: Vec<&str> = batch.elements.iter().map(|e| e.raw).collect();

    // Each element is exactly one JSON value, the one the reference read there.
    for element in &batch.elements {
        let Some(tree) = J::parse(element.raw) else {
            assert!(
                J::out_of_range(element.raw),
                "an element's raw text is not JSON"
            );
            continue;
        };
        assert_eq!(
            reference::head(&tree),
            Some(owned_head(element.head.as_ref())),
            "an element's raw text reads differently alone"
        );
    }

    // Joined back, the elements are the same batch.
    let joined = envelope::join(raws.iter().copied());
    let again = envelope::validate(joined.as_bytes()).expect("joined elements validate");
    assert_eq!(again.elements, batch.elements, "join changed the elements");

    // Split into queue messages: each part fits, the parts hold the elements in order, and the
    // packing is greedy (the next element never fit in the part before).
    let events: Vec<&str> = batch.events().map(|(e, _)| e.raw).collect();
    let longest = events.iter().map(|r| r.len()).max().unwrap_or(0);
    for max in [300, longest + 2] {
        check_split(&events, max);
    }

    // Every event reads into a row: fields, identity, partition and object keys.
    let mut rows = Vec::new();
    for element in &batch.elements {
        let parsed = Event::parse(element.raw).expect("an accepted element parses");
        match (&element.head, parsed) {
            (None, None) => {}
            (Some(head), Some(event)) => {
                assert_eq!(&event.head, head, "Event::parse read another head");
                assert_eq!(event.raw, element.raw);
                let with_head = Event::with_head(element.raw, head.clone());
                assert_eq!(with_head.fields.event_id, event.fields.event_id);
                assert_eq!(with_head.timestamp_millis(), event.timestamp_millis());
                rows.push(Row::new(
                    event,
                    Some("fuzz-batch"),
                    RECEIVED_AT,
                    &TimestampPolicy::default(),
                ));
            }
            (head, parsed) => panic!("head {head:?} but Event::parse gave {parsed:?}"),
        }
    }
    for row in &rows {
        check_row(row);
    }
    check_csv(&rows);
    let record_batch = to_record_batch(&rows).expect("rows make an Arrow batch");
    assert_eq!(record_batch.num_rows(), rows.len());
    assert_eq!(record_batch.num_columns(), COLUMNS.len());
}

pub fn check_split(events: &[&str], max: usize) {
    let result = envelope::split(events, max);
    let too_large = events.iter().position(|e| e.len() + 2 > max);
    let parts = match (result, too_large) {
        (Ok(parts), None) => parts,
        (Err(e), Some(index)) => {
            assert_eq!(e.index, index, "split named the wrong element");
            return;
        }
        (result, too_large) => {
            panic!("split({max}) gave {result:?}, first too large {too_large:?}")
        }
    };
    let mut rejoined: Vec<String> = Vec::new();
    let mut previous: Option<usize> = None;
    for part in &parts {
        assert!(
            part.len() <= max,
            "a part of {} bytes over {max}",
            part.len()
        );
        let batch = envelope::validate(part.as_bytes()).expect("a part validates");
        assert!(!batch.elements.is_empty(), "an empty part");
        if let Some(len) = previous {
            let first = batch.elements[0].raw.len();
            assert!(len + 1 + first > max, "split is not greedy at max {max}");
        }
        previous = Some(part.len());
        rejoined.extend(batch.elements.iter().map(|e| e.raw.to_owned()));
    }
    assert_eq!(rejoined, events, "split lost, added or reordered elements");
}

fn column<'r>(row: &'r Row<'_>, name: &str) -> Value<'r> {
    let c = COLUMNS
        .iter()
        .find(|c| c.name == name)
        .expect("a known column");
    (c.read)(row)
}

fn check_row(row: &Row<'_>) {
    let head = &row.event.head;
    // Identity: (type, event_id) when there is an id, else a hash of the raw text.
    match (row.event.identity(), &row.event.fields.event_id.0) {
        (
            Identity::Id {
                event_type,
                event_id,
            },
            Some(id),
        ) => {
            assert_eq!(event_type, head.event_type);
            assert_eq!(&event_id, id);
        }
        (Identity::RawHash(_), None) => {}
        (identity, id) => panic!("identity {identity:?} for event_id {id:?}"),
    }
    assert_eq!(column(row, "type"), Value::Text(Some(&head.event_type)));
    assert_eq!(column(row, "event_class"), Value::Text(Some(&head.class)));
    assert_eq!(column(row, "raw"), Value::Text(Some(row.event.raw)));
    assert_eq!(
        column(row, "timestamp_unparsed"),
        Value::Bool(row.event.timestamp_millis().is_none())
    );

    // The partition's path stays one segment per level, whatever the type says.
    let partition = row.partition();
    assert_eq!(partition.event_type, head.event_type);
    for format in Format::ALL {
        let key = object_key(format, &partition, "name");
        let segments: Vec<&str> = key.split('/').collect();
        assert_eq!(segments.len(), 4, "key {key:?}");
        assert_eq!(
            segments[1],
            format!("event_type={}", escape_path_value(&head.event_type))
        );
        // Hive's escaping: no character it escapes is left bare (a `%` only starts `%XX`).
        let value = &segments[1]["event_type=".len()..];
        assert!(
            !value.chars().any(|c| c != '%' && hive_escapes(c)),
            "key {key:?}"
        );
        assert!(
            value.match_indices('%').all(|(at, _)| value
                .get(at + 1..at + 3)
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))),
            "key {key:?}"
        );
        assert_eq!(unescape_path_value(value), head.event_type, "key {key:?}");
        assert!(segments.iter().all(|s| !s.is_empty() && *s != ".."));
    }

    check_fields(row);
}

const TEXT_FIELDS: &[&str] = &[
    "event_id",
    "message_id",
    "transmission_id",
    "campaign_id",
    "template_id",
    "template_version",
    "rcpt_to",
    "raw_rcpt_to",
    "rcpt_type",
    "msg_from",
    "friendly_from",
    "subject",
    "ip_pool",
    "sending_ip",
    "routing_domain",
    "delv_method",
    "reason",
    "raw_reason",
    "user_agent",
    "ip_address",
    "target_link_name",
    "target_link_url",
    "relay_id",
    "sms_src",
    "sms_dst",
    "mailbox_provider",
    "mailbox_provider_region",
    "recipient_domain",
    "sending_domain",
    "recv_method",
    "rcpt_hash",
    "device_token",
    "sms_coding",
    "sms_src_npi",
    "sms_src_ton",
    "sms_dst_npi",
    "sms_dst_ton",
    "fbtype",
    "report_by",
    "report_to",
    "error_type",
];
/// Text fields whose column has another name: (key, column).
const RENAMED_TEXT_FIELDS: &[(&str, &str)] =
    &[("batch_id", "ingest_batch_id"), ("href", "ingest_href")];
const INT_FIELDS: &[&str] = &[
    "subaccount_id",
    "customer_id",
    "bounce_class",
    "error_code",
    "num_retries",
    "queue_time",
    "msg_size",
    "outbound_tls",
    "sms_segments",
    "number_succeeded",
    "number_failed",
    "number_duplicates",
];
const JSON_FIELDS: &[&str] = &["rcpt_tags", "rcpt_meta", "sms_remoteids"];
const FLAG_FIELDS: &[&str] = &[
    "click_tracking",
    "open_tracking",
    "initial_pixel",
    "amp_enabled",
    "transactional",
    "retryable",
];
/// Timestamp fields besides `timestamp` (judged only as "read or not": the timestamp forms have
/// their own tests; here the point is they never cost the event).
const TIME_FIELDS: &[&str] = &["injection_time", "scheduled_time", "expiration_timestamp"];
/// Fields of the A/B test object, whose scalars have columns; `ab_test_id` / `ab_test_version`
/// fall back to them.
const AB_TEST_FIELDS: &[(&str, &str)] = &[
    ("name", "ab_test_name"),
    ("test_mode", "ab_test_mode"),
    ("engagement_metric", "ab_test_engagement_metric"),
    ("winning_template_id", "ab_test_winning_template_id"),
];
const GEO_FIELDS: &[&str] = &[
    "country",
    "region",
    "city",
    "zip",
    "postal_code",
    "latitude",
    "longitude",
];

fn has_duplicate<'k>(keys: impl Iterator<Item = &'k str>, known: &dyn Fn(&str) -> bool) -> bool {
    let mut seen = HashSet::new();
    keys.filter(|k| known(k)).any(|k| !seen.insert(k))
}

/// Columns this reference does not restate, each with why.
const NOT_CHECKED: &[(&str, &str)] = &[
    (
        "timestamp",
        "read by core::timestamp, tested against chrono in core",
    ),
    (
        "timestamp_implausible",
        "a policy of the writer (core/tests/documented.rs)",
    ),
    (
        "geo_latitude",
        "a float: the reference cannot restate its text (see check_fields)",
    ),
    ("geo_longitude", "as geo_latitude"),
    (
        "batch_id",
        "an attribute of the message, not of the element",
    ),
    (
        "received_at",
        "an attribute of the message, not of the element",
    ),
    (
        "ab_test_default_template_id",
        "nested two levels deep: core/tests/documented.rs",
    ),
];

/// The lists above are this reference's own statement of the schema; a column they and
/// `NOT_CHECKED` leave out would go unchecked, so every input first checks they cover it.
fn check_lists_cover_the_schema() {
    static COVERED: std::sync::LazyLock<()> = std::sync::LazyLock::new(|| {
        let head = ["type", "event_class", "raw", "timestamp_unparsed"];
        let geo = ["geo_country", "geo_region", "geo_city", "geo_zip"];
        let ab = ["ab_test", "ab_test_id", "ab_test_version"];
        let listed: HashSet<&str> = TEXT_FIELDS
            .iter()
            .chain(INT_FIELDS)
            .chain(JSON_FIELDS)
            .chain(FLAG_FIELDS)
            .chain(TIME_FIELDS)
            .copied()
            .chain(RENAMED_TEXT_FIELDS.iter().map(|(_, column)| *column))
            .chain(AB_TEST_FIELDS.iter().map(|(_, column)| *column))
            .chain(NOT_CHECKED.iter().map(|(column, _)| *column))
            .chain(head)
            .chain(geo)
            .chain(ab)
            .collect();
        let schema: HashSet<&str> = COLUMNS.iter().map(|c| c.name).collect();
        let mut missing: Vec<&&str> = schema.difference(&listed).collect();
        let mut extra: Vec<&&str> = listed.difference(&schema).collect();
        missing.sort();
        extra.sort();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "the reference's lists and the schema differ: unchecked columns {missing:?}, \
             listed but not columns {extra:?}"
        );
    });
    std::sync::LazyLock::force(&COVERED);
}

/// The drift rules, restated on the reference tree: what each column must hold.
fn check_fields(row: &Row<'_>) {
    check_lists_cover_the_schema();
    let Some(tree) = J::parse(row.event.raw) else {
        return; // a number beyond f64: see `J::out_of_range`
    };
    let J::Obj(element) = &tree else {
        panic!("element is not an object")
    };
    let Some((_, J::Obj(msys))) = element.iter().find(|(k, _)| k == "msys") else {
        panic!("no msys")
    };
    let Some((_, J::Obj(body))) = msys.first() else {
        panic!("no class body")
    };
    let known = |k: &str| {
        TEXT_FIELDS.contains(&k)
            || RENAMED_TEXT_FIELDS.iter().any(|(key, _)| *key == k)
            || INT_FIELDS.contains(&k)
            || JSON_FIELDS.contains(&k)
            || FLAG_FIELDS.contains(&k)
            || TIME_FIELDS.contains(&k)
            || [
                "timestamp",
                "geo_ip",
                "ab_test",
                "ab_test_id",
                "ab_test_version",
            ]
            .contains(&k)
    };
    let get = |name: &str| body.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let geo_duplicate = match get("geo_ip") {
        Some(J::Obj(geo)) => has_duplicate(geo.iter().map(|(k, _)| k.as_str()), &|k| {
            GEO_FIELDS.contains(&k)
        }),
        _ => false,
    };
    // A repeated field makes the fields unreadable: the event keeps its head and raw text only.
    let unreadable = has_duplicate(body.iter().map(|(k, _)| k.as_str()), &known) || geo_duplicate;
    let lookup = |name: &str| if unreadable { None } else { get(name) };

    for name in TEXT_FIELDS {
        assert_text(
            column(row, name),
            lookup(name),
            &format!("text field {name}"),
        );
    }
    for name in INT_FIELDS {
        assert_int(
            column(row, name),
            lookup(name),
            &format!("int field {name}"),
        );
    }
    for name in JSON_FIELDS {
        let got = match column(row, name) {
            Value::Text(t) => t.map(|t| J::parse(t).expect("a JSON column holds JSON")),
            other => panic!("{name} is {other:?}"),
        };
        let expected = lookup(name).filter(|v| **v != J::Null).cloned();
        assert_eq!(got, expected, "JSON field {name}");
    }
    let geo = match lookup("geo_ip") {
        Some(J::Obj(geo)) => Some(geo),
        _ => None,
    };
    let geo_get = |k: &str| geo.and_then(|g| g.iter().find(|(n, _)| n == k).map(|(_, v)| v));
    for (column_name, key) in [
        ("geo_country", "country"),
        ("geo_region", "region"),
        ("geo_city", "city"),
    ] {
        assert_text(column(row, column_name), geo_get(key), column_name);
    }
    let zip = geo_get("zip")
        .filter(|v| text_of(v).is_some())
        .or_else(|| geo_get("postal_code"));
    assert_text(column(row, "geo_zip"), zip, "geo_zip");

    for (key, name) in RENAMED_TEXT_FIELDS {
        assert_text(column(row, name), lookup(key), &format!("text field {key}"));
    }
    for name in FLAG_FIELDS {
        if let Some(J::F(_)) = lookup(name) {
            // A float's text is not in the tree (`1.0` and `1.0000000000000000001` are both
            // 1.0 there): only integers and strings are judged.
            continue;
        }
        assert_eq!(
            column(row, name),
            Value::OptBool(lookup(name).and_then(flag_of)),
            "flag field {name}"
        );
    }
    for name in TIME_FIELDS {
        let got = column(row, name);
        let Value::Millis(got) = got else {
            panic!("{name} is {got:?}")
        };
        if !matches!(lookup(name), Some(J::Str(_) | J::I(_) | J::U(_) | J::F(_))) {
            assert_eq!(got, None, "time field {name}: not a string or a number");
        }
    }
    // The A/B test object: an object's scalars in their columns and its text whole, anything
    // else nothing. A repeated key inside it loses its scalars only (the object is kept).
    let ab_test = match lookup("ab_test") {
        Some(J::Obj(object)) => Some(object),
        _ => None,
    };
    let ab_duplicate = ab_test.is_some_and(|o| {
        has_duplicate(o.iter().map(|(k, _)| k.as_str()), &|k| {
            [
                "id",
                "name",
                "version",
                "test_mode",
                "engagement_metric",
                "winning_template_id",
                "default_template",
            ]
            .contains(&k)
        })
    });
    let ab_get = |k: &str| {
        ab_test
            .filter(|_| !ab_duplicate)
            .and_then(|o| o.iter().find(|(n, _)| n == k).map(|(_, v)| v))
    };
    assert_eq!(
        matches!(column(row, "ab_test"), Value::Text(Some(_))),
        ab_test.is_some(),
        "ab_test column"
    );
    for (key, name) in AB_TEST_FIELDS {
        assert_text(column(row, name), ab_get(key), name);
    }
    let own_id = lookup("ab_test_id").filter(|v| text_of(v).is_some());
    assert_text(
        column(row, "ab_test_id"),
        own_id.or_else(|| ab_get("id")),
        "ab_test_id",
    );
    let own_version = lookup("ab_test_version");
    if let Value::Int(None) = column(row, "ab_test_version") {
        // Null only if neither the field nor the object's version reads as an integer.
        for source in [own_version, ab_get("version")] {
            assert_int(
                Value::Int(None),
                source.filter(|v| !matches!(v, J::F(_))),
                "ab_test_version",
            );
        }
    }
}

/// A yes/no value as the flag columns read it.
fn flag_of(v: &J) -> Option<bool> {
    match v {
        J::Bool(b) => Some(*b),
        J::I(1) | J::U(1) => Some(true),
        J::I(0) | J::U(0) => Some(false),
        J::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A text column against the tree's value: for a number the column holds its exact digits,
/// which the tree (an f64 or integer) cannot restate, so only "a number" is checked then.
fn assert_text(got: Value<'_>, source: Option<&J>, what: &str) {
    if let Some(J::F(_) | J::U(_) | J::I(_)) = source {
        let Value::Text(Some(text)) = got else {
            panic!("{what}: a number became {got:?}");
        };
        assert!(
            text.parse::<f64>().is_ok(),
            "{what}: {text:?} is not a number"
        );
        return;
    }
    assert_eq!(
        got,
        Value::Text(source.and_then(text_of).as_deref()),
        "{what}"
    );
}

fn text_of(v: &J) -> Option<String> {
    match v {
        J::Str(s) => Some(s.clone()),
        J::I(i) => Some(i.to_string()),
        J::U(u) => Some(match i64::try_from(*u) {
            Ok(i) => i.to_string(),
            Err(_) => (*u as f64).to_string(),
        }),
        J::F(f) => Some(f.to_string()),
        J::Bool(b) => Some(b.to_string()),
        J::Null | J::Arr(_) | J::Obj(_) => None,
    }
}

/// An integer column against the tree's value. The column reads a number's exact text as a
/// decimal (`12.0` and `1.2e1` are 12; a nonzero fraction or a value beyond i64 is null). A
/// string keeps its text, so it is read here exactly too (`exact_int`); a JSON number that is
/// not an integer reaches the tree as an f64, which cannot always restate the text: then only
/// what the f64 settles is checked.
fn assert_int(got: Value<'_>, source: Option<&J>, what: &str) {
    let Value::Int(got) = got else {
        panic!("{what} is {got:?}");
    };
    match source {
        Some(J::I(i)) => assert_eq!(got, Some(*i), "{what}"),
        Some(J::U(u)) => assert_eq!(got, i64::try_from(*u).ok(), "{what}"),
        Some(J::Str(s)) => assert_eq!(got, exact_int(s.trim()), "{what}: {s:?}"),
        Some(J::F(f)) if !f.is_finite() => assert_eq!(got, None, "{what}: {f}"),
        Some(J::F(f)) => {
            // serde_json reads floats with best-effort precision (its `float_roundtrip` feature is
            // off): it can miss the nearest f64 by an ULP, so this is judged within 4.
            let tolerance = f.abs() * 4.0 * f64::EPSILON;
            if (f - f.round()).abs() > tolerance {
                // Clearly a fraction: so is the decimal.
                assert_eq!(got, None, "{what}: {f}");
            } else if let Some(i) = got {
                // An integral f64: the text was that integer, or rounds to it (a text with more
                // digits than an f64 holds may): the integer itself, or null.
                assert!(
                    (i as f64 - f).abs() <= tolerance,
                    "{what}: {i} read from a number near {f}"
                );
            }
        }
        Some(J::Bool(_) | J::Null | J::Arr(_) | J::Obj(_)) | None => {
            assert_eq!(got, None, "{what}")
        }
    }
}

/// A decimal number's text as an exact integer, by moving its decimal point: `[+-]digits[.digits]
/// [e[+-]digits]` with at least one digit before the exponent; `None` for anything else, a
/// nonzero fraction, or a value outside i64.
fn exact_int(text: &str) -> Option<i64> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (m, e)
        }
        None => (rest, "0"),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    // An exponent beyond i64 is refused as such, even on a zero.
    let exponent: i64 = exponent.parse().ok()?;
    let digits: String = format!("{whole}{fraction}");
    if digits.bytes().all(|b| b == b'0') {
        return Some(0);
    }
    // Where the decimal point falls in `digits` once the exponent is applied.
    let point = i64::try_from(whole.len()).ok()?.checked_add(exponent)?;
    let len = i64::try_from(digits.len()).ok()?;
    let (integer, fraction) = if point <= 0 {
        (String::new(), digits.clone())
    } else if point >= len {
        let zeros = usize::try_from(point - len).ok()?;
        if zeros > 40 {
            return None; // beyond i64 whatever the digits
        }
        (format!("{digits}{}", "0".repeat(zeros)), String::new())
    } else {
        let at = usize::try_from(point).ok()?;
        (digits[..at].to_owned(), digits[at..].to_owned())
    };
    if fraction.bytes().any(|b| b != b'0') {
        return None;
    }
    let integer = integer.trim_start_matches('0');
    if integer.is_empty() {
        return Some(0);
    }
    let signed = if negative {
        format!("-{integer}")
    } else {
        integer.to_owned()
    };
    signed.parse::<i64>().ok()
}

/// The CSV reads back as one record per row with every column, and no field holds a raw line
/// break (Athena's OpenCSVSerde cannot read them).
pub fn check_csv(rows: &[Row<'_>]) {
    let csv = encode_csv(rows).expect("CSV encodes");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(&csv[..]);
    let header = reader.headers().expect("a header").clone();
    assert_eq!(header.len(), COLUMNS.len());
    let type_at = header.iter().position(|h| h == "type").expect("type");
    let raw_at = header.iter().position(|h| h == "raw").expect("raw");
    let records: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .expect("the CSV reads back");
    assert_eq!(records.len(), rows.len(), "CSV records");
    for (record, row) in records.iter().zip(rows) {
        assert_eq!(record.len(), COLUMNS.len(), "a record with the wrong width");
        for field in record {
            assert!(
                !field.contains(['\n', '\r']),
                "a raw line break in {field:?}"
            );
        }
        let t = &row.event.head.event_type;
        assert_eq!(
            &record[type_at],
            t.replace('\r', "\\r").replace('\n', "\\n")
        );
        // The raw column is the element, compacted: the same JSON.
        assert_eq!(
            J::parse(&record[raw_at]),
            J::parse(row.event.raw),
            "the raw column is not the element"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::exact_int;

    #[test]
    fn exact_int_moves_the_decimal_point() {
        for (text, want) in [
            ("12", Some(12)),
            ("+12", Some(12)),
            ("-0", Some(0)),
            ("12.0", Some(12)),
            ("1.2e1", Some(12)),
            ("1200e-2", Some(12)),
            ("10e-1", Some(1)),
            (".5e1", Some(5)),
            ("5.", Some(5)),
            ("1.5", None),
            ("1.00000000000000001", None),
            ("-6.496784707109615e18", Some(-6_496_784_707_109_615_000)),
            ("9223372036854775807.0", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("1e19", None),
            ("0e99999999999999999999", None),
            ("0.0e-5", Some(0)),
            ("1e", None),
            ("e5", None),
            (".", None),
            ("0x10", None),
            ("+-1", None),
            ("NaN", None),
        ] {
            assert_eq!(exact_int(text), want, "{text}");
        }
    }
}
