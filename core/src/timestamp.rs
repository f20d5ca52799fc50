//! Every timestamp form SparkPost has sent, read as UTC milliseconds since the epoch.
//!
//! Seen in the wild: a string of unix seconds (`"1454442600"`), a JSON integer, fractional
//! seconds, and ISO-8601 strings with or without an offset (`"2018-10-11T23:24:45.000+00:00"`).

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// Seconds values at or above this are taken as milliseconds (year 5138 in seconds).
const MILLIS_THRESHOLD: f64 = 100_000_000_000.0;
/// 9999-12-31T23:59:59.999Z: the latest instant a `YYYY` date can hold.
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// Reads a timestamp given as a string in any known form.
pub fn parse_str(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return text.parse::<f64>().ok().and_then(from_number);
    }
    parse_iso(text)
}

/// Reads a timestamp given as a JSON number: unix seconds, or milliseconds if implausibly large.
pub fn from_number(value: f64) -> Option<i64> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let millis = if value >= MILLIS_THRESHOLD {
        value
    } else {
        value * 1000.0
    };
    let millis = millis.round();
    // The cast is exact: the range check bounds it well inside i64.
    (millis <= MAX_MILLIS as f64).then_some(millis as i64)
}

fn parse_iso(text: &str) -> Option<i64> {
    let with_offset = DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%z"))
        .map(|t| t.timestamp_millis());
    let millis = with_offset.ok().or_else(|| {
        // No offset at all: SparkPost's times are UTC.
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
            .ok()
            .map(|t| t.and_utc().timestamp_millis())
    })?;
    (0..=MAX_MILLIS).contains(&millis).then_some(millis)
}

/// The UTC calendar date of an instant.
pub fn date_of(millis: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(millis)
        .unwrap_or(DateTime::UNIX_EPOCH)
        .date_naive()
}

/// `YYYY-MM-DD HH:MM:SS.mmm`, the text form Athena reads as a TIMESTAMP.
pub fn format_millis(millis: i64) -> String {
    let mut out = Vec::with_capacity(23);
    write_millis(&mut out, millis);
    // Only ASCII digits and separators are written.
    String::from_utf8(out).unwrap_or_default()
}

/// [`format_millis`] appended to `out` (the CSV encoder's, without a `String` per value).
pub fn write_millis(into: &mut Vec<u8>, millis: i64) {
    use chrono::{Datelike, Timelike};
    let t = DateTime::from_timestamp_millis(millis).unwrap_or(DateTime::UNIX_EPOCH);
    let year = t.year();
    if !(0..=9999).contains(&year) {
        into.extend_from_slice(t.format("%Y-%m-%d %H:%M:%S%.3f").to_string().as_bytes());
        return;
    }
    // Written by hand: chrono's `format` parses its pattern on every call, which showed in the
    // CSV encoder's profile.
    let mut out = [0u8; 23];
    let mut put = |at: usize, value: u32, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    put(11, t.hour(), 2);
    put(14, t.minute(), 2);
    put(17, t.second(), 2);
    put(20, t.timestamp_subsec_millis(), 3);
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b' '),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ] {
        out[at] = sep;
    }
    into.extend_from_slice(&out);
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEB_2_2016: i64 = 1_454_442_600_000;

    #[test]
    fn reads_every_form_sparkpost_sends() {
        assert_eq!(parse_str("1454442600"), Some(FEB_2_2016));
        assert_eq!(parse_str(" 1454442600 "), Some(FEB_2_2016));
        assert_eq!(parse_str("1454442600.25"), Some(FEB_2_2016 + 250));
        assert_eq!(parse_str("1454442600000"), Some(FEB_2_2016));
        assert_eq!(from_number(1_454_442_600.0), Some(FEB_2_2016));
        let oct_11 = 1_539_300_285_000;
        assert_eq!(parse_str("2018-10-11T23:24:45.000+00:00"), Some(oct_11));
        assert_eq!(parse_str("2018-10-11T23:24:45Z"), Some(oct_11));
        assert_eq!(parse_str("2018-10-11T23:24:45.000+0000"), Some(oct_11));
        assert_eq!(parse_str("2018-10-12T01:24:45+02:00"), Some(oct_11));
        assert_eq!(parse_str("2018-10-11T23:24:45.000"), Some(oct_11));
        assert_eq!(parse_str("2018-10-11 23:24:45"), Some(oct_11));
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "soon",
            "-5",
            "1.2.3",
            "2018-13-45T00:00:00Z",
            "99999999999999999999",
        ] {
            assert_eq!(parse_str(bad), None, "{bad:?}");
        }
        assert_eq!(from_number(f64::NAN), None);
        assert_eq!(from_number(-1.0), None);
    }

    #[test]
    fn dates_and_text_are_utc() {
        assert_eq!(date_of(FEB_2_2016).to_string(), "2016-02-02");
        assert_eq!(date_of(1_454_457_599_999).to_string(), "2016-02-02");
        assert_eq!(date_of(1_454_457_600_000).to_string(), "2016-02-03");
        assert_eq!(format_millis(FEB_2_2016 + 7), "2016-02-02 19:50:00.007");
        assert_eq!(format_millis(0), "1970-01-01 00:00:00.000");
        assert_eq!(
            format_millis(253_402_300_799_999),
            "9999-12-31 23:59:59.999"
        );
        for millis in [1, 999, 86_399_999, 951_782_400_123, 1_767_225_599_001] {
            let chrono = DateTime::from_timestamp_millis(millis)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string());
            assert_eq!(Some(format_millis(millis)), chrono, "{millis}");
        }
    }
}
