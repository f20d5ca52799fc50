//! CSV and Parquet encoders over [`crate::schema::COLUMNS`].
//!
//! Parquet is written through the parquet crate's column writers directly, one column chunk at
//! a time from the rows, without an Arrow copy in between: that is also what lets a timestamp
//! column be INT96, which the Arrow writer cannot produce (README, "Engines": the one timestamp
//! form every engine reads without a setting of its own).

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::io::Write as _;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use bytes::Bytes;
use parquet::basic::{
    Compression, LogicalType, Repetition, TimeUnit as ParquetTimeUnit, Type as PhysicalType,
    ZstdLevel,
};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::{ByteArray, Int96};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, Type, TypePtr};

use crate::schema::{COLUMNS, Column, Encoding, Kind, Row, Value, present_columns, schema};
use crate::timestamp::write_millis;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("building the Arrow batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("writing CSV: {0}")]
    Csv(#[from] std::io::Error),
}

/// Rows as one Arrow record batch with the pipeline's schema (for readers of the rows in
/// memory; the Parquet encoder does not go through it).
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
        Kind::OptBool => {
            let mut b = BooleanBuilder::with_capacity(rows.len());
            for v in values {
                b.append_option(if let Value::OptBool(x) = v { x } else { None });
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

/// How the timestamp columns are stored in Parquet (`SPARKLAKE_PARQUET_TIMESTAMP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// INT96 (nanoseconds of the day and a Julian day), the form Hive, Impala and Spark have
    /// always written: every engine in the README's matrix reads it as a timestamp without a
    /// setting, Hive 2.x's Parquet SerDe, Redshift Spectrum and Snowflake's defaults included.
    /// Deprecated in the Parquet format; its values carry no zone (they are UTC).
    #[default]
    Int96,
    /// INT64 TIMESTAMP(MILLIS, adjusted to UTC), the Parquet format's own timestamp: read by
    /// Athena, Trino, Spark's native reader, DuckDB (as TIMESTAMP WITH TIME ZONE), pyarrow and
    /// polars, but not by Hive before 4.0 ("LongWritable cannot be cast to TimestampWritable").
    Millis,
}

impl TimestampType {
    pub fn name(self) -> &'static str {
        match self {
            Self::Int96 => "int96",
            Self::Millis => "millis",
        }
    }
}

impl FromStr for TimestampType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "int96" => Ok(Self::Int96),
            "millis" | "int64" | "int64-millis" => Ok(Self::Millis),
            other => Err(format!("`{other}`: expected int96 or millis")),
        }
    }
}

impl std::fmt::Display for TimestampType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Encodes rows as one zstd-compressed Parquet file; its schema and properties are built once.
#[derive(Debug, Clone)]
pub struct ParquetEncoder {
    schema: TypePtr,
    /// A writer object's properties (`raw` at [`RAW_ZSTD_LEVEL`]).
    properties: Arc<WriterProperties>,
    /// A compacted file's ([`Self::stream`]; `raw` at [`COMPACTED_RAW_ZSTD_LEVEL`]).
    stream_properties: Arc<WriterProperties>,
    timestamps: TimestampType,
    /// `properties` tuned for each (all-null columns, small columns) pair of sets
    /// ([`Self::encode`]).
    by_nulls: Arc<Mutex<HashMap<ColumnSets, Arc<WriterProperties>>>>,
}

/// (all-null columns, small columns), a bit per column (bit n: `COLUMNS[n]`).
type ColumnSets = (u128, u128);

/// Property sets an encoder keeps (a few per event type are used; the bound holds for any
/// input).
const MAX_PROPERTY_SETS: usize = 256;

/// A compressed column whose values in a file total fewer bytes than this is stored
/// uncompressed: zstd saves a few bytes of so little, and the parquet crate builds a
/// compression and a decompression context for every compressed column chunk, which was 7 % of
/// the writer's CPU on its files of tens to hundreds of rows (BENCHMARKS.md).
const SMALL_CHUNK_BYTES: usize = 1024;

/// zstd level of `raw` in a writer's object, the bulk of every file; the other compressed
/// columns use level 1. On the writer's files (a few hundred rows, tens of KB of `raw` each),
/// level 3 took 1.6 times level 1's CPU for 0.8 % fewer bytes of `raw` (BENCHMARKS.md).
const RAW_ZSTD_LEVEL: i32 = 1;

/// zstd level of `raw` in the compactor's files (row groups of tens of thousands of rows, written
/// once and read for years): the level where the bytes still pay for the CPU.
const COMPACTED_RAW_ZSTD_LEVEL: i32 = 3;

impl Default for ParquetEncoder {
    fn default() -> Self {
        Self::new(TimestampType::default())
    }
}

impl ParquetEncoder {
    /// The encoder writing timestamps as `timestamps`.
    pub fn new(timestamps: TimestampType) -> Self {
        Self::build(timestamps, RAW_ZSTD_LEVEL, COMPACTED_RAW_ZSTD_LEVEL)
    }

    /// The encoder with another zstd level (1–22) for `raw` (in both kinds of file), for
    /// measurements.
    pub fn with_zstd_level(level: i32) -> Self {
        Self::build(TimestampType::default(), level, level)
    }

    pub fn timestamps(&self) -> TimestampType {
        self.timestamps
    }

    fn build(timestamps: TimestampType, raw_level: i32, compacted_raw_level: i32) -> Self {
        let properties = |level| Arc::new(Self::properties(timestamps, level));
        Self {
            schema: parquet_schema(timestamps),
            properties: properties(raw_level),
            stream_properties: properties(compacted_raw_level),
            timestamps,
            by_nulls: Arc::default(),
        }
    }

    fn properties(timestamps: TimestampType, raw_level: i32) -> WriterProperties {
        let raw_level = ZstdLevel::try_new(raw_level).unwrap_or_default();
        // Statistics per column chunk only: page indexes (a column index and an offset index
        // per column) cost each of these small wide files kilobytes of footer and help little
        // when a file is one row group of one partition. Data pages v1: what every reader,
        // parquet-mr 1.10 in Hive 2.3 included, reads.
        let mut builder = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(Compression::UNCOMPRESSED)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(concat!("sparklake ", env!("CARGO_PKG_VERSION")).into())
            // No offset index either: it serves page-level skipping together with the column
            // index, which is not written; it was 3.7 % of the writer stage's Parquet bytes.
            .set_offset_index_disabled(true);
        for column in COLUMNS {
            let path = ColumnPath::from(column.name);
            if column.encoding.compressed {
                let level = if column.name == "raw" {
                    raw_level
                } else {
                    ZstdLevel::default()
                };
                builder = builder.set_column_compression(path.clone(), Compression::ZSTD(level));
            }
            if !column.encoding.dictionary {
                builder = builder.set_column_dictionary_enabled(path.clone(), false);
            }
            // Min/max of whole JSON documents prune nothing; INT96 has no defined sort order,
            // so engines ignore (or misread) its statistics: none are written, as Spark does.
            if !column.encoding.statistics
                || (column.kind == Kind::Timestamp && timestamps == TimestampType::Int96)
            {
                builder = builder.set_column_statistics_enabled(path, EnabledStatistics::None);
            }
        }
        builder.build()
    }

    /// Rows as one Parquet file of one row group.
    ///
    /// A column that is null in every row (most columns of most event types) is stored
    /// uncompressed and without a dictionary: its one page is a few bytes of definition levels
    /// either way, and a zstd codec (a compression and a decompression context, which the
    /// parquet crate builds for every compressed column chunk) and a dictionary's hash table
    /// cost more than the rest of such a column's encoding in the writer's profile. The
    /// properties of each set of null columns are built once per encoder.
    ///
    /// `rows` are rows or references to them (the writer sorts references, not rows).
    pub fn encode<'a, R: Borrow<Row<'a>>>(&self, rows: &[R]) -> Result<Vec<u8>, EncodeError> {
        self.encode_backed(rows, &Backing::default())
    }

    /// [`Self::encode`], a long text value that lies in one of `backing`'s buffers handed to the
    /// Parquet writer as a view of that buffer rather than copied (the same bytes out).
    pub fn encode_backed<'a, R: Borrow<Row<'a>>>(
        &self,
        rows: &[R],
        backing: &Backing,
    ) -> Result<Vec<u8>, EncodeError> {
        let present = present_in(rows);
        let (mut nulls, mut small): (u128, u128) = (0, 0);
        for (at, column) in COLUMNS.iter().enumerate() {
            let Encoding {
                compressed,
                dictionary,
                ..
            } = column.encoding;
            if present & (1 << at) == 0 {
                if compressed || dictionary {
                    nulls |= 1 << at;
                }
                continue;
            }
            if !compressed {
                continue;
            }
            // What the values take, counted until it no longer matters.
            let mut bytes = 0;
            for row in rows {
                bytes += value_bytes((column.read)(row.borrow()));
                if bytes >= SMALL_CHUNK_BYTES {
                    break;
                }
            }
            if bytes < SMALL_CHUNK_BYTES {
                small |= 1 << at;
            }
        }
        let properties = self.properties_without(nulls, small);
        let mut stream = ParquetStream {
            file: SerializedFileWriter::new(
                Vec::with_capacity(rows.len() * 256 + 8192),
                self.schema.clone(),
                properties,
            )?,
            timestamps: self.timestamps,
            levels: Vec::new(),
        };
        stream.write_rows(rows, present, backing)?;
        stream.finish()
    }

    /// The properties with the columns of `nulls` (bit n: `COLUMNS[n]`) uncompressed and
    /// without a dictionary, and those of `small` uncompressed; built once per pair of sets and
    /// kept (a few per event type).
    fn properties_without(&self, nulls: u128, small: u128) -> Arc<WriterProperties> {
        if nulls == 0 && small == 0 {
            return self.properties.clone();
        }
        let mut built = self
            .by_nulls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(properties) = built.get(&(nulls, small)) {
            return properties.clone();
        }
        let mut builder = self.properties.as_ref().clone().into_builder();
        for (at, column) in COLUMNS.iter().enumerate() {
            let path = || ColumnPath::from(column.name);
            if (nulls | small) & (1 << at) != 0 {
                builder = builder.set_column_compression(path(), Compression::UNCOMPRESSED);
            }
            if nulls & (1 << at) != 0 {
                builder = builder.set_column_dictionary_enabled(path(), false);
            }
        }
        let properties = Arc::new(builder.build());
        if built.len() >= MAX_PROPERTY_SETS {
            built.clear();
        }
        built.insert((nulls, small), properties.clone());
        properties
    }

    /// A Parquet file written to `out` a row group at a time (the compactor's outputs), with
    /// this encoder's schema and settings, `raw` at the compactor's zstd level.
    pub fn stream<W: std::io::Write + Send>(
        &self,
        out: W,
    ) -> Result<ParquetStream<W>, EncodeError> {
        Ok(ParquetStream {
            file: SerializedFileWriter::new(
                out,
                self.schema.clone(),
                self.stream_properties.clone(),
            )?,
            timestamps: self.timestamps,
            levels: Vec::new(),
        })
    }
}

/// A Parquet file being written, one row group per [`Self::write_row_group`].
pub struct ParquetStream<W: std::io::Write + Send> {
    file: SerializedFileWriter<W>,
    timestamps: TimestampType,
    levels: Vec<i16>,
}

impl<W: std::io::Write + Send> ParquetStream<W> {
    /// Writes `rows` as one row group.
    pub fn write_row_group<'a, R: Borrow<Row<'a>>>(
        &mut self,
        rows: &[R],
    ) -> Result<(), EncodeError> {
        self.write_rows(rows, present_in(rows), &Backing::default())
    }

    /// One row group of `rows`, whose columns with a value are `present` ([`present_in`]): the
    /// others are written as nulls without reading a row.
    fn write_rows<'a, R: Borrow<Row<'a>>>(
        &mut self,
        rows: &[R],
        present: u128,
        backing: &Backing,
    ) -> Result<(), EncodeError> {
        let mut group = self.file.next_row_group()?;
        for (at, column) in COLUMNS.iter().enumerate() {
            let Some(mut writer) = group.next_column()? else {
                return Err(parquet::errors::ParquetError::General(format!(
                    "no column writer for {}",
                    column.name
                ))
                .into());
            };
            if present & (1 << at) == 0 && column.kind != Kind::Bool {
                write_nulls(column, rows.len(), writer.untyped(), &mut self.levels)?;
            } else {
                write_column(
                    column,
                    rows,
                    backing,
                    self.timestamps,
                    writer.untyped(),
                    &mut self.levels,
                )?;
            }
            writer.close()?;
        }
        group.close()?;
        Ok(())
    }

    /// Bytes written so far (the footer not yet).
    pub fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// Writes the footer and hands back the output.
    pub fn finish(self) -> Result<W, EncodeError> {
        Ok(self.file.into_inner()?)
    }
}

/// The Parquet schema of [`COLUMNS`]: text as UTF-8 strings, `Int` as plain INT64 (Athena
/// BIGINT), `Float` as DOUBLE, booleans, and timestamps as `timestamps` says. Every column is
/// optional except the never-null flags.
pub fn parquet_schema(timestamps: TimestampType) -> TypePtr {
    let fields = COLUMNS
        .iter()
        .map(|c| {
            let (physical, logical) = match c.kind {
                Kind::Text | Kind::Json => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
                Kind::Int => (PhysicalType::INT64, None),
                Kind::Float => (PhysicalType::DOUBLE, None),
                Kind::Bool | Kind::OptBool => (PhysicalType::BOOLEAN, None),
                Kind::Timestamp => match timestamps {
                    TimestampType::Int96 => (PhysicalType::INT96, None),
                    TimestampType::Millis => (
                        PhysicalType::INT64,
                        Some(LogicalType::timestamp(true, ParquetTimeUnit::MILLIS)),
                    ),
                },
            };
            let repetition = if c.kind == Kind::Bool {
                Repetition::REQUIRED
            } else {
                Repetition::OPTIONAL
            };
            Type::primitive_type_builder(c.name, physical)
                .with_logical_type(logical)
                .with_repetition(repetition)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()
        // The table is static and every kind maps to a valid primitive type (a unit test
        // builds it): a failure here is a programming error, found at the first encode.
        .unwrap_or_else(|e| panic!("the Parquet schema of COLUMNS is invalid: {e}"));
    Type::group_type_builder("schema")
        .with_fields(fields)
        .build()
        .map(Arc::new)
        .unwrap_or_else(|e| panic!("the Parquet schema of COLUMNS is invalid: {e}"))
}

/// The columns that hold a value in any of `rows` (bit n: `COLUMNS[n]`).
fn present_in<'a, R: Borrow<Row<'a>>>(rows: &[R]) -> u128 {
    rows.iter()
        .fold(0, |present, row| present | present_columns(row.borrow()))
}

/// A column chunk of `rows` nulls, written as [`write_column`] writes a column null in every
/// row (a definition level of 0 each, no values) without reading the rows.
fn write_nulls(
    column: &Column,
    rows: usize,
    writer: &mut ColumnWriter<'_>,
    levels: &mut Vec<i16>,
) -> Result<(), EncodeError> {
    levels.clear();
    levels.resize(rows, 0);
    match writer {
        ColumnWriter::ByteArrayColumnWriter(w) => w.write_batch(&[], Some(levels), None)?,
        ColumnWriter::Int64ColumnWriter(w) => w.write_batch(&[], Some(levels), None)?,
        ColumnWriter::Int96ColumnWriter(w) => w.write_batch(&[], Some(levels), None)?,
        ColumnWriter::DoubleColumnWriter(w) => w.write_batch(&[], Some(levels), None)?,
        ColumnWriter::BoolColumnWriter(w) => w.write_batch(&[], Some(levels), None)?,
        _ => {
            return Err(parquet::errors::ParquetError::General(format!(
                "column {} ({:?}) has no writer of its kind",
                column.name, column.kind
            ))
            .into());
        }
    };
    Ok(())
}

/// One column chunk from the rows. `levels` is scratch space for the definition levels.
fn write_column<'a, R: Borrow<Row<'a>>>(
    column: &Column,
    rows: &[R],
    backing: &Backing,
    timestamps: TimestampType,
    writer: &mut ColumnWriter<'_>,
    levels: &mut Vec<i16>,
) -> Result<(), EncodeError> {
    levels.clear();
    let values = rows.iter().map(|r| (column.read)(r.borrow()));
    match writer {
        ColumnWriter::ByteArrayColumnWriter(w) => {
            // A long value that lies in a backing buffer (a message body) is a view of it; the
            // others share one buffer for the column's text: no allocation or copy per value.
            let mut text = Vec::with_capacity(rows.len() * 24);
            let spans = present(values, levels, |v| match v {
                Value::Text(Some(t)) => Some(match backing.view(t.as_bytes()) {
                    Some(view) => Span::Viewed(view),
                    None => {
                        text.extend_from_slice(t.as_bytes());
                        Span::Copied(text.len() - t.len(), t.len())
                    }
                }),
                _ => None,
            });
            let text = Bytes::from(text);
            let values: Vec<ByteArray> = spans
                .into_iter()
                .map(|span| {
                    ByteArray::from(match span {
                        Span::Viewed(view) => view,
                        Span::Copied(at, len) => text.slice(at..at + len),
                    })
                })
                .collect();
            w.write_batch(&values, Some(levels), None)?;
        }
        ColumnWriter::Int64ColumnWriter(w) => {
            let out = present(values, levels, |v| match v {
                Value::Int(i) | Value::Millis(i) => i,
                _ => None,
            });
            w.write_batch(&out, Some(levels), None)?;
        }
        ColumnWriter::Int96ColumnWriter(w) => {
            let out = present(values, levels, |v| match v {
                Value::Millis(m) => m.map(int96_of_millis),
                _ => None,
            });
            w.write_batch(&out, Some(levels), None)?;
        }
        ColumnWriter::DoubleColumnWriter(w) => {
            let out = present(values, levels, |v| match v {
                Value::Float(f) => f,
                _ => None,
            });
            w.write_batch(&out, Some(levels), None)?;
        }
        ColumnWriter::BoolColumnWriter(w) if column.kind == Kind::Bool => {
            let out: Vec<bool> = values.map(|v| matches!(v, Value::Bool(true))).collect();
            w.write_batch(&out, None, None)?;
        }
        ColumnWriter::BoolColumnWriter(w) => {
            let out = present(values, levels, |v| match v {
                Value::OptBool(b) => b,
                _ => None,
            });
            w.write_batch(&out, Some(levels), None)?;
        }
        _ => {
            return Err(parquet::errors::ParquetError::General(format!(
                "column {} ({:?}, timestamps {timestamps}) has no writer of its kind",
                column.name, column.kind
            ))
            .into());
        }
    }
    Ok(())
}

/// A text value for the Parquet writer: a view of a backing buffer, or (offset, length) in the
/// column's own buffer.
enum Span {
    Viewed(Bytes),
    Copied(usize, usize),
}

/// The buffers rows' text may lie in (the writer's message bodies, which its rows borrow from):
/// a long value found in one is given to the Parquet writer as a view of it (a reference count)
/// instead of being copied into a column buffer first; `raw` is most of the writer's bytes, and
/// that copy was ~5 % of its CPU (BENCHMARKS.md). A value in none of them (an unescaped string,
/// or no buffers given) is copied as before.
#[derive(Debug, Default, Clone)]
pub struct Backing {
    /// (start address, buffer), by start address.
    buffers: Vec<(usize, Bytes)>,
}

/// Values shorter than this are copied: the copy costs less than a view's reference count.
const VIEW_BYTES: usize = 64;

impl Backing {
    pub fn new(buffers: impl IntoIterator<Item = Bytes>) -> Self {
        let mut buffers: Vec<(usize, Bytes)> = buffers
            .into_iter()
            .filter(|b| !b.is_empty())
            .map(|b| (b.as_ptr() as usize, b))
            .collect();
        buffers.sort_unstable_by_key(|(start, _)| *start);
        Self { buffers }
    }

    /// `text` as a view of the buffer it lies in, if it is long enough to be worth it and lies
    /// wholly in one.
    fn view(&self, text: &[u8]) -> Option<Bytes> {
        if text.len() < VIEW_BYTES {
            return None;
        }
        let start = text.as_ptr() as usize;
        let at = self
            .buffers
            .partition_point(|(s, _)| *s <= start)
            .checked_sub(1)?;
        let (s, buffer) = &self.buffers[at];
        // `start >= s` by the search; the whole of `text` must be inside too.
        (start - s + text.len() <= buffer.len()).then(|| buffer.slice_ref(text))
    }
}

/// Reads one Parquet object of the lake, whichever timestamp type it was written with (INT96,
/// or INT64 TIMESTAMP(MILLIS) as objects written before 2026-12 and with
/// `SPARKLAKE_PARQUET_TIMESTAMP=millis` are), into Arrow batches whose timestamp columns are
/// all `Timestamp(Millisecond, "UTC")`: the lake's values, not its storage choices.
pub fn read_parquet(bytes: Bytes) -> Result<Vec<RecordBatch>, EncodeError> {
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
    let hint = timestamps_as_millis(builder.schema());
    let options = ArrowReaderOptions::new().with_schema(hint);
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// `schema` with every timestamp field as milliseconds in UTC (the reading hint of
/// [`read_parquet`]; INT96 is read as nanoseconds otherwise, which overflows after 2262).
pub fn timestamps_as_millis(schema: &arrow::datatypes::Schema) -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(..) => f.as_ref().clone().with_data_type(DataType::Timestamp(
                TimeUnit::Millisecond,
                Some("UTC".into()),
            )),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The bytes a value takes in a column's plain encoding (a null: none).
fn value_bytes(value: Value<'_>) -> usize {
    match value {
        Value::Text(t) => t.map_or(0, str::len),
        Value::Int(v) | Value::Millis(v) => v.map_or(0, |_| 8),
        Value::Float(v) => v.map_or(0, |_| 8),
        Value::OptBool(v) => v.map_or(0, |_| 1),
        Value::Bool(_) => 1,
    }
}

/// The values `pick` finds, with a definition level per row in `levels` (1 present, 0 null).
fn present<'v, T>(
    values: impl Iterator<Item = Value<'v>>,
    levels: &mut Vec<i16>,
    mut pick: impl FnMut(Value<'v>) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::with_capacity(values.size_hint().0);
    for value in values {
        match pick(value) {
            Some(v) => {
                levels.push(1);
                out.push(v);
            }
            None => levels.push(0),
        }
    }
    out
}

const MILLIS_PER_DAY: i64 = 86_400_000;
/// The Julian day number of 1970-01-01.
const JULIAN_DAY_OF_EPOCH: i64 = 2_440_588;

/// An instant in INT96's layout: nanoseconds of the day (little-endian, the first 8 bytes)
/// and the Julian day (the last 4).
pub fn int96_of_millis(millis: i64) -> Int96 {
    let days = millis.div_euclid(MILLIS_PER_DAY);
    let nanos = millis.rem_euclid(MILLIS_PER_DAY) * 1_000_000;
    let mut value = Int96::new();
    // Truncations are exact: nanos < 86 400 × 10^9 < 2^64, and the Julian day of any
    // timestamp the event model reads (years 1970–9999) fits in 32 bits.
    value.set_data(
        nanos as u32,
        (nanos >> 32) as u32,
        (days + JULIAN_DAY_OF_EPOCH) as u32,
    );
    value
}

/// Encodes rows as CSV: a header row, the same columns in the same order, RFC 4180 quoting, and
/// no raw line break inside a field (Athena's OpenCSVSerde cannot read them): in text, CR and LF
/// become the two characters `\r` and `\n`; JSON columns are written on one line (see
/// [`one_line_json`]), which needs no escaping since JSON strings cannot hold a raw line break.
pub fn encode_csv<'a, R: Borrow<Row<'a>>>(rows: &[R]) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(rows.len() * 1024 + 1024);
    csv_header(&mut out);
    let present = present_in(rows);
    for row in rows {
        csv_record(&mut out, row.borrow(), present);
    }
    Ok(out)
}

/// A CSV file written to `out` as [`encode_csv`] writes it, rows appended as they come (the
/// compactor's outputs): the header first.
///
/// The output is byte for byte what the `csv` crate writes with CRLF terminators and its default
/// `QuoteStyle::Necessary` (a unit test holds the two together): a field is quoted when it
/// holds a comma, a quote, CR or LF, and a quote inside is doubled. Written here rather than
/// through the crate because its general-purpose writer (a per-byte state machine, an
/// allocation per number and timestamp) was most of the CSV time.
pub struct CsvStream<W: std::io::Write> {
    out: W,
    buf: Vec<u8>,
}

/// Records are gathered up to this many bytes before they are written to the output.
const CSV_CHUNK: usize = 64 * 1024;

impl<W: std::io::Write> CsvStream<W> {
    pub fn new(out: W) -> Result<Self, EncodeError> {
        let mut buf = Vec::with_capacity(CSV_CHUNK + 8192);
        csv_header(&mut buf);
        Ok(Self { out, buf })
    }

    pub fn write_rows<'a, R: Borrow<Row<'a>>>(&mut self, rows: &[R]) -> Result<(), EncodeError> {
        let present = present_in(rows);
        for row in rows {
            csv_record(&mut self.buf, row.borrow(), present);
            if self.buf.len() >= CSV_CHUNK {
                self.drain()?;
            }
        }
        Ok(())
    }

    /// Hands what is gathered to the output.
    fn drain(&mut self) -> Result<(), EncodeError> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// The output, once everything written so far has reached it.
    pub fn flushed(&mut self) -> Result<&W, EncodeError> {
        self.drain()?;
        self.out.flush()?;
        Ok(&self.out)
    }

    pub fn finish(mut self) -> Result<W, EncodeError> {
        self.drain()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The header record: the column names.
fn csv_header(out: &mut Vec<u8>) {
    for (i, column) in COLUMNS.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_text(out, column.name.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// One row's record; a column not in `present` (bit n: `COLUMNS[n]`) is empty in this row
/// (it is null in all the rows being written) and is not read.
fn csv_record(out: &mut Vec<u8>, row: &Row<'_>, present: u128) {
    for (i, column) in COLUMNS.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if present & (1 << i) != 0 {
            csv_field(out, column.kind, (column.read)(row));
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// One field's text, quoted when it needs to be (see [`CsvStream`]).
fn csv_field(out: &mut Vec<u8>, kind: Kind, value: Value<'_>) {
    match value {
        Value::Text(None)
        | Value::Int(None)
        | Value::Float(None)
        | Value::Millis(None)
        | Value::OptBool(None) => {}
        // Most fields hold none of the characters that need care: one scan, one copy.
        Value::Text(Some(t)) if plain_field(t.as_bytes()) => out.extend_from_slice(t.as_bytes()),
        Value::Text(Some(t)) if kind == Kind::Json => csv_text(out, one_line_json(t).as_bytes()),
        Value::Text(Some(t)) => csv_text(out, escape_line_breaks(t).as_bytes()),
        Value::Int(Some(i)) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Value::Float(Some(f)) => {
            let _ = write!(out, "{f}");
        }
        Value::Bool(b) | Value::OptBool(Some(b)) => {
            out.extend_from_slice(if b { b"true" } else { b"false" })
        }
        Value::Millis(Some(m)) => write_millis(out, m),
    }
}

/// Whether `text` holds no comma, quote, CR or LF: written as it is in every column.
fn plain_field(text: &[u8]) -> bool {
    if text.len() < 32 {
        // Short fields (ids, names, numbers as text): a loop beats setting up a vector search.
        !text
            .iter()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    } else {
        memchr::memchr3(b',', b'"', b'\n', text).is_none() && memchr::memchr(b'\r', text).is_none()
    }
}

/// `text` as a CSV field: as it is, or in quotes with each quote doubled when it holds a comma,
/// a quote, CR or LF.
fn csv_text(out: &mut Vec<u8>, text: &[u8]) {
    if memchr::memchr3(b',', b'"', b'\n', text).is_none() && memchr::memchr(b'\r', text).is_none() {
        out.extend_from_slice(text);
        return;
    }
    let quotes = text.iter().fold(0usize, |n, &b| n + usize::from(b == b'"'));
    let start = out.len();
    if quotes.saturating_mul(32) < text.len() {
        // Few quotes (a subject with a comma, or none at all): copies between them.
        out.reserve(text.len() + quotes + 2);
        out.push(b'"');
        let mut rest = text;
        while let Some(at) = memchr::memchr(b'"', rest) {
            out.extend_from_slice(&rest[..=at]);
            out.push(b'"');
            rest = &rest[at + 1..];
        }
        out.extend_from_slice(rest);
        out.push(b'"');
    } else {
        // Dense quotes (`raw` and other JSON: one every few bytes): a byte at a time into room
        // made once is cheaper than a search and a copy per quote.
        out.resize(start + text.len() + quotes + 2, b'"');
        let field = &mut out[start + 1..];
        let mut at = 0;
        for &b in text {
            if let Some(slot) = field.get_mut(at) {
                *slot = b;
            }
            at += 1 + usize::from(b == b'"');
        }
    }
    debug_assert_eq!(out.len(), start + text.len() + quotes + 2);
}

/// JSON text on one line. In valid JSON a raw CR or LF can only be whitespace between tokens
/// (strings hold them escaped), so each becomes a space: the same JSON value, byte for byte
/// otherwise, and no copy at all for the usual compact text.
fn one_line_json(json: &str) -> Cow<'_, str> {
    if memchr::memchr2(b'\n', b'\r', json.as_bytes()).is_none() {
        return Cow::Borrowed(json);
    }
    Cow::Owned(json.replace(['\r', '\n'], " "))
}

fn escape_line_breaks(text: &str) -> Cow<'_, str> {
    if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_none() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.replace('\r', "\\r").replace('\n', "\\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::format_millis;
    use parquet::basic::ColumnOrder;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// RFC 4180 quoting, the plain way: what [`csv_text`] must write after anything.
    fn csv_text_reference(text: &[u8]) -> Vec<u8> {
        let plain = !text
            .iter()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
        if plain {
            return text.to_vec();
        }
        let mut out = vec![b'"'];
        for &b in text {
            out.push(b);
            if b == b'"' {
                out.push(b'"');
            }
        }
        out.push(b'"');
        out
    }

    proptest::proptest! {
        #[test]
        fn csv_text_quotes_as_the_reference(
            prefix in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
            text in proptest::collection::vec(proptest::sample::select(b"ab,\"\n\r{}:".to_vec()), 0..300),
        ) {
            // Both ways: sparse quotes (copies between them) and dense ones (byte by byte).
            let sparse: Vec<u8> = text.iter().map(|&b| if b == b'"' { b'x' } else { b }).collect();
            for text in [&text, &sparse, &[&sparse[..], b"\""].concat()] {
                let mut out = prefix.clone();
                csv_text(&mut out, text);
                proptest::prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
                proptest::prop_assert_eq!(&out[prefix.len()..], &csv_text_reference(text)[..]);
            }
        }
    }

    fn sample_rows(text: &str) -> Vec<Row<'_>> {
        crate::envelope::validate(text.as_bytes())
            .expect("valid batch")
            .events()
            .map(|(element, head)| {
                Row::new(
                    crate::event::Event::with_head(element.raw, head.clone()),
                    Some("batch"),
                    1_454_442_700_000,
                    &crate::schema::TimestampPolicy::default(),
                )
            })
            .collect()
    }

    const BATCH: &str = r#"[{"msys":{"track_event":{"type":"click","event_id":"1","timestamp":"1454442600","geo_ip":{"latitude":1.5,"longitude":-2.25}}}},
        {"msys":{"message_event":{"type":"delivery","event_id":"2","timestamp":"253402300799999"}}}]"#;

    /// The CSV as the `csv` crate writes the same fields (CRLF, `QuoteStyle::Necessary`): what
    /// every CSV object was before the encoder was written by hand, and what readers were
    /// tested with.
    fn csv_by_the_crate(rows: &[Row<'_>]) -> Vec<u8> {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::new());
        writer
            .write_record(COLUMNS.iter().map(|c| c.name))
            .expect("header");
        for row in rows {
            let record: Vec<String> = COLUMNS
                .iter()
                .map(|c| {
                    let mut field = Vec::new();
                    match (c.read)(row) {
                        Value::Text(Some(t)) if c.kind == Kind::Json => {
                            field.extend_from_slice(one_line_json(t).as_bytes())
                        }
                        Value::Text(Some(t)) => {
                            field.extend_from_slice(escape_line_breaks(t).as_bytes())
                        }
                        Value::Int(Some(i)) => field.extend_from_slice(i.to_string().as_bytes()),
                        Value::Float(Some(f)) => field.extend_from_slice(f.to_string().as_bytes()),
                        Value::Bool(b) | Value::OptBool(Some(b)) => {
                            field.extend_from_slice(b.to_string().as_bytes())
                        }
                        Value::Millis(Some(m)) => {
                            field.extend_from_slice(format_millis(m).as_bytes())
                        }
                        _ => {}
                    }
                    String::from_utf8(field).expect("utf-8")
                })
                .collect();
            writer.write_record(&record).expect("record");
        }
        writer.into_inner().expect("flushed")
    }

    /// Fixture batches of every class and of the type drift real payloads show: (path, text).
    fn fixture_texts() -> Vec<(&'static str, String)> {
        [
            "sparkpost/batch.json",
            "documented/message_events.json",
            "documented/track_events.json",
            "documented/ab_test_events.json",
            "documented/ingest_events.json",
            "drift/numbers.json",
            "drift/timestamps.json",
            "drift/unknown.json",
        ]
        .into_iter()
        .map(|path| {
            let file = format!("{}/../fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
            (path, std::fs::read_to_string(&file).expect("fixture"))
        })
        .collect()
    }

    #[test]
    fn csv_is_what_the_csv_crate_writes() {
        let mut texts: Vec<String> = fixture_texts().into_iter().map(|(_, t)| t).collect();
        // Every character that decides quoting, at the start, the end and alone, in text, in
        // JSON columns and in `raw`; numbers and floats of every shape.
        texts.push(
            r#"[{"msys":{"message_event":{"type":"bounce","event_id":"a,b","subject":"\"quoted\" and, comma","reason":"line\r\nbreak","campaign_id":",","template_id":"\"","ip_pool":"","rcpt_tags":["x,y","\"z\""],"rcpt_meta":{"k":"v\n"},"num_retries":"-0","msg_size":1e3,"geo_ip":{"latitude":-0.0,"longitude":1e300},"timestamp":"2016-02-02T19:50:00.123Z"}},"cust":"a\"b"},
            {"msys":{"track_event":{"type":"click","subject":"ends with a quote\"","user_agent":"\r","target_link_url":"http://x/?a=1,2","geo_ip":{"latitude":12.5,"longitude":123456789.125}}}},
            {"msys":{"message_event":{"type":"delivery"}}
            ,"x":"\n"}]"#
                .into(),
        );
        let mut checked = 0;
        for text in &texts {
            let rows = sample_rows(text);
            assert!(!rows.is_empty());
            let ours = encode_csv(&rows).expect("encodes");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&csv_by_the_crate(&rows))
            );
            // The stream writes the same bytes, in whatever pieces the rows come.
            let mut stream = CsvStream::new(Vec::new()).expect("stream");
            for chunk in rows.chunks(2) {
                stream.write_rows(chunk).expect("rows");
            }
            assert_eq!(stream.finish().expect("finish"), ours);
            checked += rows.len();
        }
        assert!(checked > 20, "{checked} rows");
    }

    /// The inline presence mask says what each column's `read` says, on every fixture row,
    /// so skipping the columns it calls null changes no output.
    #[test]
    fn present_columns_is_what_each_read_says() {
        let mut checked = 0;
        for (path, text) in fixture_texts() {
            for row in sample_rows(&text) {
                let present = present_columns(&row);
                for (at, column) in COLUMNS.iter().enumerate() {
                    let null = (column.read)(&row).is_null();
                    assert_eq!(present & (1 << at) == 0, null, "{path}: {}", column.name);
                }
                checked += 1;
            }
        }
        assert!(checked > 30, "{checked} rows");
        assert_eq!(present_columns(&sample_rows(BATCH)[0]) >> COLUMNS.len(), 0);
    }

    #[test]
    fn backed_encoding_writes_the_same_bytes_and_views_only_what_lies_in_a_buffer() {
        for (path, text) in fixture_texts() {
            let body = Bytes::from(text.clone().into_bytes());
            let rows = sample_rows(std::str::from_utf8(&body).expect("utf-8"));
            let encoder = ParquetEncoder::default();
            let backing = Backing::new([Bytes::from_static(b"other"), body.clone()]);
            // The rows' `raw` texts are views of the body, so the backed path is the one taken.
            assert!(
                rows.iter()
                    .all(|r| backing.view(r.event.raw.as_bytes()).is_some()),
                "{path}"
            );
            let copied = encoder.encode(&rows).expect("encode");
            let backed = encoder.encode_backed(&rows, &backing).expect("encode");
            assert_eq!(copied, backed, "{path}");
        }
        let body = Bytes::from(vec![b'x'; 4 * VIEW_BYTES]);
        let backing = Backing::new([body.clone()]);
        let inside = &body[VIEW_BYTES..3 * VIEW_BYTES];
        let view = backing.view(inside).expect("a view");
        assert_eq!(view.as_ptr(), inside.as_ptr());
        assert_eq!(&view[..], inside);
        // Too short, not in the buffer, or running past its end: copied.
        assert!(backing.view(&body[..VIEW_BYTES - 1]).is_none());
        let elsewhere = vec![b'x'; 2 * VIEW_BYTES];
        assert!(backing.view(&elsewhere).is_none());
        let longer = body.slice(..);
        let short_backing = Backing::new([body.slice(..2 * VIEW_BYTES)]);
        assert!(
            short_backing
                .view(&longer[VIEW_BYTES..3 * VIEW_BYTES])
                .is_none()
        );
        assert!(Backing::default().view(inside).is_none());
    }

    #[test]
    fn columns_of_under_a_kilobyte_are_stored_uncompressed() {
        let rows = sample_rows(BATCH);
        let file = Bytes::from(ParquetEncoder::default().encode(&rows).expect("encodes"));
        let reader = SerializedFileReader::new(file.clone()).expect("reads");
        let group = reader.metadata().row_group(0);
        let column = |name: &str| {
            let at = COLUMNS.iter().position(|c| c.name == name).expect("column");
            group.column(at)
        };
        // Two events of a few hundred bytes: nothing is worth a zstd context...
        for name in ["raw", "event_id", "timestamp"] {
            assert_eq!(
                column(name).compression(),
                Compression::UNCOMPRESSED,
                "{name}"
            );
        }
        // ...while dictionaries stay where the encoding has them, and the values are whole.
        assert!(column("type").dictionary_page_offset().is_some());
        let batches = read_parquet(file).expect("reads back");
        let raw = batches[0]
            .column_by_name("raw")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
            .expect("raw");
        assert_eq!(raw.value(1), rows[1].event.raw);
    }

    /// `BATCH`'s two events `copies` times over, each copy with its own event ids.
    fn repeated_batch(copies: usize) -> String {
        let one = BATCH.trim().trim_start_matches('[').trim_end_matches(']');
        let copies: Vec<String> = (0..copies)
            .map(|n| {
                // Ids as long as SparkPost's (about 20 digits).
                one.replace("\"event_id\":\"1\"", &format!("\"event_id\":\"1{n:019}\""))
                    .replace("\"event_id\":\"2\"", &format!("\"event_id\":\"2{n:019}\""))
            })
            .collect();
        format!("[{}]", copies.join(","))
    }

    #[test]
    fn columns_that_are_all_null_are_stored_uncompressed_without_a_dictionary() {
        let text = repeated_batch(100);
        let rows = sample_rows(&text);
        let file = ParquetEncoder::default().encode(&rows).expect("encodes");
        let reader = SerializedFileReader::new(Bytes::from(file)).expect("reads");
        let group = reader.metadata().row_group(0);
        let codec = |name: &str| {
            let at = COLUMNS.iter().position(|c| c.name == name).expect("column");
            group.column(at).compression()
        };
        // Present, and a kilobyte or more: compressed as the encoding says.
        assert!(matches!(codec("raw"), Compression::ZSTD(_)));
        assert!(matches!(codec("event_id"), Compression::ZSTD(_)));
        // Compressed by its encoding, but null in both rows.
        assert_eq!(codec("device_token"), Compression::UNCOMPRESSED);
        assert_eq!(codec("subject"), Compression::UNCOMPRESSED);
        // Never compressed.
        assert_eq!(codec("type"), Compression::UNCOMPRESSED);
        let dictionary = |name: &str| {
            let at = COLUMNS.iter().position(|c| c.name == name).expect("column");
            group.column(at).dictionary_page_offset().is_some()
        };
        // A dictionary where its encoding says so and a value is present; none for a column
        // null in every row, whatever its encoding.
        assert!(dictionary("type"));
        assert!(dictionary("event_class"));
        assert!(!dictionary("event_id"));
        assert!(!dictionary("sms_coding"));
        assert!(!dictionary("subject"));
        // The same sets of null and small columns get the same properties, built once; the
        // sets kept stay bounded whatever the input.
        let encoder = ParquetEncoder::default();
        let first = encoder.properties_without(0b101, 0b1000);
        assert!(Arc::ptr_eq(
            &first,
            &encoder.properties_without(0b101, 0b1000)
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &encoder.properties_without(0b110, 0b1000)
        ));
        assert!(!Arc::ptr_eq(&first, &encoder.properties_without(0b101, 0)));
        for nulls in 1..=(MAX_PROPERTY_SETS as u128 * 2) {
            encoder.properties_without(nulls, nulls << 64);
        }
        let sets = encoder.by_nulls.lock().expect("lock").len();
        assert!(sets <= MAX_PROPERTY_SETS, "{sets} property sets");
        let batches = read_parquet(reader_bytes(&rows)).expect("reads back");
        assert_eq!(batches[0].num_rows(), 200);
        // Neither page index is written (the footer's statistics are per column chunk).
        let options = parquet::file::serialized_reader::ReadOptionsBuilder::new()
            .with_page_index()
            .build();
        let reader =
            SerializedFileReader::new_with_options(reader_bytes(&rows), options).expect("reads");
        assert!(
            reader
                .metadata()
                .offset_index()
                .is_none_or(|i| i.iter().all(Vec::is_empty))
        );
        assert!(
            reader
                .metadata()
                .column_index()
                .is_none_or(|i| i.iter().all(Vec::is_empty))
        );
    }

    fn reader_bytes(rows: &[Row<'_>]) -> Bytes {
        Bytes::from(ParquetEncoder::default().encode(rows).expect("encodes"))
    }

    /// Readers that predate 2026's IEEE_754_TOTAL_ORDER (parquet-mr in Hive 2.3, polars 1.41)
    /// fail on a column, or a file, that declares it; INT96_TIMESTAMP_ORDER is as new. Every
    /// column must declare the order every reader knows: an upgrade of the parquet crate that
    /// brings the new orders back fails here.
    #[test]
    fn every_column_declares_the_type_defined_order() {
        let rows = sample_rows(BATCH);
        for timestamps in [TimestampType::Int96, TimestampType::Millis] {
            let file = ParquetEncoder::new(timestamps)
                .encode(&rows)
                .expect("encodes");
            let reader = SerializedFileReader::new(Bytes::from(file)).expect("reads");
            let metadata = reader.metadata().file_metadata();
            let orders = metadata.column_orders().expect("column orders are written");
            assert_eq!(orders.len(), COLUMNS.len());
            for (i, order) in orders.iter().enumerate() {
                assert!(
                    matches!(order, ColumnOrder::TYPE_DEFINED_ORDER(_)),
                    "{timestamps}: column {} declares {order:?}",
                    COLUMNS[i].name
                );
            }
        }
    }

    #[test]
    fn timestamps_are_int96_or_int64_millis_as_set() {
        let rows = sample_rows(BATCH);
        let at = COLUMNS
            .iter()
            .position(|c| c.name == "timestamp")
            .expect("a column");
        for (timestamps, physical) in [
            (TimestampType::Int96, PhysicalType::INT96),
            (TimestampType::Millis, PhysicalType::INT64),
        ] {
            let file = ParquetEncoder::new(timestamps)
                .encode(&rows)
                .expect("encodes");
            let reader = SerializedFileReader::new(Bytes::from(file)).expect("reads");
            let column = reader.metadata().file_metadata().schema_descr().column(at);
            assert_eq!(column.physical_type(), physical);
            if timestamps == TimestampType::Millis {
                assert_eq!(
                    column.logical_type_ref(),
                    Some(&LogicalType::timestamp(true, ParquetTimeUnit::MILLIS))
                );
            }
        }
        assert_eq!("int96".parse(), Ok(TimestampType::Int96));
        assert_eq!(" Millis ".parse(), Ok(TimestampType::Millis));
        assert!("micros".parse::<TimestampType>().is_err());
    }

    #[test]
    fn both_timestamp_types_read_back_as_the_same_millis() {
        use arrow::array::AsArray;
        use arrow::datatypes::TimestampMillisecondType;
        let rows = sample_rows(BATCH);
        let mut seen = Vec::new();
        for timestamps in [TimestampType::Int96, TimestampType::Millis] {
            let file = ParquetEncoder::new(timestamps)
                .encode(&rows)
                .expect("encodes");
            let batches = read_parquet(Bytes::from(file)).expect("reads");
            let column = batches[0].column_by_name("timestamp").expect("column");
            let values = column.as_primitive::<TimestampMillisecondType>();
            seen.push(values.values().to_vec());
        }
        // 2016-02-02T19:50:00Z and 9999-12-31T23:59:59.999Z, whole, from both.
        assert_eq!(seen[0], vec![1_454_442_600_000, 253_402_300_799_999]);
        assert_eq!(seen[0], seen[1]);
    }

    /// INT96 as Hive and Impala define it: `(julian_day - 2440588) * 86400 s + nanos`.
    #[test]
    fn int96_holds_the_julian_day_and_the_nanoseconds_of_the_day() {
        for millis in [
            0,
            1,
            86_399_999,
            86_400_000,
            1_454_442_600_123,
            253_402_300_799_999,
        ] {
            let value = int96_of_millis(millis);
            assert_eq!(value.to_millis(), millis, "{millis}");
            let days = i64::from(value.data()[2]);
            let nanos = (i64::from(value.data()[1]) << 32) | i64::from(value.data()[0]);
            assert_eq!((days - 2_440_588) * 86_400_000 + nanos / 1_000_000, millis);
            assert!(nanos < 86_400 * 1_000_000_000);
        }
        // 2016-02-02 is Julian day 2457421.
        assert_eq!(int96_of_millis(1_454_442_600_000).data()[2], 2_457_421);
    }
}
