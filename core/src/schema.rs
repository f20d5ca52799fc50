//! The one wide column set every event type is written with, so a single Athena table reads
//! every partition. Each column is a name, a kind and a function reading it from a [`Row`].

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::event::Event;
use crate::partition::Partition;
use crate::timestamp;

/// An event with the context of the batch it arrived in.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub event: Event<'a>,
    /// SparkPost's `X-MessageSystems-Batch-ID`.
    pub batch_id: Option<&'a str>,
    /// When ingest accepted the batch, UTC milliseconds.
    pub received_at: i64,
    /// The event's timestamp was read but lies outside what [`TimestampPolicy`] accepts: the
    /// row is filed under its receive date, its `timestamp` column kept as sent.
    pub timestamp_implausible: bool,
}

impl<'a> Row<'a> {
    /// The row of an event received at `received_at`, its timestamp judged by `policy`.
    pub fn new(
        event: Event<'a>,
        batch_id: Option<&'a str>,
        received_at: i64,
        policy: &TimestampPolicy,
    ) -> Self {
        let timestamp_implausible = event
            .timestamp_millis()
            .is_some_and(|t| !policy.is_plausible(t, received_at));
        Self {
            event,
            batch_id,
            received_at,
            timestamp_implausible,
        }
    }

    /// The time that places the row: the event's own, or the receive time when the event's
    /// is unreadable or implausible.
    pub fn placed_at(&self) -> i64 {
        match self.event.timestamp_millis() {
            Some(t) if !self.timestamp_implausible => t,
            _ => self.received_at,
        }
    }

    /// Event type and the UTC date of [`Self::placed_at`].
    pub fn partition(&self) -> Partition<'a> {
        Partition {
            event_type: self.event.head.event_type.clone(),
            dt: timestamp::date_of(self.placed_at()),
        }
    }
}

/// Which event timestamps are trusted to place an event in the lake. A timestamp before the
/// floor (SparkPost's `0`, a default date) or too far after the batch was received (a clock
/// years off) would file the event where no one looks, and where the Glue tables' `dt`
/// projection (from `ProjectionStartDate` to a day after `NOW`) does not reach: such an event
/// goes under its receive date instead, flagged `timestamp_implausible`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampPolicy {
    /// The earliest plausible instant, UTC milliseconds (`SPARKLAKE_TIMESTAMP_FLOOR`).
    pub floor_millis: i64,
    /// How far after its receive time an event's timestamp may be (clock skew).
    pub max_ahead_millis: i64,
}

/// 2014-01-01T00:00:00Z: SparkPost's service started in 2014, so nothing it sends is older.
pub const DEFAULT_TIMESTAMP_FLOOR_MILLIS: i64 = 1_388_534_400_000;
/// One day: the tables' date projection reaches one day past today, so an event up to a day
/// ahead of its receipt is still visible when written.
pub const MAX_AHEAD_MILLIS: i64 = 86_400_000;

impl Default for TimestampPolicy {
    fn default() -> Self {
        Self {
            floor_millis: DEFAULT_TIMESTAMP_FLOOR_MILLIS,
            max_ahead_millis: MAX_AHEAD_MILLIS,
        }
    }
}

impl TimestampPolicy {
    /// The policy with a floor at 00:00 UTC of `date` (`YYYY-MM-DD`).
    pub fn with_floor_date(date: &str) -> Result<Self, String> {
        let day = chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
            .map_err(|e| format!("`{date}` is not a YYYY-MM-DD date: {e}"))?;
        Ok(Self {
            floor_millis: day
                .and_time(chrono::NaiveTime::MIN)
                .and_utc()
                .timestamp_millis(),
            ..Self::default()
        })
    }

    /// Whether `timestamp` may place an event received at `received_at`.
    pub fn is_plausible(&self, timestamp: i64, received_at: i64) -> bool {
        timestamp >= self.floor_millis
            && timestamp <= received_at.saturating_add(self.max_ahead_millis)
    }
}

/// How a column is typed in Arrow/Parquet and written in CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text.
    Text,
    /// JSON text (UTF-8 in Parquet; written compact in CSV so it stays on one line).
    Json,
    /// Signed 64-bit integer (Athena BIGINT; no unsigned types, which Athena cannot read).
    Int,
    /// 64-bit float.
    Float,
    /// Boolean, never null (the pipeline's own flags).
    Bool,
    /// Boolean from the event, null when absent or not a boolean.
    OptBool,
    /// INT64 TIMESTAMP(MILLIS, UTC).
    Timestamp,
}

/// One column's value for one row, borrowed from the row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'r> {
    Text(Option<&'r str>),
    Int(Option<i64>),
    Float(Option<f64>),
    Bool(bool),
    OptBool(Option<bool>),
    Millis(Option<i64>),
}

impl Value<'_> {
    /// Whether the value is a null (a never-null flag never is).
    pub fn is_null(self) -> bool {
        matches!(
            self,
            Value::Text(None)
                | Value::Int(None)
                | Value::Float(None)
                | Value::OptBool(None)
                | Value::Millis(None)
        )
    }
}

pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// How Parquet stores it.
    pub encoding: Encoding,
    pub read: for<'r, 'a> fn(&'r Row<'a>) -> Value<'r>,
}

/// A column's Parquet encoding choices, measured on the writer's files (BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// Dictionary-encoded. Off where a value is (nearly) unique per row: a dictionary then only
    /// costs time (every value is hashed, then the column falls back to plain) and bytes.
    pub dictionary: bool,
    /// zstd-compressed. On for the columns that carry a file's bytes (~95 % of them); the
    /// rest, small once dictionary- and RLE-encoded, are stored uncompressed: a compressor
    /// context per column chunk was a fifth of the writer's time on files of a few hundred
    /// rows.
    pub compressed: bool,
    /// Min/max statistics per column chunk (off where they prune nothing: whole documents).
    pub statistics: bool,
}

impl Encoding {
    const fn new(dictionary: bool, compressed: bool, statistics: bool) -> Self {
        Self {
            dictionary,
            compressed,
            statistics,
        }
    }

    /// Low-cardinality or mostly-null: dictionary, uncompressed.
    pub const DICT: Self = Self::new(true, false, true);
    /// Repetitive but bulky text: dictionary and zstd.
    pub const DICT_ZSTD: Self = Self::new(true, true, true);
    /// Unique per row and bulky: zstd, no dictionary.
    pub const UNIQUE_ZSTD: Self = Self::new(false, true, true);
    /// Unique per row and small (coordinates): neither.
    pub const UNIQUE: Self = Self::new(false, false, true);
    /// Whole JSON documents: zstd, no dictionary, no statistics.
    pub const DOCUMENT: Self = Self::new(false, true, false);
}

macro_rules! columns {
    ($(#[$doc:meta])* $($name:literal $kind:ident $encoding:ident |$r:ident| $read:expr;)*) => {
        $(#[$doc])*
        pub static COLUMNS: &[Column] = &[$(Column {
            name: $name,
            kind: Kind::$kind,
            encoding: Encoding::$encoding,
            read: |$r| $read,
        },)*];

        /// The columns that hold a value in `row` (bit n: `COLUMNS[n]`), each read inline: what
        /// the encoders ask first of a file's rows, so a column null in all of them (most of the
        /// 91 for any one type) is not read again row by row through `Column::read`.
        pub fn present_columns(row: &Row<'_>) -> u128 {
            let mut present = 0u128;
            let mut bit = 0u32;
            $(
                {
                    let $r = row;
                    if !Value::is_null($read) {
                        present |= 1u128 << bit;
                    }
                    bit += 1;
                }
            )*
            let _ = bit;
            present
        }
    };
}

// Every column has a bit in a u128 mask.
const _: () = assert!(COLUMNS.len() <= 128);

columns! {
/// The columns, in file order. Add new ones at the end: Athena maps Parquet columns by name and
/// CSV columns by position.
    "event_id" Text UNIQUE_ZSTD |r| Value::Text(r.event.fields.event_id.as_deref());
    "type" Text DICT |r| Value::Text(Some(&r.event.head.event_type));
    "event_class" Text DICT |r| Value::Text(Some(&r.event.head.class));
    "timestamp" Timestamp UNIQUE_ZSTD |r| Value::Millis(r.event.timestamp_millis());
    "timestamp_unparsed" Bool DICT |r| Value::Bool(r.event.timestamp_millis().is_none());
    "message_id" Text UNIQUE_ZSTD |r| Value::Text(r.event.fields.message_id.as_deref());
    "transmission_id" Text DICT_ZSTD |r| Value::Text(r.event.fields.transmission_id.as_deref());
    "campaign_id" Text DICT |r| Value::Text(r.event.fields.campaign_id.as_deref());
    "template_id" Text DICT |r| Value::Text(r.event.fields.template_id.as_deref());
    "template_version" Text DICT |r| Value::Text(r.event.fields.template_version.as_deref());
    "subaccount_id" Int DICT |r| Value::Int(r.event.fields.subaccount_id.0);
    "customer_id" Int DICT |r| Value::Int(r.event.fields.customer_id.0);
    "rcpt_to" Text UNIQUE_ZSTD |r| Value::Text(r.event.fields.rcpt_to.as_deref());
    "raw_rcpt_to" Text UNIQUE_ZSTD |r| Value::Text(r.event.fields.raw_rcpt_to.as_deref());
    "rcpt_type" Text DICT |r| Value::Text(r.event.fields.rcpt_type.as_deref());
    "msg_from" Text DICT_ZSTD |r| Value::Text(r.event.fields.msg_from.as_deref());
    "friendly_from" Text DICT_ZSTD |r| Value::Text(r.event.fields.friendly_from.as_deref());
    "subject" Text DICT_ZSTD |r| Value::Text(r.event.fields.subject.as_deref());
    "ip_pool" Text DICT |r| Value::Text(r.event.fields.ip_pool.as_deref());
    "sending_ip" Text DICT |r| Value::Text(r.event.fields.sending_ip.as_deref());
    "routing_domain" Text DICT |r| Value::Text(r.event.fields.routing_domain.as_deref());
    "delv_method" Text DICT |r| Value::Text(r.event.fields.delv_method.as_deref());
    "bounce_class" Int DICT |r| Value::Int(r.event.fields.bounce_class.0);
    "reason" Text DICT_ZSTD |r| Value::Text(r.event.fields.reason.as_deref());
    "raw_reason" Text DICT_ZSTD |r| Value::Text(r.event.fields.raw_reason.as_deref());
    "error_code" Int DICT |r| Value::Int(r.event.fields.error_code.0);
    "num_retries" Int DICT |r| Value::Int(r.event.fields.num_retries.0);
    "queue_time" Int DICT_ZSTD |r| Value::Int(r.event.fields.queue_time.0);
    "msg_size" Int DICT_ZSTD |r| Value::Int(r.event.fields.msg_size.0);
    "user_agent" Text DICT_ZSTD |r| Value::Text(r.event.fields.user_agent.as_deref());
    "ip_address" Text UNIQUE_ZSTD |r| Value::Text(r.event.fields.ip_address.as_deref());
    "target_link_name" Text DICT |r| Value::Text(r.event.fields.target_link_name.as_deref());
    "target_link_url" Text DICT_ZSTD |r| Value::Text(r.event.fields.target_link_url.as_deref());
    "geo_country" Text DICT |r| Value::Text(r.event.fields.geo_ip.country.as_deref());
    "geo_region" Text DICT |r| Value::Text(r.event.fields.geo_ip.region.as_deref());
    "geo_city" Text DICT |r| Value::Text(r.event.fields.geo_ip.city.as_deref());
    "geo_zip" Text DICT |r| Value::Text(r.event.fields.geo_ip.zip.as_deref());
    "geo_latitude" Float UNIQUE |r| Value::Float(r.event.fields.geo_ip.latitude.0);
    "geo_longitude" Float UNIQUE |r| Value::Float(r.event.fields.geo_ip.longitude.0);
    "relay_id" Text DICT |r| Value::Text(r.event.fields.relay_id.as_deref());
    "sms_src" Text DICT |r| Value::Text(r.event.fields.sms_src.as_deref());
    "sms_dst" Text DICT |r| Value::Text(r.event.fields.sms_dst.as_deref());
    "rcpt_tags" Json DICT_ZSTD |r| Value::Text(r.event.fields.rcpt_tags.as_str());
    "rcpt_meta" Json UNIQUE_ZSTD |r| Value::Text(r.event.fields.rcpt_meta.as_str());
    "batch_id" Text DICT |r| Value::Text(r.batch_id);
    "received_at" Timestamp DICT |r| Value::Millis(Some(r.received_at));
    "raw" Json DOCUMENT |r| Value::Text(Some(r.event.raw));
    // Appended in 2026-12 (CSV is read by position: new columns only ever go last).
    "timestamp_implausible" Bool DICT |r| Value::Bool(r.timestamp_implausible);
    "mailbox_provider" Text DICT |r| Value::Text(f(r).mailbox_provider.as_deref());
    "mailbox_provider_region" Text DICT |r| Value::Text(f(r).mailbox_provider_region.as_deref());
    "recipient_domain" Text DICT |r| Value::Text(f(r).recipient_domain.as_deref());
    "sending_domain" Text DICT |r| Value::Text(f(r).sending_domain.as_deref());
    "injection_time" Timestamp UNIQUE_ZSTD |r| Value::Millis(f(r).injection_time.0);
    "scheduled_time" Timestamp DICT |r| Value::Millis(f(r).scheduled_time.0);
    "outbound_tls" Int DICT |r| Value::Int(f(r).outbound_tls.0);
    "recv_method" Text DICT |r| Value::Text(f(r).recv_method.as_deref());
    "click_tracking" OptBool DICT |r| Value::OptBool(f(r).click_tracking.0);
    "open_tracking" OptBool DICT |r| Value::OptBool(f(r).open_tracking.0);
    "initial_pixel" OptBool DICT |r| Value::OptBool(f(r).initial_pixel.0);
    "amp_enabled" OptBool DICT |r| Value::OptBool(f(r).amp_enabled.0);
    "transactional" OptBool DICT |r| Value::OptBool(f(r).transactional.0);
    "rcpt_hash" Text UNIQUE_ZSTD |r| Value::Text(f(r).rcpt_hash.as_deref());
    "ab_test_id" Text DICT |r| Value::Text(f(r).ab_test_id.as_deref().or(f(r).ab_test.id.as_deref()));
    "ab_test_version" Int DICT |r| Value::Int(f(r).ab_test_version.0.or(f(r).ab_test.version.0));
    "device_token" Text UNIQUE_ZSTD |r| Value::Text(f(r).device_token.as_deref());
    "sms_segments" Int DICT |r| Value::Int(f(r).sms_segments.0);
    "sms_coding" Text DICT |r| Value::Text(f(r).sms_coding.as_deref());
    "sms_src_npi" Text DICT |r| Value::Text(f(r).sms_src_npi.as_deref());
    "sms_src_ton" Text DICT |r| Value::Text(f(r).sms_src_ton.as_deref());
    "sms_dst_npi" Text DICT |r| Value::Text(f(r).sms_dst_npi.as_deref());
    "sms_dst_ton" Text DICT |r| Value::Text(f(r).sms_dst_ton.as_deref());
    "sms_remoteids" Json DICT_ZSTD |r| Value::Text(f(r).sms_remoteids.as_str());
    "fbtype" Text DICT |r| Value::Text(f(r).fbtype.as_deref());
    "report_by" Text DICT |r| Value::Text(f(r).report_by.as_deref());
    "report_to" Text DICT |r| Value::Text(f(r).report_to.as_deref());
    "ab_test_name" Text DICT |r| Value::Text(f(r).ab_test.name.as_deref());
    "ab_test_mode" Text DICT |r| Value::Text(f(r).ab_test.test_mode.as_deref());
    "ab_test_engagement_metric" Text DICT |r| Value::Text(f(r).ab_test.engagement_metric.as_deref());
    "ab_test_winning_template_id" Text DICT |r| Value::Text(f(r).ab_test.winning_template_id.as_deref());
    "ab_test_default_template_id" Text DICT |r| Value::Text(f(r).ab_test.default_template_id.as_deref());
    "ab_test" Json DICT_ZSTD |r| Value::Text(f(r).ab_test.json.as_str());
    "ingest_batch_id" Text DICT |r| Value::Text(f(r).ingest_batch_id.as_deref());
    "number_succeeded" Int DICT |r| Value::Int(f(r).number_succeeded.0);
    "number_failed" Int DICT |r| Value::Int(f(r).number_failed.0);
    "number_duplicates" Int DICT |r| Value::Int(f(r).number_duplicates.0);
    "error_type" Text DICT |r| Value::Text(f(r).error_type.as_deref());
    "retryable" OptBool DICT |r| Value::OptBool(f(r).retryable.0);
    "expiration_timestamp" Timestamp DICT |r| Value::Millis(f(r).expiration_timestamp.0);
    "ingest_href" Text DICT |r| Value::Text(f(r).ingest_href.as_deref());
}

/// The typed fields of a row's event (keeps the column table on one line per column).
fn f<'r, 'a>(row: &'r Row<'a>) -> &'r crate::event::Fields<'a> {
    &row.event.fields
}

/// The Arrow schema of [`COLUMNS`], built once.
pub fn schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(
            COLUMNS
                .iter()
                .map(|c| Field::new(c.name, data_type(c.kind), c.kind != Kind::Bool))
                .collect::<Vec<_>>(),
        ))
    });
    SCHEMA.clone()
}

/// The Athena (Hive DDL) type a column has in the Glue tables over the output.
pub fn athena_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Text | Kind::Json => "string",
        Kind::Int => "bigint",
        Kind::Float => "double",
        Kind::Bool | Kind::OptBool => "boolean",
        Kind::Timestamp => "timestamp",
    }
}

pub fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Text | Kind::Json => DataType::Utf8,
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Bool | Kind::OptBool => DataType::Boolean,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
    }
}
