//! Invariants of the envelope and of everything downstream of an accepted batch. Each check
//! panics (a crash for libFuzzer) with what went wrong.

use sparklake_core::encode::{encode_csv, to_record_batch};
use sparklake_core::envelope::{self, Batch, ValidationError};
use sparklake_core::event::{Event, Identity};
use sparklake_core::partition::{
    Format, escape_path_value, hive_escapes, object_key, unescape_path_value,
};
use sparklake_core::schema::{COLUMNS, Row, TimestampPolicy, Value};

use crate::fields::{check_fields, column};
use crate::reference::{self, J};

/// The receive time the targets stamp: 2024-05-06T12:00:00Z.
pub const RECEIVED_AT: i64 = 1_714_996_800_000;

/// Validates `body` and checks the verdict against the reference reading, then, for an
/// accepted batch, every downstream step. Returns the verdict.
pub fn check_body(body: &[u8]) -> Result<Batch<'_>, ValidationError> {
    let verdict = envelope::validate(body);
    assert_eq!(
        verdict,
        envelope::validate_stepwise(body),
        "the one pass and the stepwise reading disagree"
    );
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
    check_one_pass(body, &verdict);
    verdict
}

/// The writer's reading (the elements, then each element's head and fields in one pass) gives
/// `validate`'s verdict, and for every event the fields `Event::parse` reads.
fn check_one_pass(body: &[u8], verdict: &Result<Batch<'_>, ValidationError>) {
    let read = sparklake_core::event::read_batch(body);
    match (verdict, read) {
        (Ok(batch), Ok(events)) => {
            assert_eq!(batch.elements.len(), events.len());
            for (element, event) in batch.elements.iter().zip(events) {
                let parsed = Event::parse(element.raw).expect("an accepted element parses");
                assert_eq!(
                    format!("{event:?}"),
                    format!("{parsed:?}"),
                    "read_element and Event::parse read {} differently",
                    element.raw
                );
            }
        }
        (Err(e), Err(one_pass)) => assert_eq!(e, &one_pass, "the one pass refused it otherwise"),
        (verdict, read) => panic!("validate gave {verdict:?}, the one pass {read:?}"),
    }
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
