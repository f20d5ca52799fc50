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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
/// What ends a shortened value in a path: `%7E` (an escaped `~`) and 16 hex digits. Hive never
/// escapes `~`, so no whole value's path holds `%7E`: a shortened value can never equal a whole
/// one. Unescaped (by Hive, Spark, [`unescape_path_value`]) it reads `<prefix>~<hash>`.
const SHORTENED_MARK: &str = "%7E";
const HASH_SUFFIX_BYTES: usize = SHORTENED_MARK.len() + 16;

/// A partition value as it appears in a path: escaped as Hive escapes it
/// ([`escape_path_value`]) and, when `max_bytes` is set and the escaped value is longer, cut to
/// its first bytes (never inside an escape or a character) followed by `%7E` and the first 16
/// hex digits of the raw value's SHA-256, so different values keep different paths. Paths have
/// hard limits (a file name of 255 bytes on local filesystems, an S3 key of 1 024 bytes): an
/// event type from outside that escapes longer cannot be written at all unless shortened, while
/// the `type` column keeps it whole either way.
pub fn path_value(value: &str, max_bytes: Option<usize>) -> Cow<'_, str> {
    let escaped = escape_path_value(value);
    let Some(max) = max_bytes.map(|m| m.max(MIN_PARTITION_VALUE_BYTES)) else {
        return escaped;
    };
    if escaped.len() <= max {
        return escaped;
    }
    let mut cut = max - HASH_SUFFIX_BYTES;
    while !escaped.is_char_boundary(cut) {
        cut -= 1;
    }
    // Escapes are `%XX`: back off to the start of one cut through.
    if let Some(percent) = escaped[cut.saturating_sub(2)..cut].rfind('%') {
        cut = cut.saturating_sub(2) + percent;
    }
    let digest = Sha256::digest(value.as_bytes());
    Cow::Owned(format!(
        "{}{SHORTENED_MARK}{}",
        &escaped[..cut],
        hex::encode(&digest[..8])
    ))
}

/// Whether Hive escapes a character in a partition value (`FileUtils.charToEscape`, Hive 2.x to
/// 4.x, as Spark's `ExternalCatalogUtils` copies it): the control characters U+0000–U+001F,
/// `"` `#` `%` `'` `*` `/` `:` `=` `?` `\` U+007F `{` `[` `]` `^`. Everything else, spaces,
/// `.`, `,` and non-ASCII text included, stays as it is.
pub fn hive_escapes(c: char) -> bool {
    matches!(
        c,
        '\u{0}'
            ..='\u{1F}'
                | '"'
                | '#'
                | '%'
                | '\''
                | '*'
                | '/'
                | ':'
                | '='
                | '?'
                | '\\'
                | '\u{7F}'
                | '{'
                | '['
                | ']'
                | '^'
    )
}

/// Escapes a partition value exactly as Hive's `FileUtils.escapePathName` does: each character
/// [`hive_escapes`] becomes `%XX` (upper-case hex). So the folders Hive's `ADD PARTITION` and
/// `MSCK REPAIR TABLE` compute are the ones written, and an unknown type from outside still
/// cannot make a path of its own: `/` is escaped, and a value is always behind
/// `event_type=`, so no path segment is ever `.` or `..`. (Hive writes an empty value as
/// `__HIVE_DEFAULT_PARTITION__`; an event type is never empty.)
pub fn escape_path_value(value: &str) -> Cow<'_, str> {
    if !value.chars().any(hive_escapes) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if hive_escapes(c) {
            let _ = write!(out, "%{:02X}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The value a path segment stands for, as Hive's `FileUtils.unescapePathName` reads it: every
/// `%` followed by two hex digits is the character of that code (U+0000–U+00FF), anything else
/// is itself. The inverse of [`escape_path_value`].
pub fn unescape_path_value(segment: &str) -> Cow<'_, str> {
    if !segment.contains('%') {
        return Cow::Borrowed(segment);
    }
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 3)
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match code {
            Some(code) => {
                out.push(char::from(code));
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
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
        assert_eq!(escape_path_value("../../etc"), "..%2F..%2Fetc");
        assert_eq!(escape_path_value("a b=c"), "a b%3Dc");
        assert_eq!(escape_path_value("nul\0"), "nul%00");
        // Every escaped value is one folder: no `/`, no NUL, and never `.` or `..` whole.
        for hostile in ["..", ".", "/", "a/../b", "\\..\\", "\0"] {
            let key = object_key(Format::Csv, &partition(hostile), "x");
            let segments: Vec<&str> = key.split('/').collect();
            assert_eq!(segments.len(), 4, "{key}");
            assert!(segments[1].starts_with("event_type=") && !segments[1].contains('\0'));
        }
    }

    /// Hive's `FileUtils.charToEscape`, written out apart from [`hive_escapes`]: the 32
    /// control characters and `"#%'*/:=?\` DEL `{[]^`. Every other character of the Basic
    /// Multilingual Plane (and beyond) stays as it is.
    #[test]
    fn escaping_is_hive_s_for_every_character() {
        let documented: Vec<char> = (0u8..0x20)
            .map(char::from)
            .chain("\"#%'*/:=?\\\u{7F}{[]^".chars())
            .collect();
        for code in (0..=0x2FFFF_u32).chain([0x10FFFF]) {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let text = c.to_string();
            let escaped = escape_path_value(&text);
            if documented.contains(&c) {
                assert_eq!(escaped, format!("%{code:02X}"), "U+{code:04X}");
            } else {
                assert_eq!(escaped, text, "U+{code:04X} must stay as it is");
            }
            assert_eq!(
                unescape_path_value(&escaped),
                text,
                "U+{code:04X} round trip"
            );
        }
        // What Hive's own ADD PARTITION creates for the values it was tried with.
        assert_eq!(escape_path_value("odd.type"), "odd.type");
        assert_eq!(escape_path_value("type with space"), "type with space");
        assert_eq!(escape_path_value("c,d"), "c,d");
        assert_eq!(escape_path_value("ünï"), "ünï");
        assert_eq!(escape_path_value("a:b/c=d%"), "a%3Ab%2Fc%3Dd%25");
        assert_eq!(
            escape_path_value("[x]{y}^'\"*#?"),
            "%5Bx%5D%7By}%5E%27%22%2A%23%3F"
        );
    }

    #[test]
    fn unescaping_reads_what_hive_reads() {
        assert_eq!(unescape_path_value("a%3Db%2Fc"), "a=b/c");
        // Lower-case hex is read too; a `%` without two hex digits is itself.
        assert_eq!(unescape_path_value("%3d%zz%4"), "=%zz%4");
        assert_eq!(unescape_path_value("100%"), "100%");
        // Hive reads each `%XX` as one character of that code, not as UTF-8 bytes: percent-
        // encoded UTF-8 (what earlier versions wrote) does not come back as the text.
        assert_eq!(unescape_path_value("%C3%BC"), "\u{C3}\u{BC}");
        assert_eq!(unescape_path_value("ünï"), "ünï");
    }

    #[test]
    fn over_long_values_are_shortened_only_when_asked() {
        let long = "relay_forwarded_".repeat(20);
        let p = partition(&long);
        // Off: the value is whole, and too long for a file name on most filesystems.
        let whole = object_key(Format::Parquet, &p, "abc");
        assert!(whole.contains(&format!("event_type={long}/")));
        // On: a prefix, `%7E` and a hash, within the limit.
        let short = path_value(&long, Some(64));
        assert_eq!(short.len(), 64);
        assert!(short.starts_with(&format!("{}%7E", &long[..64 - 19])));
        assert_eq!(
            object_key_within(Format::Csv, &p, "abc", Some(64)),
            format!("csv/event_type={short}/dt=2016-02-02/abc.csv")
        );
        // Distinct values stay distinct; short values are untouched.
        let other = "relay_forwarded_".repeat(21);
        assert_ne!(path_value(&other, Some(64)), short);
        assert_eq!(path_value("bounce", Some(64)), "bounce");
        // A cut never splits an escape or a character, and a tiny limit is raised to the
        // minimum.
        let escapes = "=".repeat(40);
        let cut = path_value(&escapes, Some(40));
        let head = cut.strip_suffix(&cut[cut.len() - 16..]).unwrap_or_default();
        let head = head.strip_suffix(SHORTENED_MARK).unwrap_or_default();
        assert!(head.len().is_multiple_of(3) && head.matches("%3D").count() == head.len() / 3);
        let accents = "é".repeat(40);
        let cut = path_value(&accents, Some(40));
        assert!(cut.len() <= 40 && cut.starts_with("éé"), "{cut}");
        let tiny = path_value(&escapes, Some(1)).len();
        assert!((MIN_PARTITION_VALUE_BYTES - 2..=MIN_PARTITION_VALUE_BYTES).contains(&tiny));
        // A whole value never holds the mark: `~` is not escaped, `%` always is.
        assert_eq!(escape_path_value("a~b"), "a~b");
        assert_eq!(escape_path_value("a%7Eb"), "a%257Eb");
        assert_eq!(unescape_path_value(&short).matches('~').count(), 1);
    }

    #[test]
    fn names_depend_on_the_set_of_ids_only() {
        let a = content_name(["m1", "m2"]);
        assert_eq!(a, content_name(["m2", "m1", "m2"]));
        assert_ne!(a, content_name(["m1"]));
        assert_eq!(a.len(), 32);
    }
}
