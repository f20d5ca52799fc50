//! The rows of a stored object, read streaming: a Parquet object a batch of rows at a time, a CSV
//! object a record at a time. A row is what the writer needs to write it again (its raw event,
//! batch id, receive time and timestamp flag), its timestamp (the merge order) and its identity.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use sparklake_core::encode::timestamps_as_millis;
use sparklake_core::event::Identity;

/// Rows decoded at once from a Parquet object: the memory one open input holds.
pub const PARQUET_BATCH_ROWS: usize = 512;

/// One stored row, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// The `timestamp` column: the merge order (rows without one first, as the writer sorts).
    pub timestamp: Option<i64>,
    /// The identity's digest ([`Identity::digest`]).
    pub identity: u128,
    /// The event as received (the `raw` column).
    pub raw: String,
    pub batch_id: Option<String>,
    pub received_at: i64,
    pub timestamp_implausible: bool,
}

impl StoredRow {
    /// What the merge orders by.
    pub fn order(&self) -> i64 {
        self.timestamp.unwrap_or(i64::MIN)
    }

    /// Roughly the memory the row holds.
    pub fn weight(&self) -> usize {
        self.raw.len() + self.batch_id.as_ref().map_or(0, String::len) + 96
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("decoding Parquet: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("reading CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("reading the object: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an object of the lake: {0}")]
    Shape(String),
}

/// The columns a row is rebuilt from; `timestamp_implausible` is absent in objects written
/// before 2026-12 (read as `false`).
const READ_COLUMNS: [&str; 7] = [
    "event_id",
    "type",
    "timestamp",
    "batch_id",
    "received_at",
    "raw",
    "timestamp_implausible",
];

/// A stored object's rows, in stored order.
pub type Rows = Box<dyn Iterator<Item = Result<StoredRow, ReadError>> + Send>;

/// The rows of a Parquet object, [`PARQUET_BATCH_ROWS`] decoded at a time.
pub fn parquet_rows(file: File) -> Result<Rows, ReadError> {
    let reader = parquet_reader(file, &READ_COLUMNS)?;
    let mut batches = reader.map(|b| b.map_err(ReadError::from));
    let mut current: std::vec::IntoIter<StoredRow> = Vec::new().into_iter();
    Ok(Box::new(std::iter::from_fn(move || {
        loop {
            if let Some(row) = current.next() {
                return Some(Ok(row));
            }
            match batches.next()? {
                Ok(batch) => match rows_of_batch(&batch) {
                    Ok(rows) => current = rows.into_iter(),
                    Err(e) => return Some(Err(e)),
                },
                Err(e) => return Some(Err(e)),
            }
        }
    })))
}

/// A reader of `columns` (those the file has) with every timestamp as UTC milliseconds.
fn parquet_reader(file: File, columns: &[&str]) -> Result<ParquetRecordBatchReader, ReadError> {
    let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())?;
    let hint = timestamps_as_millis(metadata.schema());
    let metadata = ArrowReaderMetadata::try_new(
        metadata.metadata().clone(),
        ArrowReaderOptions::new().with_schema(hint),
    )?;
    let descr = metadata.metadata().file_metadata().schema_descr_ptr();
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata);
    let mask = ProjectionMask::columns(&descr, columns.iter().copied());
    Ok(builder
        .with_projection(mask)
        .with_batch_size(PARQUET_BATCH_ROWS)
        .build()?)
}

fn text<'b>(batch: &'b RecordBatch, name: &str) -> Result<Option<&'b StringArray>, ReadError> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(c) => c
            .as_string_opt::<i32>()
            .map(Some)
            .ok_or_else(|| ReadError::Shape(format!("column {name} is not text"))),
    }
}

fn millis<'b>(
    batch: &'b RecordBatch,
    name: &str,
) -> Result<&'b arrow::array::PrimitiveArray<TimestampMillisecondType>, ReadError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| ReadError::Shape(format!("no column {name}")))?;
    if !matches!(
        column.data_type(),
        DataType::Timestamp(TimeUnit::Millisecond, _)
    ) {
        return Err(ReadError::Shape(format!(
            "column {name} is not a timestamp"
        )));
    }
    Ok(column.as_primitive::<TimestampMillisecondType>())
}

/// The value at `i`, if present.
fn present(array: &StringArray, i: usize) -> Option<&str> {
    array.is_valid(i).then(|| array.value(i))
}

fn rows_of_batch(batch: &RecordBatch) -> Result<Vec<StoredRow>, ReadError> {
    let missing = |name: &str| ReadError::Shape(format!("no column {name}"));
    let event_id = text(batch, "event_id")?.ok_or_else(|| missing("event_id"))?;
    let event_type = text(batch, "type")?.ok_or_else(|| missing("type"))?;
    let raw = text(batch, "raw")?.ok_or_else(|| missing("raw"))?;
    let batch_id = text(batch, "batch_id")?;
    let timestamp = millis(batch, "timestamp")?;
    let received_at = millis(batch, "received_at")?;
    let implausible: Option<&BooleanArray> = batch
        .column_by_name("timestamp_implausible")
        .and_then(|c| c.as_boolean_opt());
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let raw_text = present(raw, i).ok_or_else(|| missing("raw value"))?;
        let type_text = present(event_type, i).ok_or_else(|| missing("type value"))?;
        let identity = Identity::of_columns(type_text, present(event_id, i), raw_text).digest();
        rows.push(StoredRow {
            timestamp: timestamp.is_valid(i).then(|| timestamp.value(i)),
            identity,
            raw: raw_text.to_owned(),
            batch_id: batch_id.and_then(|b| present(b, i)).map(str::to_owned),
            received_at: if received_at.is_valid(i) {
                received_at.value(i)
            } else {
                return Err(missing("received_at value"));
            },
            timestamp_implausible: implausible.is_some_and(|b| b.is_valid(i) && b.value(i)),
        });
    }
    Ok(rows)
}

/// The identities of a Parquet object's rows, reading only the columns they are made of.
pub fn parquet_identities(file: File, into: &mut dyn FnMut(u128)) -> Result<u64, ReadError> {
    let reader = parquet_reader(file, &["event_id", "type", "raw"])?;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch?;
        let missing = |name: &str| ReadError::Shape(format!("no column {name}"));
        let event_id = text(&batch, "event_id")?.ok_or_else(|| missing("event_id"))?;
        let event_type = text(&batch, "type")?.ok_or_else(|| missing("type"))?;
        let raw = text(&batch, "raw")?.ok_or_else(|| missing("raw"))?;
        for i in 0..batch.num_rows() {
            let id = event_id.is_valid(i).then(|| event_id.value(i));
            into(Identity::of_columns(event_type.value(i), id, raw.value(i)).digest());
            rows += 1;
        }
    }
    Ok(rows)
}

/// Where the CSV columns a row is rebuilt from stand, from the header.
struct CsvColumns {
    event_id: usize,
    event_type: usize,
    timestamp: usize,
    batch_id: usize,
    received_at: usize,
    raw: usize,
    timestamp_implausible: Option<usize>,
}

impl CsvColumns {
    fn of(header: &csv::StringRecord) -> Result<Self, ReadError> {
        let at = |name: &str| header.iter().position(|h| h == name);
        let need =
            |name: &str| at(name).ok_or_else(|| ReadError::Shape(format!("no column {name}")));
        Ok(Self {
            event_id: need("event_id")?,
            event_type: need("type")?,
            timestamp: need("timestamp")?,
            batch_id: need("batch_id")?,
            received_at: need("received_at")?,
            raw: need("raw")?,
            timestamp_implausible: at("timestamp_implausible"),
        })
    }
}

/// The rows of a CSV object (a header row, then one record a row), one record at a time.
pub fn csv_rows(file: File) -> Result<Rows, ReadError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(BufReader::with_capacity(256 * 1024, file));
    let columns = Arc::new(CsvColumns::of(reader.headers()?)?);
    let mut record = csv::StringRecord::new();
    Ok(Box::new(std::iter::from_fn(move || {
        match reader.read_record(&mut record) {
            Ok(false) => None,
            Ok(true) => Some(csv_row(&columns, &record)),
            Err(e) => Some(Err(e.into())),
        }
    })))
}

fn csv_row(c: &CsvColumns, record: &csv::StringRecord) -> Result<StoredRow, ReadError> {
    let field = |i: usize| record.get(i).filter(|v| !v.is_empty());
    let bad = |what: &str| ReadError::Shape(format!("CSV record with a bad {what}"));
    let raw = field(c.raw).ok_or_else(|| bad("raw"))?;
    let event_type = record.get(c.event_type).ok_or_else(|| bad("type"))?;
    let timestamp = match field(c.timestamp) {
        None => None,
        Some(t) => Some(parse_csv_millis(t).ok_or_else(|| bad("timestamp"))?),
    };
    let received_at = field(c.received_at)
        .and_then(parse_csv_millis)
        .ok_or_else(|| bad("received_at"))?;
    Ok(StoredRow {
        timestamp,
        identity: Identity::of_columns(event_type, field(c.event_id), raw).digest(),
        raw: raw.to_owned(),
        batch_id: field(c.batch_id).map(str::to_owned),
        received_at,
        timestamp_implausible: c
            .timestamp_implausible
            .and_then(|i| record.get(i))
            .is_some_and(|v| v == "true"),
    })
}

/// The identities of a CSV object's rows.
pub fn csv_identities(file: File, into: &mut dyn FnMut(u128)) -> Result<u64, ReadError> {
    let mut n = 0;
    for row in csv_rows(file)? {
        into(row?.identity);
        n += 1;
    }
    Ok(n)
}

/// A CSV timestamp as the encoder writes it (`YYYY-MM-DD HH:MM:SS.mmm`, UTC).
pub fn parse_csv_millis(text: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}
