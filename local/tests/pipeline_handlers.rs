//! Ingest → fanout → writer through their public handlers, over the real local adapters: SQLite
//! queues in a temporary directory, a folder object store and a folder archive. What the writer
//! stores is read back with the `parquet` and `csv` crates.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use bytes::Bytes;
use common::*;
use http::StatusCode;
use ingest::IngestConfig;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Type as PhysicalType;
use parquet::file::metadata::ParquetMetaData;
use serde_json::Value as Json;
use sparklake::queue::LocalQueue;
use sparklake::store::FsArchive;
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::envelope;
use sparklake_core::message::{InboundMessage, OutboundMessage};
use sparklake_core::ports::ArchiveAppend;
use sparklake_core::ports::Received;
use sparklake_core::schema::{COLUMNS, Kind};

const BATCH: &str = "sparkpost/batch.json";
/// 2016-02-02T19:50:00Z, the time of every event of the sample batch.
const SAMPLE_MILLIS: i64 = 1_454_442_600_000;

// ---------------------------------------------------------------------------------------------
// The pipeline

/// Two queues (ingest's output, fanout's output), a store, and the three handlers between them.
struct Pipeline {
    h: Harness,
    incoming: LocalQueue,
    events: LocalQueue,
    config: IngestConfig,
    parquet: ParquetEncoder,
}

impl Pipeline {
    fn new() -> AnyResult<Self> {
        let h = Harness::new()?;
        let incoming = h.queue("ingest", immediate());
        let events = h.queue("events", immediate());
        Ok(Self {
            h,
            incoming,
            events,
            config: open_config(&[]),
            parquet: ParquetEncoder::default(),
        })
    }

    fn root(&self) -> &Path {
        self.h.store_root()
    }

    /// POSTs a body to ingest; it must be accepted.
    async fn post(&self, body: &[u8], batch_id: &str, received_at: i64) {
        let response = self
            .h
            .ingest(
                &self.config,
                &self.incoming,
                post(
                    &[("x-messagesystems-batch-id", batch_id)],
                    Bytes::copy_from_slice(body),
                ),
                received_at,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    }

    /// Runs fanout over every message of the ingest queue, deleting those it did.
    async fn fanout(
        &self,
        routes: &[fanout::Route<'_>],
        archive: Option<&dyn ArchiveAppend>,
    ) -> AnyResult<fanout::Outcome> {
        let received = receive_all(&self.incoming).await?;
        let outcome = fanout::Fanout {
            events: &self.events,
            routes,
            archive,
        }
        .handle(&messages(&received))
        .await;
        delete_done(&self.incoming, &received, &outcome.failed).await?;
        Ok(outcome)
    }

    /// Runs the writer over every message of the events queue, deleting those it did.
    async fn write(&self) -> AnyResult<writer::Outcome> {
        let received = receive_all(&self.events).await?;
        let outcome = self
            .writer()
            .handle(&messages(&received), received_at())
            .await;
        delete_done(&self.events, &received, &outcome.failed).await?;
        Ok(outcome)
    }

    fn writer(&self) -> writer::Writer<'_> {
        writer::Writer {
            store: &self.h.store,
            parquet: &self.parquet,
            timestamps: Default::default(),
            catalog: None,
        }
    }

    /// One body all the way through; every stage must succeed.
    async fn run(&self, body: &[u8], received_at: i64) -> AnyResult<writer::Outcome> {
        self.post(body, "batch-1", received_at).await;
        let fanned = self.fanout(&[], None).await?;
        assert_eq!(fanned.failed, Vec::<String>::new());
        let written = self.write().await?;
        assert_eq!(written.failed, Vec::<String>::new());
        assert_eq!(self.incoming.counts().await?, Default::default());
        assert_eq!(self.events.counts().await?, Default::default());
        Ok(written)
    }
}

fn messages(received: &[Received]) -> Vec<InboundMessage> {
    received.iter().map(|r| r.message.clone()).collect()
}

async fn delete_done(queue: &LocalQueue, received: &[Received], failed: &[String]) -> TestResult {
    let receipts: Vec<String> = received
        .iter()
        .filter(|r| !failed.contains(&r.message.id))
        .map(|r| r.receipt.clone())
        .collect();
    queue.delete(&receipts).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading back what was written

/// One cell read back from Parquet.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Millis(i64),
}

type Record = BTreeMap<String, Cell>;

/// A written object: its format, partition and file.
#[derive(Debug, Clone)]
struct Object {
    key: String,
    format: String,
    event_type: String,
    dt: String,
    name: String,
}

/// Every object under `parquet/` and `csv/`, its key checked against
/// `<format>/event_type=<type>/dt=<YYYY-MM-DD>/<32 hex>.<format>`.
fn objects(root: &Path) -> Vec<Object> {
    files(root)
        .into_iter()
        .filter(|k| k.starts_with("parquet/") || k.starts_with("csv/"))
        .map(|key| {
            let parts: Vec<&str> = key.split('/').collect();
            assert_eq!(parts.len(), 4, "{key}");
            let format = parts[0].to_owned();
            let event_type = parts[1].strip_prefix("event_type=").expect(&key).to_owned();
            let dt = parts[2].strip_prefix("dt=").expect(&key).to_owned();
            assert!(
                chrono::NaiveDate::parse_from_str(&dt, "%Y-%m-%d").is_ok(),
                "{key}"
            );
            let name = parts[3]
                .strip_suffix(&format!(".{format}"))
                .expect(&key)
                .to_owned();
            assert!(
                name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()),
                "{key}: a leftover or badly named file"
            );
            Object {
                key: key.clone(),
                format,
                event_type,
                dt,
                name,
            }
        })
        .collect()
}

struct ParquetFile {
    schema: SchemaRef,
    metadata: Arc<ParquetMetaData>,
    records: Vec<Record>,
}

fn read_parquet(path: &Path) -> AnyResult<ParquetFile> {
    let bytes = Bytes::from(std::fs::read(path)?);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
    // Timestamps as the lake's values (INT96 is read as nanoseconds by default).
    let schema = sparklake_core::encode::timestamps_as_millis(builder.schema());
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        bytes,
        parquet::arrow::arrow_reader::ArrowReaderOptions::new().with_schema(schema.clone()),
    )?;
    let metadata = builder.metadata().clone();
    let mut records = Vec::new();
    for batch in builder.build()? {
        let batch = batch?;
        for row in 0..batch.num_rows() {
            let mut record = Record::new();
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                let cell = if column.is_null(row) {
                    Cell::Null
                } else {
                    match field.data_type() {
                        DataType::Utf8 => {
                            Cell::Text(column.as_string::<i32>().value(row).to_owned())
                        }
                        DataType::Int64 => Cell::Int(column.as_primitive::<Int64Type>().value(row)),
                        DataType::Float64 => {
                            Cell::Float(column.as_primitive::<Float64Type>().value(row))
                        }
                        DataType::Boolean => Cell::Bool(column.as_boolean().value(row)),
                        DataType::Timestamp(TimeUnit::Millisecond, _) => Cell::Millis(
                            column.as_primitive::<TimestampMillisecondType>().value(row),
                        ),
                        other => panic!("unexpected column type {other}"),
                    }
                };
                record.insert(field.name().clone(), cell);
            }
            records.push(record);
        }
    }
    Ok(ParquetFile {
        schema,
        metadata,
        records,
    })
}

struct CsvFile {
    header: Vec<String>,
    records: Vec<BTreeMap<String, String>>,
    /// Every field of every row, in order, to check for line breaks.
    fields: Vec<String>,
    text: String,
}

fn read_csv(path: &Path) -> AnyResult<CsvFile> {
    let text = String::from_utf8(std::fs::read(path)?)?;
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let mut records = Vec::new();
    let mut fields = header.clone();
    for row in reader.records() {
        let row = row?;
        assert_eq!(row.len(), header.len(), "{}: ragged row", path.display());
        fields.extend(row.iter().map(str::to_owned));
        records.push(
            header
                .iter()
                .cloned()
                .zip(row.iter().map(str::to_owned))
                .collect(),
        );
    }
    Ok(CsvFile {
        header,
        records,
        fields,
        text,
    })
}

/// Every row of every Parquet object, with the object it is in.
fn parquet_rows(root: &Path) -> AnyResult<Vec<(Object, Record)>> {
    let mut out = Vec::new();
    for object in objects(root).into_iter().filter(|o| o.format == "parquet") {
        for record in read_parquet(&root.join(&object.key))?.records {
            out.push((object.clone(), record));
        }
    }
    Ok(out)
}

/// Every row of every CSV object, with the object it is in; checks that no field holds a raw
/// line break, so each row is one line.
fn csv_rows(root: &Path) -> AnyResult<Vec<(Object, BTreeMap<String, String>)>> {
    let mut out = Vec::new();
    for object in objects(root).into_iter().filter(|o| o.format == "csv") {
        let file = read_csv(&root.join(&object.key))?;
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(file.header, names, "{}", object.key);
        for field in &file.fields {
            assert!(
                !field.contains(['\n', '\r']),
                "{}: line break in {field:?}",
                object.key
            );
        }
        let lines: Vec<&str> = file.text.split_terminator("\r\n").collect();
        assert_eq!(
            lines.len(),
            file.records.len() + 1,
            "{}: one line per row",
            object.key
        );
        for record in file.records {
            out.push((object.clone(), record));
        }
    }
    Ok(out)
}

fn text(record: &Record, column: &str) -> Option<String> {
    match &record[column] {
        Cell::Text(t) => Some(t.clone()),
        Cell::Null => None,
        other => panic!("{column} is not text: {other:?}"),
    }
}

/// What an integer field of an input event should read as: a number, or a string of one.
fn expected_int(value: Option<&Json>) -> Cell {
    match value {
        Some(Json::Number(n)) => n.as_i64().map_or(Cell::Null, Cell::Int),
        Some(Json::String(s)) => s.trim().parse().map_or(Cell::Null, Cell::Int),
        _ => Cell::Null,
    }
}

/// Parquet and CSV rows keyed by event id (`None` for an event without one).
fn by_event_id<R: Clone>(
    rows: &[(Object, R)],
    id: impl Fn(&R) -> Option<String>,
) -> BTreeMap<Option<String>, (Object, R)> {
    let mut out = BTreeMap::new();
    for (object, record) in rows {
        let key = id(record);
        assert!(
            out.insert(key.clone(), (object.clone(), record.clone()))
                .is_none(),
            "event {key:?} written twice"
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 9. The sample batch, end to end, in both formats

#[tokio::test]
async fn every_sample_event_lands_once_in_its_partition_in_both_formats() -> TestResult {
    let p = Pipeline::new()?;
    let written = p.run(&fixture(BATCH), received_at()).await?;
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
    let objects = objects(p.root());
    let mut written_keys: Vec<String> = written.objects.clone();
    written_keys.sort();
    let mut listed: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
    listed.sort();
    assert_eq!(
        written_keys, listed,
        "the outcome names exactly the files on disk"
    );
    assert_eq!(p.h.store_files().len(), 38, "nothing else was stored");
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
    let file = read_parquet(&p.root().join(&any_parquet.key))?;
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

    let rows = parquet_rows(p.root())?;
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
    let csv = csv_rows(p.root())?;
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
    let p = Pipeline::new()?;
    let body = "[\n  {\"msys\": {\"message_event\": {\n    \"type\": \"bounce\", \"event_id\": \"9\",\n    \"timestamp\": \"1454442600\",\n    \"subject\": \"Hello\\r\\nworld, \\\"quoted\\\", comma\",\n    \"rcpt_meta\": {\"note\": \"a\\nb\"}\n  }}}\n]\n";
    p.run(body.as_bytes(), received_at()).await?;
    let parquet = parquet_rows(p.root())?;
    assert_eq!(parquet.len(), 1);
    assert_eq!(
        text(&parquet[0].1, "subject").as_deref(),
        Some("Hello\r\nworld, \"quoted\", comma")
    );
    let csv = csv_rows(p.root())?;
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
// 10.–12. Drift

#[tokio::test]
async fn events_land_on_the_date_of_their_timestamp_or_else_the_receive_date() -> TestResult {
    let p = Pipeline::new()?;
    let written = p
        .run(&fixture("drift/timestamps.json"), received_at())
        .await?;
    assert_eq!(written.rows, 7);

    let rows = parquet_rows(p.root())?;
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

    let csv = csv_rows(p.root())?;
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
    let p = Pipeline::new()?;
    let written = p.run(&fixture("drift/unknown.json"), received_at()).await?;
    assert_eq!(written.rows, 3, "the ping is no row");

    let objects = objects(p.root());
    assert_eq!(objects.len(), 6);
    assert_eq!(p.h.store_files().len(), 6);
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
    let rows = parquet_rows(p.root())?;
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

    let csv = csv_rows(p.root())?;
    assert_eq!(csv.len(), 3);
    let amp = &csv.iter().find(|(_, r)| r["event_id"] == "3003").unwrap().1;
    let raw: Json = serde_json::from_str(&amp["raw"])?;
    assert_eq!(raw["cust"]["tenant"], "acme");
    Ok(())
}

#[tokio::test]
async fn numbers_read_back_typed_whether_sent_as_strings_or_numbers() -> TestResult {
    let p = Pipeline::new()?;
    let written = p.run(&fixture("drift/numbers.json"), received_at()).await?;
    assert_eq!(written.rows, 6);
    let rows = parquet_rows(p.root())?;
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

    let csv = csv_rows(p.root())?;
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

// ---------------------------------------------------------------------------------------------
// 13. Idempotence

#[tokio::test]
async fn a_redelivered_batch_overwrites_the_same_objects() -> TestResult {
    let p = Pipeline::new()?;
    p.post(&fixture(BATCH), "batch-1", received_at()).await;
    p.fanout(&[], None).await?;

    let first = receive_all(&p.events).await?;
    assert_eq!(first.len(), 19);
    let outcome = p.writer().handle(&messages(&first), received_at()).await;
    assert_eq!((outcome.rows, outcome.failed.len()), (19, 0));
    let files_before = p.h.store_files();
    assert_eq!(files_before.len(), 38);

    // Not deleted: with a zero visibility timeout the same messages come back, same ids.
    let again = receive_all(&p.events).await?;
    let ids = |r: &[Received]| r.iter().map(|r| r.message.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first));
    assert!(again.iter().all(|r| r.message.receive_count == 2));
    let retried = p.writer().handle(&messages(&again), received_at()).await;
    assert_eq!(retried.objects, outcome.objects, "the same keys");
    assert_eq!(p.h.store_files(), files_before, "no new file");
    assert_eq!(parquet_rows(p.root())?.len(), 19);
    assert_eq!(csv_rows(p.root())?.len(), 19);

    // Redelivered in a different order: still the same keys.
    let mut reversed = messages(&again);
    reversed.reverse();
    let reordered = p.writer().handle(&reversed, received_at()).await;
    let sorted = |mut keys: Vec<String>| {
        keys.sort();
        keys
    };
    assert_eq!(sorted(reordered.objects), sorted(outcome.objects));
    assert_eq!(p.h.store_files(), files_before);
    Ok(())
}

#[tokio::test]
async fn an_event_delivered_twice_in_one_call_is_written_once() -> TestResult {
    let p = Pipeline::new()?;
    // SparkPost retried the batch: it arrives twice, and both copies reach the writer together.
    p.post(&fixture(BATCH), "batch-1", received_at()).await;
    p.post(&fixture(BATCH), "batch-1", received_at() + 60_000)
        .await;
    let fanned = p.fanout(&[], None).await?;
    assert_eq!((fanned.events, fanned.failed.len()), (38, 0));
    assert_eq!(p.events.counts().await?.visible, 38);

    let written = p.write().await?;
    assert_eq!(written.failed, Vec::<String>::new());
    assert_eq!(written.rows, 19);
    assert_eq!(written.duplicates, 19);
    assert_eq!(written.objects.len(), 38);
    assert_eq!(parquet_rows(p.root())?.len(), 19);
    assert_eq!(csv_rows(p.root())?.len(), 19);

    // The same body in two messages sent straight to the writer's queue: one row.
    let p = Pipeline::new()?;
    let body = Bytes::from_static(
        br#"[{"msys":{"message_event":{"type":"bounce","event_id":"7","timestamp":"1454442600"}}},{"msys":{"message_event":{"type":"sms_status","timestamp":"1454442600"}}}]"#,
    );
    let message = OutboundMessage {
        body,
        attributes: [("received_at".to_owned(), received_at().to_string())].into(),
    };
    p.events
        .send_messages(vec![message.clone(), message])
        .await?;
    let written = p.write().await?;
    assert_eq!(
        (written.rows, written.duplicates),
        (2, 2),
        "with or without an event_id"
    );
    let rows = parquet_rows(p.root())?;
    assert_eq!(rows.len(), 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 14. Fanout

#[tokio::test]
async fn fanout_splits_by_type_routes_archives_and_fails_per_message() -> TestResult {
    let p = Pipeline::new()?;
    let suppression = p.h.queue("suppression", immediate());
    let archive = FsArchive::new(p.h.dir.path().join("archive-root"));
    let routed: BTreeSet<String> = [
        "bounce",
        "list_unsubscribe",
        "link_unsubscribe",
        "spam_complaint",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let routes = [fanout::Route {
        name: "suppression".into(),
        event_types: routed.clone(),
        queue: &suppression,
    }];

    // A message that is not a batch, the sample batch, another broken one, then a ping.
    let attributes = || [("received_at".to_owned(), "1".to_owned())].into();
    p.incoming
        .send_messages(vec![OutboundMessage {
            body: Bytes::from_static(b"this is not a batch"),
            attributes: attributes(),
        }])
        .await?;
    p.post(&fixture(BATCH), "batch-9", received_at()).await;
    p.incoming
        .send_messages(vec![
            OutboundMessage {
                body: Bytes::from_static(br#"[{"msys":{"a":{"type":"x"},"b":{"type":"y"}}}]"#),
                attributes: attributes(),
            },
            OutboundMessage {
                body: Bytes::from_static(br#"[{"msys":{}}]"#),
                attributes: attributes(),
            },
        ])
        .await?;

    let received = receive_all(&p.incoming).await?;
    assert_eq!(received.len(), 4);
    let outcome = fanout::Fanout {
        events: &p.events,
        routes: &routes,
        archive: Some(&archive),
    }
    .handle(&messages(&received))
    .await;
    assert_eq!(outcome.events, 19);
    assert_eq!(
        outcome.failed,
        vec![
            received[0].message.id.clone(),
            received[2].message.id.clone()
        ],
        "exactly the two broken messages fail"
    );

    // The writer's queue: one message per type, each holding only that type, with the context.
    let elements = fixture_elements(BATCH);
    let batch_text = fixture(BATCH);
    let sample = envelope::validate(&batch_text)?;
    let out = receive_all(&p.events).await?;
    assert_eq!(out.len(), 19);
    let mut seen = Vec::new();
    for r in &out {
        let m = &r.message;
        let event_type = m.attribute("event_type").unwrap();
        let batch = envelope::validate(&m.body)?;
        assert!(!batch.elements.is_empty());
        for element in &batch.elements {
            assert_eq!(element.head.as_ref().unwrap().event_type, event_type);
            let original = sample
                .elements
                .iter()
                .find(|e| e.head == element.head)
                .unwrap();
            assert_eq!(element.raw, original.raw, "events travel byte for byte");
            seen.push(event_type.to_owned());
        }
        assert_eq!(m.attribute("batch_id"), Some("batch-9"));
        assert_eq!(m.received_at_millis(), Some(received_at()));
    }
    seen.sort();
    let mut all_types: Vec<String> = elements
        .iter()
        .map(|e| event_of(e).1["type"].as_str().unwrap().to_owned())
        .collect();
    all_types.sort();
    assert_eq!(seen, all_types, "every event exactly once");

    // The route: exactly the routed types.
    let routed_out = receive_all(&suppression).await?;
    let mut routed_seen = Vec::new();
    for r in &routed_out {
        for element in envelope::validate(&r.message.body)?.elements {
            routed_seen.push(element.head.unwrap().event_type.into_owned());
        }
        assert_eq!(r.message.attribute("batch_id"), Some("batch-9"));
    }
    routed_seen.sort();
    assert_eq!(routed_seen, routed.iter().cloned().collect::<Vec<_>>());

    // The archive: one NDJSON line per event, each the element, compact.
    let archived = files(archive.root());
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert!(archived[0].starts_with("archive/dt=") && archived[0].ends_with(".ndjson"));
    let content = std::fs::read_to_string(archive.root().join(&archived[0]))?;
    assert!(content.ends_with('\n'));
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines.len(), 19);
    for (line, element) in lines.iter().zip(&elements) {
        let value: Json = serde_json::from_str(line)?;
        assert_eq!(&value, element);
        assert!(!line.contains('\r'));
    }

    // The failed messages are still there to be retried (and dead-lettered in the end).
    delete_done(&p.incoming, &received, &outcome.failed).await?;
    let left = receive_all(&p.incoming).await?;
    assert_eq!(
        left.iter()
            .map(|r| r.message.id.clone())
            .collect::<Vec<_>>(),
        outcome.failed
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 15. Writer failures

#[tokio::test]
async fn a_store_failure_fails_the_messages_of_the_groups_it_hit_and_a_retry_writes_them()
-> TestResult {
    let p = Pipeline::new()?;
    p.post(&fixture(BATCH), "batch-1", received_at()).await;
    p.fanout(&[], None).await?;
    let parquet_dir = p.root().join("parquet");

    // Nothing can be written: every message fails, nothing panics.
    std::fs::create_dir_all(p.root())?;
    std::fs::write(&parquet_dir, b"in the way")?;
    let received = receive_all(&p.events).await?;
    assert_eq!(received.len(), 19);
    let outcome = p.writer().handle(&messages(&received), received_at()).await;
    let mut all_ids: Vec<String> = received.iter().map(|r| r.message.id.clone()).collect();
    all_ids.sort();
    let mut failed = outcome.failed.clone();
    failed.sort();
    assert_eq!(failed, all_ids);
    assert_eq!((outcome.rows, outcome.objects.len()), (0, 0));
    assert_eq!(p.h.store_files(), ["parquet"]);
    delete_done(&p.events, &received, &outcome.failed).await?;

    // Only the bounce partition is blocked: only the bounce message fails.
    std::fs::remove_file(&parquet_dir)?;
    std::fs::create_dir_all(&parquet_dir)?;
    std::fs::write(parquet_dir.join("event_type=bounce"), b"in the way")?;
    let received = receive_all(&p.events).await?;
    assert_eq!(received.len(), 19, "the failed messages are redelivered");
    let bounce_id = received
        .iter()
        .find(|r| r.message.attribute("event_type") == Some("bounce"))
        .unwrap()
        .message
        .id
        .clone();
    let outcome = p.writer().handle(&messages(&received), received_at()).await;
    assert_eq!(outcome.failed, vec![bounce_id.clone()]);
    assert_eq!(outcome.rows, 18);
    assert_eq!(outcome.objects.len(), 36);
    delete_done(&p.events, &received, &outcome.failed).await?;

    // Unblocked: the retry writes the rest.
    std::fs::remove_file(parquet_dir.join("event_type=bounce"))?;
    let received = receive_all(&p.events).await?;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].message.id, bounce_id);
    let outcome = p.writer().handle(&messages(&received), received_at()).await;
    assert_eq!((outcome.rows, outcome.failed.len()), (1, 0));
    delete_done(&p.events, &received, &outcome.failed).await?;
    assert_eq!(p.events.counts().await?, Default::default());

    let rows = parquet_rows(p.root())?;
    assert_eq!(rows.len(), 19);
    assert_eq!(csv_rows(p.root())?.len(), 19);
    assert_eq!(objects(p.root()).len(), 38);
    Ok(())
}

#[tokio::test]
async fn the_writer_fails_an_unreadable_message_and_writes_its_neighbours() -> TestResult {
    let p = Pipeline::new()?;
    let good = Bytes::from_static(
        br#"[{"msys":{"message_event":{"type":"delivery","event_id":"1","timestamp":"1454442600"}}}]"#,
    );
    p.events
        .send_messages(vec![
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
    let received = receive_all(&p.events).await?;
    let outcome = p.writer().handle(&messages(&received), received_at()).await;
    assert_eq!(outcome.failed, vec![received[0].message.id.clone()]);
    assert_eq!(outcome.rows, 1);
    let rows = parquet_rows(p.root())?;
    assert_eq!(rows.len(), 1);
    // No receive time on the message: the writer's `now` stands in.
    assert_eq!(rows[0].1["received_at"], Cell::Millis(received_at()));
    Ok(())
}
