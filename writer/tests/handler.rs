//! The writer's handler through ingest → fanout → writer over the in-memory ports (two queues
//! and a store): the sample batch in both formats, redelivery and de-duplication, store failures
//! and unreadable messages; what it stores is read back with the `parquet` and `csv` crates.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use arrow::datatypes::{DataType, TimeUnit};
use bytes::Bytes;
use parquet::basic::Type as PhysicalType;
use serde_json::Value as Json;
use sparklake_core::message::OutboundMessage;
use sparklake_core::ports::QueueSend as _;
use sparklake_core::schema::{COLUMNS, Kind};
use support::*;

// ---------------------------------------------------------------------------------------------
// 9. The sample batch, end to end, in both formats

#[tokio::test]
async fn every_sample_event_lands_once_in_its_partition_in_both_formats() -> TestResult {
    let p = Pipeline::new();
    let written = p.run(&fixture(BATCH), received_at()).await;
    assert_eq!(written.rows, 19);
    assert_eq!(written.duplicates, 0);
    assert_eq!(written.objects.len(), 38);

    let elements = fixture_elements(BATCH);
    let types: BTreeSet<String> = elements
        .iter()
        .map(|e| event_of(e).1["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types.len(), 19, "the sample has one event per type");

    // One Parquet and one CSV object per type, all on the events' date, with the same names.
    let objects = objects(&p.store);
    let mut written_keys: Vec<String> = written.objects.clone();
    written_keys.sort();
    let mut listed: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
    listed.sort();
    assert_eq!(
        written_keys, listed,
        "the outcome names exactly the objects stored"
    );
    assert_eq!(p.store.objects().len(), 38, "nothing else was stored");
    assert_eq!(p.store.puts().len(), 38, "each object stored once");
    for format in ["parquet", "csv"] {
        let of_format: Vec<&Object> = objects.iter().filter(|o| o.format == format).collect();
        let partitions: BTreeSet<String> = of_format.iter().map(|o| o.event_type.clone()).collect();
        assert_eq!(partitions, types, "{format}");
        assert_eq!(of_format.len(), 19, "{format}");
        assert!(of_format.iter().all(|o| o.dt == "2016-02-02"), "{format}");
    }
    for o in objects.iter().filter(|o| o.format == "parquet") {
        assert!(
            objects
                .iter()
                .any(|c| c.format == "csv" && c.event_type == o.event_type && c.name == o.name),
            "no CSV twin of {}",
            o.key
        );
    }

    // Parquet: schema, physical types, and every value.
    let any_parquet = objects.iter().find(|o| o.format == "parquet").unwrap();
    let file = read_parquet(&any_parquet.body)?;
    let fields: Vec<(String, DataType)> = file
        .schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let expected: Vec<(String, DataType)> = COLUMNS
        .iter()
        .map(|c| (c.name.to_owned(), sparklake_core::schema::data_type(c.kind)))
        .collect();
    assert_eq!(fields, expected);
    let utc_millis = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    assert_eq!(
        file.schema.field_with_name("timestamp")?.data_type(),
        &utc_millis
    );
    assert_eq!(
        file.schema.field_with_name("received_at")?.data_type(),
        &utc_millis
    );
    for name in [
        "num_retries",
        "msg_size",
        "bounce_class",
        "error_code",
        "customer_id",
        "subaccount_id",
        "queue_time",
    ] {
        assert_eq!(
            file.schema.field_with_name(name)?.data_type(),
            &DataType::Int64,
            "{name}"
        );
    }
    assert_eq!(
        file.schema.field_with_name("geo_latitude")?.data_type(),
        &DataType::Float64
    );
    assert_eq!(
        file.schema
            .field_with_name("timestamp_unparsed")?
            .data_type(),
        &DataType::Boolean
    );
    let parquet_schema = file.metadata.file_metadata().schema_descr();
    for name in ["timestamp", "received_at"] {
        let column = (0..parquet_schema.num_columns())
            .map(|i| parquet_schema.column(i))
            .find(|c| c.name() == name)
            .unwrap();
        // The default, INT96: the timestamp every engine reads (README, "Engines").
        assert_eq!(column.physical_type(), PhysicalType::INT96, "{name}");
        assert_eq!(column.logical_type_ref(), None, "{name}");
    }

    let rows = parquet_rows(&p.store)?;
    assert_eq!(rows.len(), 19);
    let int_columns: Vec<&str> = COLUMNS
        .iter()
        .filter(|c| c.kind == Kind::Int)
        .map(|c| c.name)
        .collect();
    let text_columns: Vec<&str> = COLUMNS
        .iter()
        .filter(|c| c.kind == Kind::Text)
        .map(|c| c.name)
        .collect();
    for (object, record) in &rows {
        let row_type = text(record, "type").unwrap();
        assert_eq!(
            row_type, object.event_type,
            "a row in the partition of its type"
        );
        let element = elements
            .iter()
            .find(|e| event_of(e).1["type"] == row_type.as_str())
            .unwrap();
        let (class, event) = event_of(element);
        let raw: Json = serde_json::from_str(&text(record, "raw").unwrap())?;
        assert_eq!(&raw, element, "{row_type}: raw is the element as received");
        assert_eq!(text(record, "event_class").as_deref(), Some(class));
        assert_eq!(
            record["timestamp"],
            Cell::Millis(SAMPLE_MILLIS),
            "{row_type}"
        );
        assert_eq!(
            record["timestamp_unparsed"],
            Cell::Bool(false),
            "{row_type}"
        );
        assert_eq!(
            record["received_at"],
            Cell::Millis(received_at()),
            "{row_type}"
        );
        assert_eq!(text(record, "batch_id").as_deref(), Some("batch-1"));
        for name in &int_columns {
            assert_eq!(
                record[*name],
                expected_int(event.get(*name)),
                "{row_type}.{name}"
            );
        }
        for name in &text_columns {
            if let Some(Json::String(s)) = event.get(*name) {
                assert_eq!(
                    text(record, name).as_deref(),
                    Some(s.as_str()),
                    "{row_type}.{name}"
                );
            }
        }
        for name in ["rcpt_tags", "rcpt_meta"] {
            let stored = text(record, name)
                .map(|t| serde_json::from_str::<Json>(&t))
                .transpose()?;
            assert_eq!(stored.as_ref(), event.get(name), "{row_type}.{name}");
        }
    }
    let parquet = by_event_id(&rows, |r| text(r, "type"));
    let bounce = &parquet[&Some("bounce".to_owned())].1;
    assert_eq!(bounce["bounce_class"], Cell::Int(1));
    assert_eq!(bounce["error_code"], Cell::Int(554));
    assert_eq!(bounce["msg_size"], Cell::Int(1337));
    assert_eq!(bounce["num_retries"], Cell::Int(2));
    assert_eq!(bounce["customer_id"], Cell::Int(1));
    assert_eq!(bounce["subaccount_id"], Cell::Int(101));
    assert_eq!(
        text(bounce, "event_id").as_deref(),
        Some("92356927693813856")
    );
    let sms = &parquet[&Some("sms_status".to_owned())].1;
    assert_eq!(sms["event_id"], Cell::Null, "sms_status has no event_id");

    // CSV: the same events, on one line each, with Athena's timestamp text.
    let csv = csv_rows(&p.store)?;
    assert_eq!(csv.len(), 19);
    for (object, record) in &csv {
        let row_type = &record["type"];
        assert_eq!(row_type, &object.event_type);
        let (_, prow) = &parquet[&Some(row_type.clone())];
        assert_eq!(
            Some(record["event_id"].clone()).filter(|s| !s.is_empty()),
            text(prow, "event_id")
        );
        assert_eq!(record["timestamp"], "2016-02-02 19:50:00.000");
        assert_eq!(record["received_at"], "2024-05-06 12:00:00.000");
        assert_eq!(record["timestamp_unparsed"], "false");
        let element = elements
            .iter()
            .find(|e| &event_of(e).1["type"] == row_type)
            .unwrap();
        let raw: Json = serde_json::from_str(&record["raw"])?;
        assert_eq!(&raw, element, "{row_type}: CSV raw is the element");
        for name in &int_columns {
            let expected = match &prow[*name] {
                Cell::Int(i) => i.to_string(),
                _ => String::new(),
            };
            assert_eq!(record[*name], expected, "{row_type}.{name}");
        }
    }
    let bounce = &csv.iter().find(|(_, r)| r["type"] == "bounce").unwrap().1;
    assert_eq!(
        (
            &*bounce["bounce_class"],
            &*bounce["error_code"],
            &*bounce["msg_size"],
            &*bounce["num_retries"]
        ),
        ("1", "554", "1337", "2")
    );
    Ok(())
}

#[tokio::test]
async fn text_with_line_breaks_stays_on_one_csv_line_and_intact_in_parquet() -> TestResult {
    let p = Pipeline::new();
    let body = "[\n  {\"msys\": {\"message_event\": {\n    \"type\": \"bounce\", \"event_id\": \"9\",\n    \"timestamp\": \"1454442600\",\n    \"subject\": \"Hello\\r\\nworld, \\\"quoted\\\", comma\",\n    \"rcpt_meta\": {\"note\": \"a\\nb\"}\n  }}}\n]\n";
    p.run(body.as_bytes(), received_at()).await;
    let parquet = parquet_rows(&p.store)?;
    assert_eq!(parquet.len(), 1);
    assert_eq!(
        text(&parquet[0].1, "subject").as_deref(),
        Some("Hello\r\nworld, \"quoted\", comma")
    );
    let csv = csv_rows(&p.store)?;
    assert_eq!(csv.len(), 1);
    let record = &csv[0].1;
    assert_eq!(record["subject"], "Hello\\r\\nworld, \"quoted\", comma");
    let meta: Json = serde_json::from_str(&record["rcpt_meta"])?;
    assert_eq!(meta, serde_json::json!({"note": "a\nb"}));
    let raw: Json = serde_json::from_str(&record["raw"])?;
    let input: Json = serde_json::from_str(body)?;
    assert_eq!(raw, input[0]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 13. Idempotence

#[tokio::test]
async fn a_redelivered_batch_overwrites_the_same_objects() -> TestResult {
    let p = Pipeline::new();
    p.post(&fixture(BATCH), "batch-1", received_at()).await;
    p.fanout(&[], None).await;

    let first = p.receive_events();
    assert_eq!(first.len(), 19);
    let outcome = p.writer().handle(&first, received_at()).await;
    assert_eq!((outcome.rows, outcome.failed.len()), (19, 0));
    let keys_before = p.keys();
    assert_eq!(keys_before.len(), 38);

    // Not deleted: the same messages come back, same ids.
    let again = redeliver(&first);
    assert_eq!(ids(&again), ids(&first));
    assert!(again.iter().all(|m| m.receive_count == 2));
    let retried = p.writer().handle(&again, received_at()).await;
    assert_eq!(retried.objects, outcome.objects, "the same keys");
    assert_eq!(p.keys(), keys_before, "no new key");
    assert_eq!(
        p.store.puts().len(),
        76,
        "every object stored again, over itself"
    );
    assert_eq!(parquet_rows(&p.store)?.len(), 19);
    assert_eq!(csv_rows(&p.store)?.len(), 19);

    // Redelivered in a different order: still the same keys.
    let mut reversed = redeliver(&again);
    reversed.reverse();
    let reordered = p.writer().handle(&reversed, received_at()).await;
    let sorted = |mut keys: Vec<String>| {
        keys.sort();
        keys
    };
    assert_eq!(sorted(reordered.objects), sorted(outcome.objects));
    assert_eq!(p.keys(), keys_before);
    Ok(())
}

#[tokio::test]
async fn an_event_delivered_twice_in_one_call_is_written_once() -> TestResult {
    let p = Pipeline::new();
    // SparkPost retried the batch: it arrives twice, and both copies reach the writer together.
    p.post(&fixture(BATCH), "batch-1", received_at()).await;
    p.post(&fixture(BATCH), "batch-1", received_at() + 60_000)
        .await;
    let fanned = p.fanout(&[], None).await;
    assert_eq!((fanned.events, fanned.failed.len()), (38, 0));
    assert_eq!(p.events.sent().len(), 38);

    let written = p.write().await;
    assert_eq!(written.failed, Vec::<String>::new());
    assert_eq!(written.rows, 19);
    assert_eq!(written.duplicates, 19);
    assert_eq!(written.objects.len(), 38);
    assert_eq!(parquet_rows(&p.store)?.len(), 19);
    assert_eq!(csv_rows(&p.store)?.len(), 19);

    // The same body in two messages sent straight to the writer's queue: one row.
    let p = Pipeline::new();
    let body = Bytes::from_static(
        br#"[{"msys":{"message_event":{"type":"bounce","event_id":"7","timestamp":"1454442600"}}},{"msys":{"message_event":{"type":"sms_status","timestamp":"1454442600"}}}]"#,
    );
    let message = OutboundMessage {
        body,
        attributes: [("received_at".to_owned(), received_at().to_string())].into(),
    };
    p.events.send(vec![message.clone(), message]).await?;
    let written = p.write().await;
    assert_eq!(
        (written.rows, written.duplicates),
        (2, 2),
        "with or without an event_id"
    );
    let rows = parquet_rows(&p.store)?;
    assert_eq!(rows.len(), 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 15. Writer failures

#[tokio::test]
async fn a_store_failure_fails_the_messages_of_the_groups_it_hit_and_a_retry_writes_them()
-> TestResult {
    let p = Pipeline::new();
    p.post(&fixture(BATCH), "batch-1", received_at()).await;
    p.fanout(&[], None).await;

    // No Parquet object can be stored: every message fails, nothing panics, nothing is stored.
    p.store.fail_keys_containing("parquet/");
    let received = p.receive_events();
    assert_eq!(received.len(), 19);
    let outcome = p.writer().handle(&received, received_at()).await;
    let mut all_ids = ids(&received);
    all_ids.sort();
    let mut failed = outcome.failed.clone();
    failed.sort();
    assert_eq!(failed, all_ids);
    assert_eq!((outcome.rows, outcome.objects.len()), (0, 0));
    assert_eq!(p.store.puts(), Vec::new());

    // Only the bounce partition fails: only the bounce message fails.
    p.store.heal();
    p.store.fail_keys_containing("parquet/event_type=bounce/");
    let received = retry(&received, &outcome.failed);
    assert_eq!(received.len(), 19, "the failed messages are redelivered");
    let bounce_id = received
        .iter()
        .find(|m| m.attribute("event_type") == Some("bounce"))
        .unwrap()
        .id
        .clone();
    let outcome = p.writer().handle(&received, received_at()).await;
    assert_eq!(outcome.failed, vec![bounce_id.clone()]);
    assert_eq!(outcome.rows, 18);
    assert_eq!(outcome.objects.len(), 36);

    // Healed: the retry writes the rest.
    p.store.heal();
    let received = retry(&received, &outcome.failed);
    assert_eq!(ids(&received), [bounce_id]);
    let outcome = p.writer().handle(&received, received_at()).await;
    assert_eq!((outcome.rows, outcome.failed.len()), (1, 0));
    assert_eq!(
        retry(&received, &outcome.failed),
        [],
        "nothing left to redeliver"
    );

    let rows = parquet_rows(&p.store)?;
    assert_eq!(rows.len(), 19);
    assert_eq!(csv_rows(&p.store)?.len(), 19);
    assert_eq!(objects(&p.store).len(), 38);
    Ok(())
}

#[tokio::test]
async fn the_writer_fails_an_unreadable_message_and_writes_its_neighbours() -> TestResult {
    let p = Pipeline::new();
    let good = Bytes::from_static(
        br#"[{"msys":{"message_event":{"type":"delivery","event_id":"1","timestamp":"1454442600"}}}]"#,
    );
    p.events
        .send(vec![
            OutboundMessage {
                body: Bytes::from_static(b"{\"not\": \"a batch\"}"),
                attributes: Default::default(),
            },
            OutboundMessage {
                body: good,
                attributes: Default::default(),
            },
        ])
        .await?;
    let received = p.receive_events();
    let outcome = p.writer().handle(&received, received_at()).await;
    assert_eq!(outcome.failed, vec![received[0].id.clone()]);
    assert_eq!(outcome.rows, 1);
    let rows = parquet_rows(&p.store)?;
    assert_eq!(rows.len(), 1);
    // No receive time on the message: the writer's `now` stands in.
    assert_eq!(rows[0].1["received_at"], Cell::Millis(received_at()));
    Ok(())
}
