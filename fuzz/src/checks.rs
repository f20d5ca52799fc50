//! Invariants of the envelope and of everything downstream of an accepted batch. Each check
//! panics (a crash for libFuzzer) with what went wrong.

use std::collections::HashSet;

use sparklake_core::encode::{encode_csv, to_record_batch};
use sparklake_core::envelope::{self, Batch, ValidationError};
use sparklake_core::event::{Event, Identity};
use sparklake_core::partition::{Format, escape_path_value, object_key};
use sparklake_core::schema::{COLUMNS, Row, Value};

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
                rows.push(Row {
                    event,
                    batch_id: Some("fuzz-batch"),
                    received_at: RECEIVED_AT,
                });
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
        assert!(
            segments[1]["event_type=".len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'%'),
            "key {key:?}"
        );
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
];
const INT_FIELDS: &[&str] = &[
    "subaccount_id",
    "customer_id",
    "bounce_class",
    "error_code",
    "num_retries",
    "queue_time",
    "msg_size",
];
const JSON_FIELDS: &[&str] = &["rcpt_tags", "rcpt_meta"];
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

/// The drift rules, restated on the reference tree: what each column must hold.
fn check_fields(row: &Row<'_>) {
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
            || INT_FIELDS.contains(&k)
            || JSON_FIELDS.contains(&k)
            || k == "timestamp"
            || k == "geo_ip"
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
        let expected = lookup(name).and_then(int_of);
        assert_eq!(column(row, name), Value::Int(expected), "int field {name}");
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

fn int_of(v: &J) -> Option<i64> {
    let integral =
        |f: f64| (f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0).then_some(f as i64);
    match v {
        J::I(i) => Some(*i),
        J::U(u) => i64::try_from(*u).ok().or_else(|| integral(*u as f64)),
        J::F(f) => integral(*f),
        J::Str(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(integral))
        }
        J::Bool(_) | J::Null | J::Arr(_) | J::Obj(_) => None,
    }
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
