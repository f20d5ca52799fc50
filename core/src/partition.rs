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
    object_key_within(format, partition, name, None)
}

/// [`object_key`] with the event type's path value at most `max_value_bytes` long (see
/// [`path_value`]); `None` keeps every value whole.
pub fn object_key_within(
    format: Format,
    partition: &Partition<'_>,
    name: &str,
    max_value_bytes: Option<usize>,
) -> String {
    format!(
        "{f}/event_type={t}/dt={d}/{name}.{f}",
        f = format.name(),
        t = path_value(&partition.event_type, max_value_bytes),
        d = partition.dt.format("%Y-%m-%d"),
    )
}

/// The smallest `SPARKLAKE_PARTITION_VALUE_MAX_BYTES`: room for a prefix and the hash.
pub const MIN_PARTITION_VALUE_BYTES: usize = 32;
/// `~` and 16 hex digits.
const HASH_SUFFIX_BYTES: usize = 17;

/// A partition value as it appears in a path: escaped ([`escape_path_value`]) and, when
/// `max_bytes` is set and the escaped value is longer, cut to its first bytes (never inside a
/// `%XX`) followed by `~` and the first 16 hex digits of the raw value's SHA-256. `~` is always
/// escaped in a value, so a shortened value can never equal a whole one, and different values
/// keep different paths. Paths have hard limits (a file name of 255 bytes on local filesystems,
/// an S3 key of 1 024 bytes): an event type from outside that escapes longer cannot be written
/// at all unless shortened, while the `type` column keeps it whole either way.
pub fn path_value(value: &str, max_bytes: Option<usize>) -> Cow<'_, str> {
    let escaped = escape_path_value(value);
    let Some(max) = max_bytes.map(|m| m.max(MIN_PARTITION_VALUE_BYTES)) else {
        return escaped;
    };
    if escaped.len() <= max {
        return escaped;
    }
    let mut cut = max - HASH_SUFFIX_BYTES;
    // Escapes are `%XX`: back off to the start of one cut through.
    if let Some(percent) = escaped[cut.saturating_sub(2)..cut].rfind('%') {
        cut = cut.saturating_sub(2) + percent;
    }
    let digest = Sha256::digest(value.as_bytes());
    Cow::Owned(format!("{}~{}", &escaped[..cut], hex::encode(&digest[..8])))
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
    fn over_long_values_are_shortened_only_when_asked() {
        let long = "relay_forwarded_".repeat(20);
        let p = partition(&long);
        // Off: the value is whole, and too long for a file name on most filesystems.
        let whole = object_key(Format::Parquet, &p, "abc");
        assert!(whole.contains(&format!("event_type={long}/")));
        // On: a prefix, `~` and a hash, within the limit.
        let short = path_value(&long, Some(64));
        assert_eq!(short.len(), 64);
        assert!(short.starts_with("relay_forwarded_relay_forwarded_relay_forwarded~"));
        assert_eq!(
            object_key_within(Format::Csv, &p, "abc", Some(64)),
            format!("csv/event_type={short}/dt=2016-02-02/abc.csv")
        );
        // Distinct values stay distinct; short values are untouched.
        let other = "relay_forwarded_".repeat(21);
        assert_ne!(path_value(&other, Some(64)), short);
        assert_eq!(path_value("bounce", Some(64)), "bounce");
        // A cut never splits an escape, and a tiny limit is raised to the minimum.
        let accents = "é".repeat(40);
        let cut = path_value(&accents, Some(40));
        let head = cut.split('~').next().unwrap_or_default();
        assert!(
            head.len().is_multiple_of(3)
                && head.chars().filter(|c| *c == '%').count() == head.len() / 3
        );
        assert_eq!(
            path_value(&accents, Some(1)).len(),
            MIN_PARTITION_VALUE_BYTES
        );
        // A literal `~` is escaped, so no whole value looks shortened.
        assert_eq!(escape_path_value("a~b"), "a%7Eb");
    }

    #[test]
    fn names_depend_on_the_set_of_ids_only() {
        let a = content_name(["m1", "m2"]);
        assert_eq!(a, content_name(["m2", "m1", "m2"]));
        assert_ne!(a, content_name(["m1"]));
        assert_eq!(a.len(), 32);
    }
}
