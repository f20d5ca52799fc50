//! CSV and Parquet encoders over [`crate::schema::COLUMNS`].

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::schema::{COLUMNS, Column, Kind, Row, Value, schema};
use crate::timestamp::format_millis;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("building the Arrow batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// Rows as one Arrow record batch with the pipeline's schema.
pub fn to_record_batch(rows: &[Row<'_>]) -> Result<RecordBatch, EncodeError> {
    let arrays: Vec<ArrayRef> = COLUMNS.iter().map(|c| column_array(c, rows)).collect();
    Ok(RecordBatch::try_new(schema(), arrays)?)
}

fn column_array(column: &Column, rows: &[Row<'_>]) -> ArrayRef {
    let values = rows.iter().map(|r| (column.read)(r));
    match column.kind {
        Kind::Text | Kind::Json => {
            let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
            for v in values {
                b.append_option(if let Value::Text(t) = v { t } else { None });
            }
            Arc::new(b.finish())
        }
        Kind::Int => {
            let mut b = Int64Builder::with_capacity(rows.len());
            for v in values {
                b.append_option(if let Value::Int(i) = v { i } else { None });
            }
            Arc::new(b.finish())
        }
        Kind::Float => {
            let mut b = Float64Builder::with_capacity(rows.len());
            for v in values {
                b.append_option(if let Value::Float(f) = v { f } else { None });
            }
            Arc::new(b.finish())
        }
        Kind::Bool => {
            let mut b = BooleanBuilder::with_capacity(rows.len());
            for v in values {
                b.append_value(matches!(v, Value::Bool(true)));
            }
            Arc::new(b.finish())
        }
        Kind::Timestamp => {
            let mut b = TimestampMillisecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
            for v in values {
                b.append_option(if let Value::Millis(m) = v { m } else { None });
            }
            Arc::new(b.finish())
        }
    }
}

/// Encodes rows as one zstd-compressed Parquet file; its properties are built once.
pub struct ParquetEncoder {
    properties: WriterProperties,
}

/// Columns with a value (nearly) unique per row: a dictionary only costs time (every value is
/// hashed, then the column falls back to plain encoding) and bytes.
const UNIQUE_COLUMNS: &[&str] = &[
    "event_id",
    "timestamp",
    "message_id",
    "rcpt_to",
    "raw_rcpt_to",
    "rcpt_meta",
    "ip_address",
    "geo_latitude",
    "geo_longitude",
    "raw",
];

/// Columns that carry most of a file's bytes, compressed with zstd; the rest (low-cardinality
/// or mostly-null columns, already small once dictionary- and RLE-encoded) are stored
/// uncompressed. A compressor context per column chunk was a fifth of the writer's time on
/// files of a few hundred rows (perf, BENCHMARKS.md); these columns hold ~95 % of the bytes.
const COMPRESSED_COLUMNS: &[&str] = &[
    "event_id",
    "timestamp",
    "message_id",
    "transmission_id",
    "rcpt_to",
    "raw_rcpt_to",
    "msg_from",
    "friendly_from",
    "subject",
    "reason",
    "raw_reason",
    "queue_time",
    "msg_size",
    "user_agent",
    "ip_address",
    "target_link_url",
    "rcpt_tags",
    "rcpt_meta",
    "raw",
];

/// zstd level of `raw`, the bulk of every file; the other compressed columns use level 1.
const RAW_ZSTD_LEVEL: i32 = 3;

impl Default for ParquetEncoder {
    fn default() -> Self {
        Self::with_zstd_level(RAW_ZSTD_LEVEL)
    }
}

impl ParquetEncoder {
    /// The encoder with another zstd level (1–22) for `raw`, for measurements.
    pub fn with_zstd_level(level: i32) -> Self {
        let raw_level = ZstdLevel::try_new(level).unwrap_or_default();
        // Statistics per column chunk only: page indexes (a column index and an offset index
        // per column) cost each of these small 47-column files kilobytes of footer and help
        // little when a file is one row group of one partition.
        let mut builder = WriterProperties::builder()
            .set_compression(Compression::UNCOMPRESSED)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(concat!("sparklake ", env!("CARGO_PKG_VERSION")).into());
        for name in COMPRESSED_COLUMNS {
            let level = if *name == "raw" {
                raw_level
            } else {
                ZstdLevel::default()
            };
            builder =
                builder.set_column_compression(ColumnPath::from(*name), Compression::ZSTD(level));
        }
        for name in UNIQUE_COLUMNS {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(*name), false);
        }
        // Min/max of whole JSON documents prune nothing.
        builder =
            builder.set_column_statistics_enabled(ColumnPath::from("raw"), EnabledStatistics::None);
        Self {
            properties: builder.build(),
        }
    }

    pub fn encode(&self, rows: &[Row<'_>]) -> Result<Vec<u8>, EncodeError> {
        let batch = to_record_batch(rows)?;
        let mut out = Vec::with_capacity(rows.len() * 256 + 4096);
        // Without the embedded Arrow schema (a base64 blob of all 47 fields in every footer):
        // the Parquet logical types already say everything readers need.
        let options = ArrowWriterOptions::new()
            .with_properties(self.properties.clone())
            .with_skip_arrow_metadata(true);
        let mut writer = ArrowWriter::try_new_with_options(&mut out, schema(), options)?;
        writer.write(&batch)?;
        writer.close()?;
        Ok(out)
    }
}

/// Encodes rows as CSV: a header row, the same columns in the same order, RFC 4180 quoting, and
/// no raw line break inside a field (Athena's OpenCSVSerde cannot read them): in text, CR and LF
/// become the two characters `\r` and `\n`; JSON columns are written on one line (see
/// [`one_line_json`]), which needs no escaping since JSON strings cannot hold a raw line break.
pub fn encode_csv(rows: &[Row<'_>]) -> Result<Vec<u8>, EncodeError> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(rows.len() * 512 + 1024));
    writer.write_record(COLUMNS.iter().map(|c| c.name))?;
    let mut record: Vec<Cow<'_, str>> = Vec::with_capacity(COLUMNS.len());
    for row in rows {
        record.clear();
        record.extend(COLUMNS.iter().map(|c| csv_field(c.kind, (c.read)(row))));
        writer.write_record(record.iter().map(|f| f.as_bytes()))?;
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()).into())
}

fn csv_field(kind: Kind, value: Value<'_>) -> Cow<'_, str> {
    match value {
        Value::Text(None) | Value::Int(None) | Value::Float(None) | Value::Millis(None) => {
            Cow::Borrowed("")
        }
        Value::Text(Some(t)) if kind == Kind::Json => one_line_json(t),
        Value::Text(Some(t)) => escape_line_breaks(t),
        Value::Int(Some(i)) => Cow::Owned(i.to_string()),
        Value::Float(Some(f)) => Cow::Owned(f.to_string()),
        Value::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Value::Millis(Some(m)) => Cow::Owned(format_millis(m)),
    }
}

/// JSON text on one line. In valid JSON a raw CR or LF can only be whitespace between tokens
/// (strings hold them escaped), so each becomes a space: the same JSON value, byte for byte
/// otherwise, and no copy at all for the usual compact text.
fn one_line_json(json: &str) -> Cow<'_, str> {
    if !json.as_bytes().iter().any(|&b| b == b'\n' || b == b'\r') {
        return Cow::Borrowed(json);
    }
    Cow::Owned(json.replace(['\r', '\n'], " "))
}

fn escape_line_breaks(text: &str) -> Cow<'_, str> {
    if !text.contains(['\n', '\r']) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.replace('\r', "\\r").replace('\n', "\\n"))
}
