//! The writer's handling of drift through ingest → fanout → writer over the in-memory ports:
//! timestamps missing or unreadable, classes and types the schema does not know, numbers sent as
//! strings; what it stores is read back with the `parquet` and `csv` crates.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
use support::*;

// ---------------------------------------------------------------------------------------------
// 10.–12. Drift

#[tokio::test]
async fn events_land_on_the_date_of_their_timestamp_or_else_the_receive_date() -> TestResult {
    let p = Pipeline::new();
    let written = p
        .run(&fixture("drift/timestamps.json"), received_at())
        .await;
    assert_eq!(written.rows, 7);

    let rows = parquet_rows(&p.store)?;
    assert_eq!(rows.len(), 7);
    let mut dates: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (object, record) in &rows {
        assert_eq!(object.event_type, "delivery");
        dates
            .entry(object.dt.clone())
            .or_default()
            .insert(text(record, "event_id").unwrap());
    }
    let set = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(
        dates,
        BTreeMap::from([
            ("2016-02-02".to_owned(), set(&["1001", "1002", "1005"])),
            ("2018-10-11".to_owned(), set(&["1003", "1004"])),
            ("2024-05-06".to_owned(), set(&["1006", "1007"])),
        ])
    );
    let rows = by_event_id(&rows, |r| text(r, "event_id"));
    let oct_11 = millis(2018, 10, 11, 23, 24, 45);
    for (id, expected) in [
        ("1001", Cell::Millis(SAMPLE_MILLIS)),
        ("1002", Cell::Millis(SAMPLE_MILLIS)),
        ("1003", Cell::Millis(oct_11)),
        ("1004", Cell::Millis(oct_11)),
        ("1005", Cell::Millis(SAMPLE_MILLIS + 500)),
        ("1006", Cell::Null),
        ("1007", Cell::Null),
    ] {
        let record = &rows[&Some(id.to_owned())].1;
        assert_eq!(record["timestamp"], expected, "{id}");
        assert_eq!(
            record["timestamp_unparsed"],
            Cell::Bool(expected == Cell::Null),
            "{id}"
        );
        assert_eq!(record["received_at"], Cell::Millis(received_at()), "{id}");
    }

    let csv = csv_rows(&p.store)?;
    let csv = by_event_id(&csv, |r| Some(r["event_id"].clone()));
    for (id, timestamp, unparsed, dt) in [
        ("1001", "2016-02-02 19:50:00.000", "false", "2016-02-02"),
        ("1004", "2018-10-11 23:24:45.000", "false", "2018-10-11"),
        ("1005", "2016-02-02 19:50:00.500", "false", "2016-02-02"),
        ("1006", "", "true", "2024-05-06"),
        ("1007", "", "true", "2024-05-06"),
    ] {
        let (object, record) = &csv[&Some(id.to_owned())];
        assert_eq!(record["timestamp"], timestamp, "{id}");
        assert_eq!(record["timestamp_unparsed"], unparsed, "{id}");
        assert_eq!(object.dt, dt, "{id}");
    }
    Ok(())
}

#[tokio::test]
async fn unknown_classes_and_types_are_kept_in_partitions_of_their_own() -> TestResult {
    let p = Pipeline::new();
    let written = p.run(&fixture("drift/unknown.json"), received_at()).await;
    assert_eq!(written.rows, 3, "the ping is no row");

    let objects = objects(&p.store);
    assert_eq!(objects.len(), 6);
    assert_eq!(p.store.objects().len(), 6);
    let partitions: BTreeSet<(String, String)> = objects
        .iter()
        .map(|o| (o.event_type.clone(), o.dt.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = ["amp_click", "hologram_view", "teleport"]
        .into_iter()
        .map(|t| (t.to_owned(), "2016-02-02".to_owned()))
        .collect();
    assert_eq!(partitions, expected);

    let elements = fixture_elements("drift/unknown.json");
    let rows = parquet_rows(&p.store)?;
    let rows = by_event_id(&rows, |r| text(r, "event_id"));
    assert_eq!(rows.len(), 3);
    for (id, class, event_type, element) in [
        ("3001", "hologram_event", "hologram_view", &elements[0]),
        ("3002", "message_event", "teleport", &elements[1]),
        ("3003", "track_event", "amp_click", &elements[3]),
    ] {
        let (object, record) = &rows[&Some(id.to_owned())];
        assert_eq!(object.event_type, event_type);
        assert_eq!(text(record, "type").as_deref(), Some(event_type));
        assert_eq!(text(record, "event_class").as_deref(), Some(class));
        assert_eq!(record["timestamp"], Cell::Millis(SAMPLE_MILLIS));
        let raw: Json = serde_json::from_str(&text(record, "raw").unwrap())?;
        assert_eq!(&raw, element, "{id}");
    }
    let amp = &rows[&Some("3003".to_owned())].1;
    let raw: Json = serde_json::from_str(&text(amp, "raw").unwrap())?;
    assert_eq!(
        raw["cust"],
        serde_json::json!({"tenant": "acme"}),
        "keys beside msys stay in raw"
    );
    let hologram = &rows[&Some("3001".to_owned())].1;
    let raw: Json = serde_json::from_str(&text(hologram, "raw").unwrap())?;
    assert_eq!(raw["msys"]["hologram_event"]["hologram_id"], "h-9");

    let csv = csv_rows(&p.store)?;
    assert_eq!(csv.len(), 3);
    let amp = &csv.iter().find(|(_, r)| r["event_id"] == "3003").unwrap().1;
    let raw: Json = serde_json::from_str(&amp["raw"])?;
    assert_eq!(raw["cust"]["tenant"], "acme");
    Ok(())
}

#[tokio::test]
async fn numbers_read_back_typed_whether_sent_as_strings_or_numbers() -> TestResult {
    let p = Pipeline::new();
    let written = p.run(&fixture("drift/numbers.json"), received_at()).await;
    assert_eq!(written.rows, 6);
    let rows = parquet_rows(&p.store)?;
    let rows = by_event_id(&rows, |r| text(r, "event_id"));
    assert_eq!(rows.len(), 6);

    let typed = [
        ("num_retries", 2),
        ("queue_time", 12),
        ("msg_size", 1337),
        ("bounce_class", 10),
        ("error_code", 554),
        ("customer_id", 1),
        ("subaccount_id", 101),
    ];
    for id in ["2001", "2002"] {
        let record = &rows[&Some(id.to_owned())].1;
        for (name, value) in typed {
            assert_eq!(record[name], Cell::Int(value), "{id}.{name}");
        }
    }
    let unreadable = &rows[&Some("2003".to_owned())].1;
    for name in [
        "num_retries",
        "queue_time",
        "msg_size",
        "error_code",
        "customer_id",
    ] {
        assert_eq!(unreadable[name], Cell::Null, "2003.{name}");
    }
    assert_eq!(
        unreadable["bounce_class"],
        Cell::Int(10),
        "10.0 is the integer 10"
    );
    let raw: Json = serde_json::from_str(&text(unreadable, "raw").unwrap())?;
    assert_eq!(
        raw["msys"]["message_event"]["error_code"], "5.7.1",
        "raw keeps what the column cannot"
    );

    let click = &rows[&Some("0b3f6e1c-8e4f-4b5d-9a27-3c1f2d4e5a6b".to_owned())];
    assert_eq!(click.0.event_type, "click");
    let click = &click.1;
    assert_eq!(click["geo_latitude"], Cell::Float(39.1749));
    assert_eq!(click["geo_longitude"], Cell::Float(-76.8375));
    assert_eq!(text(click, "geo_country").as_deref(), Some("US"));
    assert_eq!(text(click, "geo_region").as_deref(), Some("MD"));
    assert_eq!(text(click, "geo_city").as_deref(), Some("Columbia"));
    let open = &rows[&Some("2005".to_owned())].1;
    assert_eq!(open["geo_latitude"], Cell::Float(39.1749));
    assert_eq!(open["geo_longitude"], Cell::Float(-76.8375));
    assert_eq!(open["geo_city"], Cell::Null);
    let (sms_object, sms) = &rows[&None];
    assert_eq!(sms_object.event_type, "sms_status");
    assert_eq!(sms["timestamp"], Cell::Millis(SAMPLE_MILLIS));

    let csv = csv_rows(&p.store)?;
    let csv = by_event_id(&csv, |r| {
        Some(r["event_id"].clone()).filter(|s| !s.is_empty())
    });
    for id in ["2001", "2002"] {
        let record = &csv[&Some(id.to_owned())].1;
        for (name, value) in typed {
            assert_eq!(record[name], value.to_string(), "csv {id}.{name}");
        }
    }
    let unreadable = &csv[&Some("2003".to_owned())].1;
    assert_eq!(
        (
            &*unreadable["msg_size"],
            &*unreadable["error_code"],
            &*unreadable["bounce_class"]
        ),
        ("", "", "10")
    );
    let click = &csv[&Some("0b3f6e1c-8e4f-4b5d-9a27-3c1f2d4e5a6b".to_owned())].1;
    assert_eq!(click["geo_latitude"].parse::<f64>()?, 39.1749);
    assert_eq!(click["geo_longitude"].parse::<f64>()?, -76.8375);
    Ok(())
}
