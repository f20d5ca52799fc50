//! Where an event is written: Hive-style `event_type=<type>/dt=<YYYY-MM-DD>` partitions, and
//! object names derived from content so a retried batch overwrites instead of duplicating.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

/// The partition of one event: its type and its UTC date.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition<'a> {
    pub event_type: Cow<'a, str>,
    pub dt: NaiveDate,
}

/// An output format and where its objects go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Parquet, Format::Csv];

    /// Top-level folder and file extension.
    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// `<format>/event_type=<type>/dt=<YYYY-MM-DD>/<name>.<format>`.
pub fn object_key(format: Format, partition: &Partition<'_>, name: &str) -> String {
    format!(
        "{f}/event_type={t}/dt={d}/{name}.{f}",
        f = format.name(),
        t = escape_path_value(&partition.event_type),
        d = partition.dt.format("%Y-%m-%d"),
    )
}

/// Escapes a partition value the way Hive does (`%XX`), keeping only `[A-Za-z0-9_-]` as is, so
/// an unknown type from outside can never make a path of its own (`..`, `/`).
pub fn escape_path_value(value: &str) -> Cow<'_, str> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if !value.is_empty() && value.bytes().all(safe) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if safe(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

/// A name derived from the queue message ids a group of rows came from: the same messages give
/// the same name, whatever order they arrive in.
pub fn content_name<'i>(message_ids: impl IntoIterator<Item = &'i str>) -> String {
    let mut ids: Vec<&str> = message_ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut hasher = Sha256::new();
    for id in ids {
        hasher.update(id.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(t: &str) -> Partition<'_> {
        Partition {
            event_type: Cow::Borrowed(t),
            dt: NaiveDate::from_ymd_opt(2016, 2, 2).unwrap_or_default(),
        }
    }

    #[test]
    fn keys_are_hive_style_per_format() {
        let p = partition("bounce");
        assert_eq!(
            object_key(Format::Parquet, &p, "abc"),
            "parquet/event_type=bounce/dt=2016-02-02/abc.parquet"
        );
        assert_eq!(
            object_key(Format::Csv, &p, "abc"),
            "csv/event_type=bounce/dt=2016-02-02/abc.csv"
        );
    }

    #[test]
    fn hostile_types_cannot_escape_their_partition() {
        assert_eq!(escape_path_value("amp_open"), "amp_open");
        assert_eq!(escape_path_value("../../etc"), "%2E%2E%2F%2E%2E%2Fetc");
        assert_eq!(escape_path_value("a b=c"), "a%20b%3Dc");
        assert_eq!(escape_path_value("é"), "%C3%A9");
    }

    #[test]
    fn names_depend_on_the_set_of_ids_only() {
        let a = content_name(["m1", "m2"]);
        assert_eq!(a, content_name(["m2", "m1", "m2"]));
        assert_ne!(a, content_name(["m1"]));
        assert_eq!(a.len(), 32);
    }
}
