//! Envelope validation and splitting, on real and hand-written fixtures.

mod common;

use common::fixture;
use sparklake_core::envelope::{self, ValidationError, compact, join, split, validate};

#[test]
fn sparkpost_sample_batch_has_nineteen_events_of_five_classes() {
    let body = fixture("sparkpost/batch.json");
    let batch = validate(&body).expect("valid");
    assert_eq!(batch.elements.len(), 19);
    assert_eq!(batch.event_count(), 19);
    let types: Vec<_> = batch.events().map(|(_, h)| h.event_type.as_ref()).collect();
    assert_eq!(
        &types[..4],
        ["bounce", "delivery", "injection", "sms_status"]
    );
    let classes: std::collections::BTreeSet<_> =
        batch.events().map(|(_, h)| h.class.to_string()).collect();
    assert_eq!(
        classes.into_iter().collect::<Vec<_>>(),
        [
            "gen_event",
            "message_event",
            "relay_event",
            "track_event",
            "unsubscribe_event"
        ]
    );
    // Raw slices are the exact bytes of each element.
    let first = batch.elements[0].raw;
    assert!(first.starts_with('{') && first.ends_with('}'));
    assert!(first.contains("\"bounce_class\": \"1\""));
}

#[test]
fn ping_is_valid_and_holds_no_event() {
    let batch = validate(br#"[{"msys":{}}]"#).expect("valid");
    assert_eq!(batch.elements.len(), 1);
    assert_eq!(batch.event_count(), 0);
}

#[test]
fn unknown_classes_and_types_are_events_like_any_other() {
    let body = fixture("drift/unknown.json");
    let batch = validate(&body).expect("valid");
    let heads: Vec<_> = batch
        .events()
        .map(|(_, h)| (h.class.to_string(), h.event_type.to_string()))
        .collect();
    assert_eq!(
        heads,
        [
            ("hologram_event".into(), "hologram_view".into()),
            ("message_event".into(), "teleport".into()),
            ("track_event".into(), "amp_click".into()),
        ]
    );
    assert_eq!(
        batch.elements.len(),
        4,
        "the ping element stays in the batch"
    );
    assert!(batch.elements[3].raw.contains("\"cust\""));
}

fn error_of(body: &[u8]) -> ValidationError {
    validate(body).expect_err("must be refused")
}

#[test]
fn malformed_bodies_name_the_first_bad_element() {
    let cases: [(&str, Option<usize>, &str); 7] = [
        ("malformed/not_json.txt", Some(1), "invalid JSON"),
        ("malformed/not_array.json", None, "not a JSON array"),
        ("malformed/no_msys.json", Some(1), "no `msys` key"),
        ("malformed/two_classes.json", Some(0), "two event classes"),
        (
            "malformed/type_not_string.json",
            Some(1),
            "`message_event.type` is not a string",
        ),
        ("malformed/invalid_utf8.bin", None, "not valid UTF-8"),
        ("malformed/truncated.json", Some(1), "invalid JSON"),
    ];
    for (name, index, words) in cases {
        let err = error_of(&fixture(name));
        assert_eq!(err.index(), index, "{name}: {err}");
        assert!(err.to_string().contains(words), "{name}: {err}");
    }
}

#[test]
fn other_shape_errors_are_explained() {
    let cases: [(&[u8], &str); 9] = [
        (b"", "empty body"),
        (b"[1]", "expected an object with an `msys` object"),
        (br#"[{"msys":[]}]"#, "`msys` to be an object"),
        (
            br#"[{"msys":{"message_event":"x"}}]"#,
            "`message_event` to be an object",
        ),
        (
            br#"[{"msys":{"message_event":{}}}]"#,
            "`message_event` has no `type`",
        ),
        (br#"[{"msys":{"message_event":{"type":""}}}]"#, "is empty"),
        (br#"[{"msys":{},"msys":{}}]"#, "appears twice"),
        (br#"[{"msys":{}}] [1]"#, "after element 0"),
        (br#"[{"msys":{}}"#, "element 1: invalid JSON"),
    ];
    for (body, words) in cases {
        let err = error_of(body);
        assert!(
            err.to_string().contains(words),
            "{:?}: {err}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    let depth = 100_000;
    let mut body = String::from(r#"[{"msys":{}},{"msys":{"message_event":{"type":"x","a":"#);
    body.push_str(&"[".repeat(depth));
    body.push_str(&"]".repeat(depth));
    body.push_str("}}}]");
    let err = error_of(body.as_bytes());
    assert_eq!(
        err,
        ValidationError::TooDeep {
            index: 1,
            max: envelope::MAX_DEPTH
        }
    );
    // Brackets inside strings are not nesting.
    let inside = format!(
        r#"[{{"msys":{{"message_event":{{"type":"x","s":"{}"}}}}}}]"#,
        "[".repeat(500)
    );
    assert!(validate(inside.as_bytes()).is_ok());
}

#[test]
fn escaped_keys_and_types_are_read() {
    let batch =
        validate(br#"[{"ms\u0079s":{"message_event":{"type":"deli\u0076ery"}}}]"#).expect("valid");
    let (_, head) = batch.events().next().expect("one event");
    assert_eq!(head.event_type, "delivery");
}

#[test]
fn split_packs_elements_on_boundaries_within_the_limit() {
    let body = fixture("sparkpost/batch.json");
    let batch = validate(&body).expect("valid");
    let raws: Vec<&str> = batch.elements.iter().map(|e| e.raw).collect();
    let whole = join(raws.iter().copied());
    assert_eq!(
        split(&raws, whole.len()).expect("fits"),
        vec![whole.clone()]
    );

    let max = 4096;
    let parts = split(&raws, max).expect("fits");
    assert!(parts.len() > 1);
    let mut rejoined = Vec::new();
    for part in &parts {
        assert!(part.len() <= max, "{} > {max}", part.len());
        let sub = validate(part.as_bytes()).expect("each part is a valid batch");
        rejoined.extend(sub.elements.iter().map(|e| e.raw.to_owned()));
    }
    assert_eq!(rejoined, raws, "every element once, in order");

    let err = split(&raws, 100).expect_err("an element is larger than 100 bytes");
    assert_eq!(err.index, 0);
}

#[test]
fn compact_drops_whitespace_outside_strings_only() {
    let pretty = "{\n  \"a\": \"x y\\\" \\n z\",\n  \"b\": [1, 2]\n}";
    assert_eq!(compact(pretty), "{\"a\":\"x y\\\" \\n z\",\"b\":[1,2]}");
    assert!(matches!(
        compact("{\"a\":1}"),
        std::borrow::Cow::Borrowed(_)
    ));
}

/// The character walk `compact` was before it skipped strings with memchr: the reference.
fn compact_by_chars(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if matches!(c, '\n' | '\r' | '\t' | ' ') {
            continue;
        }
        out.push(c);
    }
    out
}

#[test]
fn compact_is_the_character_walk_on_real_and_broken_text() {
    let mut texts: Vec<String> = Vec::new();
    for path in ["sparkpost/batch.json", "documented/message_events.json"] {
        let body = String::from_utf8(fixture(path)).expect("utf-8");
        texts.push(
            serde_json::to_string_pretty(
                &serde_json::from_str::<serde_json::Value>(&body).expect("json"),
            )
            .expect("pretty"),
        );
        texts.push(body);
    }
    // Escapes at the end, unterminated strings, escaped multi-byte characters, whitespace of
    // every kind on both sides of a string.
    for text in [
        "\"a b\\",
        "\"a\\\"",
        "\"\\",
        "\"",
        " \" x \" ",
        "\"\\é \" \t{ }",
        "[ \"\\\\\" , 1 ]",
        "\r\n\t ",
        "\"unterminated with spaces",
        "é \"é\\é\" é",
    ] {
        texts.push(text.into());
    }
    for text in &texts {
        // Every prefix too: truncations cut strings and escapes at every point.
        let cuts: Vec<usize> = (0..=text.len())
            .filter(|&n| text.is_char_boundary(n))
            .collect();
        for &n in cuts.iter().step_by(cuts.len() / 400 + 1) {
            let prefix = &text[..n];
            assert_eq!(compact(prefix), compact_by_chars(prefix), "{prefix:?}");
        }
    }
}

proptest::proptest! {
    #[test]
    fn compact_is_the_character_walk(text in "[ \\t\\r\\n\"\\\\a{}:,é]{0,40}") {
        proptest::prop_assert_eq!(compact(&text), compact_by_chars(&text));
    }
}

/// Mutated and truncated copies of real payloads: validation answers Ok or Err, never panics,
/// and whatever it accepts reads as events (all of them, none dropped).
#[test]
fn mutated_bodies_never_panic_and_accepted_ones_read_whole() {
    let sources = [
        fixture("sparkpost/batch.json"),
        fixture("drift/numbers.json"),
        fixture("drift/unknown.json"),
    ];
    // xorshift: deterministic, so a failure reproduces.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"{}[]\",:\\ 0123456789eE.-+tfnu\x00\xff\xc3";
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..3000 {
        let mut body = sources[round % sources.len()].clone();
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % body.len();
            match next() % 3 {
                0 => body[at] = alphabet[(next() as usize) % alphabet.len()],
                1 => {
                    body.remove(at);
                }
                _ => body.truncate(at.max(1)),
            }
        }
        match validate(&body) {
            Ok(batch) => {
                accepted += 1;
                for (element, head) in batch.events() {
                    let event = sparklake_core::event::Event::with_head(element.raw, head.clone());
                    assert_eq!(event.raw, element.raw);
                }
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "both paths exercised: {accepted} accepted, {refused} refused"
    );
}

#[test]
fn an_outline_gives_back_the_batch_it_was_made_of_and_nothing_for_another_body() {
    for name in [
        "sparkpost/batch.json",
        "compat/hostile_text.json",
        "compat/odd_types.json",
        "documented/message_events.json",
    ] {
        let body = fixture(name);
        let batch = validate(&body).expect("a valid fixture");
        let outline = batch.outline(&body);
        assert_eq!(outline.batch(&body), Some(batch.clone()), "{name}");
        // The same elements in a copy of the body (another buffer) are found too.
        let copy = body.clone();
        assert_eq!(outline.batch(&copy), Some(batch), "{name}");
        // Not the body outlined: a longer one, or one whose elements are not where it says.
        let mut longer = body.clone();
        longer.push(b' ');
        assert_eq!(outline.batch(&longer), None, "{name}");
        let shifted = [&b" "[..], &body[..body.len() - 1]].concat();
        assert_eq!(outline.batch(&shifted), None, "{name}");
    }
}
