//! CSV and Parquet encoders over [`crate::schema::COLUMNS`].

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::envelope::compact;
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

impl Default for ParquetEncoder {
    fn default() -> Self {
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_created_by(concat!("sparklake ", env!("CARGO_PKG_VERSION")).into())
            .build();
        Self { properties }
    }
}

impl ParquetEncoder {
    pub fn encode(&self, rows: &[Row<'_>]) -> Result<Vec<u8>, EncodeError> {
        let batch = to_record_batch(rows)?;
        let mut out = Vec::with_capacity(rows.len() * 256 + 4096);
        let mut writer = ArrowWriter::try_new(&mut out, schema(), Some(self.properties.clone()))?;
        writer.write(&batch)?;
        writer.close()?;
        Ok(out)
    }
}

/// Encodes rows as CSV: a header row, the same columns in the same order, RFC 4180 quoting, and
/// no raw line break inside a field (Athena's OpenCSVSerde cannot read them): in text, CR and LF
/// become the two characters `\r` and `\n`; JSON columns are written compact, which needs no
/// escaping since JSON strings cannot hold a raw line break.
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
        Value::Text(Some(t)) if kind == Kind::Json => compact(t),
        Value::Text(Some(t)) => escape_line_breaks(t),
        Value::Int(Some(i)) => Cow::Owned(i.to_string()),
        Value::Float(Some(f)) => Cow::Owned(f.to_string()),
        Value::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Value::Millis(Some(m)) => Cow::Owned(format_millis(m)),
    }
}

fn escape_line_breaks(text: &str) -> Cow<'_, str> {
    if !text.contains(['\n', '\r']) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.replace('\r', "\\r").replace('\n', "\\n"))
}
