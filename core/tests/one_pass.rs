//! The one-parse reading of a body (`envelope::read_each`, under `validate`, `read_batch` and
//! `read_events`) against the stepwise one it falls back to: the same verdict, elements, heads,
//! events and errors on every body, and the one pass really taken on well-formed ones.
#![allow(clippy::unwrap_used)]

mod common;

use common::{fixture, fixture_path};
use proptest::prelude::*;
use serde::de::IgnoredAny;
use sparklake_core::envelope::{self, ValidationError, read_each, validate, validate_stepwise};
use sparklake_core::event::{Event, read_batch};

/// Every `.json` fixture body (well-formed and malformed).
fn fixture_bodies() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for folder in ["sparkpost", "documented", "drift", "compat", "malformed"] {
        let mut names: Vec<_> = std::fs::read_dir(fixture_path(folder))
            .unwrap_or_else(|e| panic!("{folder}: {e}"))
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") || n.ends_with(".bin") || n.ends_with(".txt"))
            .collect();
        names.sort();
        for name in names {
            let path = format!("{folder}/{name}");
            out.push((path.clone(), fixture(&path)));
        }
    }
    out
}

/// `read_batch` as it was before the one pass: the elements, then each element read alone.
fn read_batch_stepwise(body: &[u8]) -> Result<Vec<String>, ValidationError> {
    envelope::elements(body)?
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            Event::read_element(raw)
                .map(|e| format!("{e:?}"))
                .map_err(|e| ValidationError::Element {
                    index,
                    problem: e.to_string(),
                })
        })
        .collect()
}

/// The one pass and the stepwise reading agree on `body`, in `validate` and in `read_batch`.
fn assert_agree(body: &[u8]) {
    assert_eq!(
        validate(body),
        validate_stepwise(body),
        "validate on {:?}",
        String::from_utf8_lossy(body)
    );
    let one = read_batch(body).map(|events| {
        events
            .into_iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
    });
    assert_eq!(
        one,
        read_batch_stepwise(body),
        "read_batch on {:?}",
        String::from_utf8_lossy(body)
    );
}

/// The element texts the one pass gives, or where it stopped.
fn one_pass_texts(body: &[u8]) -> Result<Vec<&str>, usize> {
    let mut texts = Vec::new();
    read_each(body, |raw, _: IgnoredAny| {
        texts.push(raw);
        true
    })?;
    Ok(texts)
}

#[test]
fn fixtures_and_every_prefix_read_the_same_both_ways() {
    for (name, body) in fixture_bodies() {
        assert_agree(&body);
        // Cuts anywhere: most are refused, at some element, with some error; the same one.
        for end in (0..body.len()).step_by((body.len() / 150).max(1)) {
            assert_agree(&body[..end]);
        }
        if validate_stepwise(&body).is_ok() {
            assert_eq!(
                one_pass_texts(&body),
                Ok(envelope::elements(&body).unwrap()),
                "{name}: the one pass stopped short"
            );
        }
    }
}

#[test]
fn the_one_pass_takes_spacing_a_mark_and_empty_arrays() {
    let event = r#"{"msys":{"message_event":{"type":"delivery","event_id":"1"}}}"#;
    let bodies = [
        format!("[{event}]"),
        format!("\u{feff}[{event}]"),
        format!(" \r\n\t[ {event} ,\n\t{event}\r\n] \n"),
        format!("[{event},{{\"msys\":{{}}}}]"),
        "[]".to_owned(),
        " [ ] ".to_owned(),
    ];
    for body in &bodies {
        let texts = one_pass_texts(body.as_bytes());
        assert_eq!(
            texts,
            Ok(envelope::elements(body.as_bytes()).unwrap()),
            "{body:?}"
        );
        assert_agree(body.as_bytes());
    }
}

#[test]
fn the_one_pass_stops_where_the_stepwise_reading_refuses_and_says_the_same() {
    let event = r#"{"msys":{"message_event":{"type":"delivery"}}}"#;
    let bodies = [
        format!("[{event},]"),
        format!("[{event}] x"),
        format!("[{event}][]"),
        format!("[{event} {event}]"),
        format!("[{event},,{event}]"),
        format!("[{event}"),
        format!("{{\"a\":[{event}]}}"),
        format!("[{event},1]"),
        format!("[{event},\"x\"]"),
        format!("[{event},[{event}]]"),
        format!("[{event},{{\"msys\":{{\"a\":{{}}}}}}]"),
        format!("[{event},{{\"msys\":{{}},\"msys\":{{}}}}]"),
        format!("[{event},{{\"msys\":{{\"a\":{{\"type\":\"\"}}}}}}]"),
        format!("[{event},{{\"msys\":{{\"a\":{{\"type\":\"t\",\"type\":\"u\"}}}}}}]"),
        format!("[{event},{{\"msys\":{{\"a\":{{\"type\":\"t\"}},\"b\":{{}}}}}}]"),
        format!("[{}{event}{}]", "[".repeat(70), "]".repeat(70)),
        // Nested 64 deep with the array (the most allowed), 65, and brackets in strings only.
        format!(
            "[{event},{{\"msys\":{{}},\"x\":{}{}}}]",
            "[".repeat(62),
            "]".repeat(62)
        ),
        format!(
            "[{event},{{\"msys\":{{}},\"x\":{}{}}}]",
            "[".repeat(63),
            "]".repeat(63)
        ),
        format!("[{{\"msys\":{{}},\"x\":\"{}\"}},{event}]", "{[".repeat(70)),
        format!(
            "[{event},{{\"msys\":{{}},\"x\":\"{}\"}},{{\"y\":{}{}}}]",
            "[".repeat(70),
            "[".repeat(70),
            "]".repeat(70)
        ),
        // A field that does not read (the event is kept with its head), then a bad element.
        r#"[{"msys":{"message_event":{"type":"delivery","timestamp":[1]}}},{"x":1}]"#.to_owned(),
        "\u{a0}[]".to_owned(),
        "[\u{a0}]".to_owned(),
        "\u{feff}\u{feff}[]".to_owned(),
        String::new(),
    ];
    for body in &bodies {
        assert_agree(body.as_bytes());
    }
    assert!(one_pass_texts(format!("[{event},]").as_bytes()).is_err());
    let deepest = format!(
        "[{{\"msys\":{{}},\"x\":{}{}}}]",
        "[".repeat(62),
        "]".repeat(62)
    );
    assert!(one_pass_texts(deepest.as_bytes()).is_ok());
    assert!(validate(deepest.as_bytes()).is_ok());
    let deeper = format!(
        "[{{\"msys\":{{}},\"x\":{}{}}}]",
        "[".repeat(63),
        "]".repeat(63)
    );
    assert!(one_pass_texts(deeper.as_bytes()).is_err());
    assert!(matches!(
        validate(deeper.as_bytes()),
        Err(ValidationError::TooDeep { index: 0, .. })
    ));
    assert_agree(b"[\xff]");
}

/// Pieces a body is made of: fixture events, pings, broken elements, spacing and punctuation.
fn piece() -> impl Strategy<Value = String> {
    let event = r#"{"msys":{"track_event":{"type":"click","event_id":"9","timestamp":"1454442600","rcpt_to":"a@b.c","target_link_url":"http://x/\"q\"\\\u00e9"}}}"#;
    prop_oneof![
        4 => Just(event.to_owned()),
        2 => Just(r#"{"msys":{}}"#.to_owned()),
        2 => Just(",".to_owned()),
        1 => Just(" \n".to_owned()),
        1 => Just("]".to_owned()),
        1 => Just("[".to_owned()),
        1 => Just(r#"{"msys":{"message_event":{"type":7}}}"#.to_owned()),
        1 => Just(r#"{"msys":{"gen_event":{"type":"x","num_retries":"3","timestamp":{}}}}"#.to_owned()),
        1 => Just("\"\\ud800\"".to_owned()),
        1 => "[a-z0-9\"{}:,\\[\\] ]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_bodies_read_the_same_both_ways(
        pieces in prop::collection::vec(piece(), 0..12),
        cut in any::<prop::sample::Index>(),
        wrap in any::<bool>(),
    ) {
        let inner = pieces.join("");
        let body = if wrap { format!("[{inner}]") } else { inner };
        assert_agree(body.as_bytes());
        // And cut short somewhere.
        let end = cut.index(body.len() + 1);
        assert_agree(&body.as_bytes()[..end]);
    }

    #[test]
    fn well_formed_bodies_are_taken_in_one_pass(
        pieces in prop::collection::vec(prop_oneof![
            Just(r#"{"msys":{"message_event":{"type":"delivery","event_id":"1"}}}"#),
            Just(r#"{"msys":{}}"#),
            Just(r#"{"cust":[1,{"a":null}],"msys":{"unsubscribe_event":{"type":"list_unsubscribe"}}}"#),
        ], 0..10),
        space in "[ \t\r\n]{0,3}",
    ) {
        let body = format!("{space}[{space}{}{space}]{space}", pieces.join(&format!("{space},{space}")));
        prop_assert_eq!(
            one_pass_texts(body.as_bytes()),
            Ok(envelope::elements(body.as_bytes()).unwrap())
        );
        assert_agree(body.as_bytes());
    }
}
