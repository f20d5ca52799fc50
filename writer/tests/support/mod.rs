//! What the writer's handler tests share: fixtures, the pipeline ingest → fanout → writer over
//! the in-memory ports of `sparklake_core::memory` (two queues and a store), the queue's
//! deliveries, and readers of the objects stored (Parquet with the `parquet` crate, CSV with the
//! `csv` crate).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use bytes::Bytes;
use chrono::NaiveDate;
use http::{Request, StatusCode};
use ingest::{Ingest, IngestConfig};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use serde_json::Value as Json;
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::memory::{MemoryQueue, MemoryStore};
use sparklake_core::message::{InboundMessage, OutboundMessage};
use sparklake_core::ports::ArchiveAppend;
use sparklake_core::schema::COLUMNS;

pub type TestResult = Result<(), Box<dyn Error>>;
pub type AnyResult<T> = Result<T, Box<dyn Error>>;

pub const BATCH: &str = "sparkpost/batch.json";
/// 2016-02-02T19:50:00Z, the time of every event of the sample batch.
pub const SAMPLE_MILLIS: i64 = 1_454_442_600_000;
/// The local queue's default message size limit.
const MAX_MESSAGE_BYTES: usize = 1_048_576;

// ---------------------------------------------------------------------------------------------
// Fixtures

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The elements of a fixture batch, parsed.
pub fn fixture_elements(name: &str) -> Vec<Json> {
    match serde_json::from_slice(&fixture(name)) {
        Ok(Json::Array(elements)) => elements,
        other => panic!("{name} is not a JSON array: {other:?}"),
    }
}

/// The `(class, event body)` of an element: `msys`'s one entry.
pub fn event_of(element: &Json) -> (&str, &Json) {
    let msys = element["msys"].as_object().expect("msys object");
    let (class, event) = msys.iter().next().expect("an event class");
    (class.as_str(), event)
}

/// Unix milliseconds of a UTC date and time.
pub fn millis(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|date| date.and_hms_opt(h, mi, s))
        .expect("a valid date")
        .and_utc()
        .timestamp_millis()
}

/// The receive time the tests stamp on requests: 2024-05-06T12:00:00Z.
pub fn received_at() -> i64 {
    millis(2024, 5, 6, 12, 0, 0)
}

// ---------------------------------------------------------------------------------------------
// Deliveries

/// Queue message ids, unique in the test binary.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// Messages sent to a queue as it delivers them the first time: each with an id of its own.
pub fn deliver(sent: Vec<OutboundMessage>) -> Vec<InboundMessage> {
    sent.into_iter()
        .map(|m| InboundMessage {
            id: format!("message-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            body: m.body,
            attributes: m.attributes,
            receive_count: 1,
        })
        .collect()
}

/// Messages delivered again, as a queue redelivers what was not deleted: the same ids, one
/// more receive.
pub fn redeliver(messages: &[InboundMessage]) -> Vec<InboundMessage> {
    messages
        .iter()
        .map(|m| InboundMessage {
            receive_count: m.receive_count + 1,
            ..m.clone()
        })
        .collect()
}

/// What the queue delivers after a handler was handed `handed`: the ones it `failed`, again
/// (the rest were done, so deleted).
pub fn retry(handed: &[InboundMessage], failed: &[String]) -> Vec<InboundMessage> {
    let left: Vec<InboundMessage> = handed
        .iter()
        .filter(|m| failed.contains(&m.id))
        .cloned()
        .collect();
    redeliver(&left)
}

pub fn ids(messages: &[InboundMessage]) -> Vec<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// The pipeline

/// Two queues (ingest's output, fanout's output), a store (the lake, and ingest's quarantine),
/// and the three handlers between them.
pub struct Pipeline {
    pub incoming: MemoryQueue,
    pub events: MemoryQueue,
    pub store: MemoryStore,
    config: IngestConfig,
    parquet: ParquetEncoder,
}

impl Pipeline {
    pub fn new() -> Self {
        let config = IngestConfig::from_lookup(|k| (k == "SPARKLAKE_AUTH").then(|| "none".into()))
            .expect("a valid open configuration");
        Self {
            incoming: MemoryQueue::new(MAX_MESSAGE_BYTES),
            events: MemoryQueue::new(MAX_MESSAGE_BYTES),
            store: MemoryStore::default(),
            config,
            parquet: ParquetEncoder::default(),
        }
    }

    /// POSTs a body to ingest; it must be accepted.
    pub async fn post(&self, body: &[u8], batch_id: &str, received_at: i64) {
        let request = Request::builder()
            .method("POST")
            .uri("/")
            .header("x-messagesystems-batch-id", batch_id)
            .body(Bytes::copy_from_slice(body))
            .expect("a valid request");
        let response = Ingest {
            config: &self.config,
            queue: &self.incoming,
            quarantine: &self.store,
        }
        .handle(request, received_at)
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    }

    /// Delivers every message ingest enqueued since the last call to fanout.
    pub async fn fanout(
        &self,
        routes: &[fanout::Route<'_>],
        archive: Option<&dyn ArchiveAppend>,
    ) -> fanout::Outcome {
        let messages = deliver(self.incoming.take());
        fanout::Fanout {
            events: &self.events,
            routes,
            archive,
        }
        .handle(&messages)
        .await
    }

    /// What fanout enqueued since the last call, as the writer's queue delivers it.
    pub fn receive_events(&self) -> Vec<InboundMessage> {
        deliver(self.events.take())
    }

    /// Delivers every message fanout enqueued since the last call to the writer.
    pub async fn write(&self) -> writer::Outcome {
        let messages = self.receive_events();
        self.writer().handle(&messages, received_at()).await
    }

    pub fn writer(&self) -> writer::Writer<'_> {
        writer::Writer {
            store: &self.store,
            parquet: &self.parquet,
            timestamps: Default::default(),
            catalog: None,
        }
    }

    /// One body all the way through; every stage must handle every message (none failed, none
    /// left to deliver).
    pub async fn run(&self, body: &[u8], received_at: i64) -> writer::Outcome {
        self.post(body, "batch-1", received_at).await;
        let fanned = self.fanout(&[], None).await;
        assert_eq!(fanned.failed, Vec::<String>::new());
        let written = self.write().await;
        assert_eq!(written.failed, Vec::<String>::new());
        assert!(self.incoming.sent().is_empty() && self.events.sent().is_empty());
        written
    }

    /// The keys stored, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.store.objects().into_keys().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading back what was written

/// One cell read back from Parquet.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Millis(i64),
}

pub type Record = BTreeMap<String, Cell>;

/// A stored object: its format, partition and name, and its body.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    pub format: String,
    pub event_type: String,
    pub dt: String,
    pub name: String,
    pub body: Bytes,
}

/// Every object under `parquet/` and `csv/`, by key, each key checked against
/// `<format>/event_type=<type>/dt=<YYYY-MM-DD>/<32 hex>.<format>`.
pub fn objects(store: &MemoryStore) -> Vec<Object> {
    store
        .objects()
        .into_values()
        .filter(|o| o.key.starts_with("parquet/") || o.key.starts_with("csv/"))
        .map(|o| {
            let key = o.key;
            let parts: Vec<&str> = key.split('/').collect();
            assert_eq!(parts.len(), 4, "{key}");
            let format = parts[0].to_owned();
            let event_type = parts[1].strip_prefix("event_type=").expect(&key).to_owned();
            let dt = parts[2].strip_prefix("dt=").expect(&key).to_owned();
            assert!(NaiveDate::parse_from_str(&dt, "%Y-%m-%d").is_ok(), "{key}");
            let name = parts[3]
                .strip_suffix(&format!(".{format}"))
                .expect(&key)
                .to_owned();
            assert!(
                name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()),
                "{key}: a badly named object"
            );
            let content_type = if format == "parquet" {
                "application/vnd.apache.parquet"
            } else {
                "text/csv; charset=utf-8"
            };
            assert_eq!(o.content_type, content_type, "{key}");
            Object {
                key: key.clone(),
                format,
                event_type,
                dt,
                name,
                body: o.body,
            }
        })
        .collect()
}

pub struct ParquetFile {
    pub schema: SchemaRef,
    pub metadata: Arc<ParquetMetaData>,
    pub records: Vec<Record>,
}

pub fn read_parquet(body: &Bytes) -> AnyResult<ParquetFile> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(body.clone())?;
    let metadata = builder.metadata().clone();
    // Timestamps as the lake's values (INT96 is read as nanoseconds by default).
    let schema = sparklake_core::encode::timestamps_as_millis(builder.schema());
    let mut records = Vec::new();
    for batch in sparklake_core::encode::read_parquet(body.clone())? {
        assert_eq!(batch.schema(), schema);
        for row in 0..batch.num_rows() {
            let mut record = Record::new();
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                record.insert(field.name().clone(), cell(field.data_type(), column, row));
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

fn cell(data_type: &DataType, column: &dyn Array, row: usize) -> Cell {
    if column.is_null(row) {
        return Cell::Null;
    }
    match data_type {
        DataType::Utf8 => Cell::Text(column.as_string::<i32>().value(row).to_owned()),
        DataType::Int64 => Cell::Int(column.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Cell::Float(column.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => Cell::Bool(column.as_boolean().value(row)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Cell::Millis(column.as_primitive::<TimestampMillisecondType>().value(row))
        }
        other => panic!("unexpected column type {other}"),
    }
}

pub struct CsvFile {
    pub header: Vec<String>,
    pub records: Vec<BTreeMap<String, String>>,
    /// Every field of every row, in order, to check for line breaks.
    pub fields: Vec<String>,
    pub text: String,
}

pub fn read_csv(key: &str, body: &Bytes) -> AnyResult<CsvFile> {
    let text = String::from_utf8(body.to_vec())?;
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let mut records = Vec::new();
    let mut fields = header.clone();
    for row in reader.records() {
        let row = row?;
        assert_eq!(row.len(), header.len(), "{key}: ragged row");
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
pub fn parquet_rows(store: &MemoryStore) -> AnyResult<Vec<(Object, Record)>> {
    let mut out = Vec::new();
    for object in objects(store).into_iter().filter(|o| o.format == "parquet") {
        for record in read_parquet(&object.body)?.records {
            out.push((object.clone(), record));
        }
    }
    Ok(out)
}

/// Every row of every CSV object, with the object it is in; checks that no field holds a raw
/// line break, so each row is one line.
pub fn csv_rows(store: &MemoryStore) -> AnyResult<Vec<(Object, BTreeMap<String, String>)>> {
    let mut out = Vec::new();
    for object in objects(store).into_iter().filter(|o| o.format == "csv") {
        let file = read_csv(&object.key, &object.body)?;
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

pub fn text(record: &Record, column: &str) -> Option<String> {
    match &record[column] {
        Cell::Text(t) => Some(t.clone()),
        Cell::Null => None,
        other => panic!("{column} is not text: {other:?}"),
    }
}

/// What an integer field of an input event should read as: a number, or a string of one.
pub fn expected_int(value: Option<&Json>) -> Cell {
    match value {
        Some(Json::Number(n)) => n.as_i64().map_or(Cell::Null, Cell::Int),
        Some(Json::String(s)) => s.trim().parse().map_or(Cell::Null, Cell::Int),
        _ => Cell::Null,
    }
}

/// Parquet and CSV rows keyed by event id (`None` for an event without one).
pub fn by_event_id<R: Clone>(
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
