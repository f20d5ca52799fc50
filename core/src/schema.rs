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
}

impl<'a> Row<'a> {
    /// Event type and the event's UTC date, or the receive date when its time is unreadable.
    pub fn partition(&self) -> Partition<'a> {
        Partition {
            event_type: self.event.head.event_type.clone(),
            dt: timestamp::date_of(self.event.timestamp_millis().unwrap_or(self.received_at)),
        }
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
    /// Boolean, never null.
    Bool,
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
    Millis(Option<i64>),
}

pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub read: for<'r, 'a> fn(&'r Row<'a>) -> Value<'r>,
}

macro_rules! columns {
    ($($name:literal $kind:ident |$r:ident| $read:expr;)*) => {
        &[$(Column { name: $name, kind: Kind::$kind, read: |$r| $read },)*]
    };
}

/// The columns, in file order. Add new ones at the end: Athena maps Parquet columns by name and
/// CSV columns by position.
pub static COLUMNS: &[Column] = columns! {
    "event_id" Text |r| Value::Text(r.event.fields.event_id.as_deref());
    "type" Text |r| Value::Text(Some(&r.event.head.event_type));
    "event_class" Text |r| Value::Text(Some(&r.event.head.class));
    "timestamp" Timestamp |r| Value::Millis(r.event.timestamp_millis());
    "timestamp_unparsed" Bool |r| Value::Bool(r.event.timestamp_millis().is_none());
    "message_id" Text |r| Value::Text(r.event.fields.message_id.as_deref());
    "transmission_id" Text |r| Value::Text(r.event.fields.transmission_id.as_deref());
    "campaign_id" Text |r| Value::Text(r.event.fields.campaign_id.as_deref());
    "template_id" Text |r| Value::Text(r.event.fields.template_id.as_deref());
    "template_version" Text |r| Value::Text(r.event.fields.template_version.as_deref());
    "subaccount_id" Int |r| Value::Int(r.event.fields.subaccount_id.0);
    "customer_id" Int |r| Value::Int(r.event.fields.customer_id.0);
    "rcpt_to" Text |r| Value::Text(r.event.fields.rcpt_to.as_deref());
    "raw_rcpt_to" Text |r| Value::Text(r.event.fields.raw_rcpt_to.as_deref());
    "rcpt_type" Text |r| Value::Text(r.event.fields.rcpt_type.as_deref());
    "msg_from" Text |r| Value::Text(r.event.fields.msg_from.as_deref());
    "friendly_from" Text |r| Value::Text(r.event.fields.friendly_from.as_deref());
    "subject" Text |r| Value::Text(r.event.fields.subject.as_deref());
    "ip_pool" Text |r| Value::Text(r.event.fields.ip_pool.as_deref());
    "sending_ip" Text |r| Value::Text(r.event.fields.sending_ip.as_deref());
    "routing_domain" Text |r| Value::Text(r.event.fields.routing_domain.as_deref());
    "delv_method" Text |r| Value::Text(r.event.fields.delv_method.as_deref());
    "bounce_class" Int |r| Value::Int(r.event.fields.bounce_class.0);
    "reason" Text |r| Value::Text(r.event.fields.reason.as_deref());
    "raw_reason" Text |r| Value::Text(r.event.fields.raw_reason.as_deref());
    "error_code" Int |r| Value::Int(r.event.fields.error_code.0);
    "num_retries" Int |r| Value::Int(r.event.fields.num_retries.0);
    "queue_time" Int |r| Value::Int(r.event.fields.queue_time.0);
    "msg_size" Int |r| Value::Int(r.event.fields.msg_size.0);
    "user_agent" Text |r| Value::Text(r.event.fields.user_agent.as_deref());
    "ip_address" Text |r| Value::Text(r.event.fields.ip_address.as_deref());
    "target_link_name" Text |r| Value::Text(r.event.fields.target_link_name.as_deref());
    "target_link_url" Text |r| Value::Text(r.event.fields.target_link_url.as_deref());
    "geo_country" Text |r| Value::Text(r.event.fields.geo_ip.country.as_deref());
    "geo_region" Text |r| Value::Text(r.event.fields.geo_ip.region.as_deref());
    "geo_city" Text |r| Value::Text(r.event.fields.geo_ip.city.as_deref());
    "geo_zip" Text |r| Value::Text(r.event.fields.geo_ip.zip.as_deref());
    "geo_latitude" Float |r| Value::Float(r.event.fields.geo_ip.latitude.0);
    "geo_longitude" Float |r| Value::Float(r.event.fields.geo_ip.longitude.0);
    "relay_id" Text |r| Value::Text(r.event.fields.relay_id.as_deref());
    "sms_src" Text |r| Value::Text(r.event.fields.sms_src.as_deref());
    "sms_dst" Text |r| Value::Text(r.event.fields.sms_dst.as_deref());
    "rcpt_tags" Json |r| Value::Text(r.event.fields.rcpt_tags.as_str());
    "rcpt_meta" Json |r| Value::Text(r.event.fields.rcpt_meta.as_str());
    "batch_id" Text |r| Value::Text(r.batch_id);
    "received_at" Timestamp |r| Value::Millis(Some(r.received_at));
    "raw" Json |r| Value::Text(Some(r.event.raw));
};

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
        Kind::Bool => "boolean",
        Kind::Timestamp => "timestamp",
    }
}

pub fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Text | Kind::Json => DataType::Utf8,
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
    }
}
