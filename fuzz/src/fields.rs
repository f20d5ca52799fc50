//! The field-level reference: each column of a row restated from the element's JSON tree
//! ([`crate::reference`]) with SparkPost's drift rules, independently of `core/src/event.rs`.

use sparklake_core::schema::{COLUMNS, Row, Value};

use crate::field_lists::*;
use crate::reference::J;

pub(crate) fn column<'r>(row: &'r Row<'_>, name: &str) -> Value<'r> {
    let c = COLUMNS
        .iter()
        .find(|c| c.name == name)
        .expect("a known column");
    (c.read)(row)
}

/// The drift rules, restated on the reference tree: what each column must hold.
pub(crate) fn check_fields(row: &Row<'_>) {
    check_lists_cover_the_schema();
    let Some(tree) = J::parse(row.event.raw) else {
        return; // a number beyond f64: see `J::out_of_range`
    };
    let J::Obj(element) = &tree else {
        panic!("element is not an object")
    };
    let Some((_, J::Obj(msys))) = element.iter().find(|(k, _)| k == "msys") else {
        panic!("no msys")
    };
    let Some((_, J::Obj(body))) = msys.first() else {
        panic!("no class body")
    };
    let known = |k: &str| {
        TEXT_FIELDS.contains(&k)
            || RENAMED_TEXT_FIELDS.iter().any(|(key, _)| *key == k)
            || INT_FIELDS.contains(&k)
            || JSON_FIELDS.contains(&k)
            || FLAG_FIELDS.contains(&k)
            || TIME_FIELDS.contains(&k)
            || [
                "timestamp",
                "geo_ip",
                "ab_test",
                "ab_test_id",
                "ab_test_version",
            ]
            .contains(&k)
    };
    let get = |name: &str| body.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let geo_duplicate = match get("geo_ip") {
        Some(J::Obj(geo)) => has_duplicate(geo.iter().map(|(k, _)| k.as_str()), &|k| {
            GEO_FIELDS.contains(&k)
        }),
        _ => false,
    };
    // A repeated field makes the fields unreadable: the event keeps its head and raw text only.
    let unreadable = has_duplicate(body.iter().map(|(k, _)| k.as_str()), &known) || geo_duplicate;
    let lookup = |name: &str| if unreadable { None } else { get(name) };

    for name in TEXT_FIELDS {
        assert_text(
            column(row, name),
            lookup(name),
            &format!("text field {name}"),
        );
    }
    for name in INT_FIELDS {
        assert_int(
            column(row, name),
            lookup(name),
            &format!("int field {name}"),
        );
    }
    for name in JSON_FIELDS {
        let got = match column(row, name) {
            Value::Text(t) => t.map(|t| J::parse(t).expect("a JSON column holds JSON")),
            other => panic!("{name} is {other:?}"),
        };
        let expected = lookup(name).filter(|v| **v != J::Null).cloned();
        assert_eq!(got, expected, "JSON field {name}");
    }
    let geo = match lookup("geo_ip") {
        Some(J::Obj(geo)) => Some(geo),
        _ => None,
    };
    let geo_get = |k: &str| geo.and_then(|g| g.iter().find(|(n, _)| n == k).map(|(_, v)| v));
    for (column_name, key) in [
        ("geo_country", "country"),
        ("geo_region", "region"),
        ("geo_city", "city"),
    ] {
        assert_text(column(row, column_name), geo_get(key), column_name);
    }
    let zip = geo_get("zip")
        .filter(|v| text_of(v).is_some())
        .or_else(|| geo_get("postal_code"));
    assert_text(column(row, "geo_zip"), zip, "geo_zip");

    for (key, name) in RENAMED_TEXT_FIELDS {
        assert_text(column(row, name), lookup(key), &format!("text field {key}"));
    }
    for name in FLAG_FIELDS {
        if let Some(J::F(_)) = lookup(name) {
            // A float's text is not in the tree (`1.0` and `1.0000000000000000001` are both
            // 1.0 there): only integers and strings are judged.
            continue;
        }
        assert_eq!(
            column(row, name),
            Value::OptBool(lookup(name).and_then(flag_of)),
            "flag field {name}"
        );
    }
    for name in TIME_FIELDS {
        let got = column(row, name);
        let Value::Millis(got) = got else {
            panic!("{name} is {got:?}")
        };
        if !matches!(lookup(name), Some(J::Str(_) | J::I(_) | J::U(_) | J::F(_))) {
            assert_eq!(got, None, "time field {name}: not a string or a number");
        }
    }
    // The A/B test object: an object's scalars in their columns and its text whole, anything
    // else nothing. A repeated key inside it loses its scalars only (the object is kept).
    let ab_test = match lookup("ab_test") {
        Some(J::Obj(object)) => Some(object),
        _ => None,
    };
    let ab_duplicate = ab_test.is_some_and(|o| {
        has_duplicate(o.iter().map(|(k, _)| k.as_str()), &|k| {
            [
                "id",
                "name",
                "version",
                "test_mode",
                "engagement_metric",
                "winning_template_id",
                "default_template",
            ]
            .contains(&k)
        })
    });
    let ab_get = |k: &str| {
        ab_test
            .filter(|_| !ab_duplicate)
            .and_then(|o| o.iter().find(|(n, _)| n == k).map(|(_, v)| v))
    };
    assert_eq!(
        matches!(column(row, "ab_test"), Value::Text(Some(_))),
        ab_test.is_some(),
        "ab_test column"
    );
    for (key, name) in AB_TEST_FIELDS {
        assert_text(column(row, name), ab_get(key), name);
    }
    let own_id = lookup("ab_test_id").filter(|v| text_of(v).is_some());
    assert_text(
        column(row, "ab_test_id"),
        own_id.or_else(|| ab_get("id")),
        "ab_test_id",
    );
    let own_version = lookup("ab_test_version");
    if let Value::Int(None) = column(row, "ab_test_version") {
        // Null only if neither the field nor the object's version reads as an integer.
        for source in [own_version, ab_get("version")] {
            assert_int(
                Value::Int(None),
                source.filter(|v| !matches!(v, J::F(_))),
                "ab_test_version",
            );
        }
    }
}

/// A yes/no value as the flag columns read it.
fn flag_of(v: &J) -> Option<bool> {
    match v {
        J::Bool(b) => Some(*b),
        J::I(1) | J::U(1) => Some(true),
        J::I(0) | J::U(0) => Some(false),
        J::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A text column against the tree's value: for a number the column holds its exact digits,
/// which the tree (an f64 or integer) cannot restate, so only "a number" is checked then.
fn assert_text(got: Value<'_>, source: Option<&J>, what: &str) {
    if let Some(J::F(_) | J::U(_) | J::I(_)) = source {
        let Value::Text(Some(text)) = got else {
            panic!("{what}: a number became {got:?}");
        };
        assert!(
            text.parse::<f64>().is_ok(),
            "{what}: {text:?} is not a number"
        );
        return;
    }
    assert_eq!(
        got,
        Value::Text(source.and_then(text_of).as_deref()),
        "{what}"
    );
}

fn text_of(v: &J) -> Option<String> {
    match v {
        J::Str(s) => Some(s.clone()),
        J::I(i) => Some(i.to_string()),
        J::U(u) => Some(match i64::try_from(*u) {
            Ok(i) => i.to_string(),
            Err(_) => (*u as f64).to_string(),
        }),
        J::F(f) => Some(f.to_string()),
        J::Bool(b) => Some(b.to_string()),
        J::Null | J::Arr(_) | J::Obj(_) => None,
    }
}

/// An integer column against the tree's value. The column reads a number's exact text as a
/// decimal (`12.0` and `1.2e1` are 12; a nonzero fraction or a value beyond i64 is null). A
/// string keeps its text, so it is read here exactly too (`exact_int`); a JSON number that is
/// not an integer reaches the tree as an f64, which cannot always restate the text: then only
/// what the f64 settles is checked.
fn assert_int(got: Value<'_>, source: Option<&J>, what: &str) {
    let Value::Int(got) = got else {
        panic!("{what} is {got:?}");
    };
    match source {
        Some(J::I(i)) => assert_eq!(got, Some(*i), "{what}"),
        Some(J::U(u)) => assert_eq!(got, i64::try_from(*u).ok(), "{what}"),
        Some(J::Str(s)) => assert_eq!(got, exact_int(s.trim()), "{what}: {s:?}"),
        Some(J::F(f)) if !f.is_finite() => assert_eq!(got, None, "{what}: {f}"),
        Some(J::F(f)) => {
            // serde_json reads floats with best-effort precision (its `float_roundtrip` feature is
            // off): it can miss the nearest f64 by an ULP, so this is judged within 4.
            let tolerance = f.abs() * 4.0 * f64::EPSILON;
            if (f - f.round()).abs() > tolerance {
                // Clearly a fraction: so is the decimal.
                assert_eq!(got, None, "{what}: {f}");
            } else if let Some(i) = got {
                // An integral f64: the text was that integer, or rounds to it (a text with more
                // digits than an f64 holds may): the integer itself, or null.
                assert!(
                    (i as f64 - f).abs() <= tolerance,
                    "{what}: {i} read from a number near {f}"
                );
            }
        }
        Some(J::Bool(_) | J::Null | J::Arr(_) | J::Obj(_)) | None => {
            assert_eq!(got, None, "{what}")
        }
    }
}

/// A decimal number's text as an exact integer, by moving its decimal point: `[+-]digits[.digits]
/// [e[+-]digits]` with at least one digit before the exponent; `None` for anything else, a
/// nonzero fraction, or a value outside i64.
fn exact_int(text: &str) -> Option<i64> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (m, e)
        }
        None => (rest, "0"),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    // An exponent beyond i64 is refused as such, even on a zero.
    let exponent: i64 = exponent.parse().ok()?;
    let digits: String = format!("{whole}{fraction}");
    if digits.bytes().all(|b| b == b'0') {
        return Some(0);
    }
    // Where the decimal point falls in `digits` once the exponent is applied.
    let point = i64::try_from(whole.len()).ok()?.checked_add(exponent)?;
    let len = i64::try_from(digits.len()).ok()?;
    let (integer, fraction) = if point <= 0 {
        (String::new(), digits.clone())
    } else if point >= len {
        let zeros = usize::try_from(point - len).ok()?;
        if zeros > 40 {
            return None; // beyond i64 whatever the digits
        }
        (format!("{digits}{}", "0".repeat(zeros)), String::new())
    } else {
        let at = usize::try_from(point).ok()?;
        (digits[..at].to_owned(), digits[at..].to_owned())
    };
    if fraction.bytes().any(|b| b != b'0') {
        return None;
    }
    let integer = integer.trim_start_matches('0');
    if integer.is_empty() {
        return Some(0);
    }
    let signed = if negative {
        format!("-{integer}")
    } else {
        integer.to_owned()
    };
    signed.parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::exact_int;

    #[test]
    fn exact_int_moves_the_decimal_point() {
        for (text, want) in [
            ("12", Some(12)),
            ("+12", Some(12)),
            ("-0", Some(0)),
            ("12.0", Some(12)),
            ("1.2e1", Some(12)),
            ("1200e-2", Some(12)),
            ("10e-1", Some(1)),
            (".5e1", Some(5)),
            ("5.", Some(5)),
            ("1.5", None),
            ("1.00000000000000001", None),
            ("-6.496784707109615e18", Some(-6_496_784_707_109_615_000)),
            ("9223372036854775807.0", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("1e19", None),
            ("0e99999999999999999999", None),
            ("0.0e-5", Some(0)),
            ("1e", None),
            ("e5", None),
            (".", None),
            ("0x10", None),
            ("+-1", None),
            ("NaN", None),
        ] {
            assert_eq!(exact_int(text), want, "{text}");
        }
    }
}
