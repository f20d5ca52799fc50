//! The webhook envelope: a JSON array whose elements are `{"msys": {"<class>": {"type": ...}}}`.
//!
//! [`validate`] checks the shape of every element without building a JSON tree: the array is read
//! into borrowed slices of the body ([`RawValue`]), and each element is walked once, skipping
//! everything but `msys`, its one class key, and that class's `type`. [`split`] re-packs elements
//! into arrays no larger than a queue message.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

/// Nesting deeper than this is refused: SparkPost's own events nest five levels.
pub const MAX_DEPTH: usize = 64;

/// A validated webhook body, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    pub elements: Vec<Element<'a>>,
}

/// One element of the array: the exact JSON text received, and its event head unless it is the
/// ping SparkPost sends when a webhook is created (`{"msys":{}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element<'a> {
    pub raw: &'a str,
    pub head: Option<EventHead<'a>>,
}

/// The class key inside `msys` and the event's `type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventHead<'a> {
    pub class: Cow<'a, str>,
    pub event_type: Cow<'a, str>,
}

impl<'a> Batch<'a> {
    /// The elements that carry an event (pings left out).
    pub fn events(&self) -> impl Iterator<Item = (&Element<'a>, &EventHead<'a>)> {
        self.elements
            .iter()
            .filter_map(|e| e.head.as_ref().map(|h| (e, h)))
    }

    pub fn event_count(&self) -> usize {
        self.events().count()
    }

    /// Where this batch's elements lie in `body` (the body it was validated from) and what
    /// their heads say, owned: see [`Outline`]. `body` must be that body; given another, the
    /// outline is of no use (never a panic).
    pub fn outline(&self, body: &[u8]) -> Outline {
        let base = body.as_ptr() as usize;
        let elements = self
            .elements
            .iter()
            .map(|e| {
                let start = (e.raw.as_ptr() as usize).wrapping_sub(base);
                let head = e.head.as_ref().map(|h| {
                    (
                        h.class.clone().into_owned(),
                        h.event_type.clone().into_owned(),
                    )
                });
                Outlined {
                    at: start..start.saturating_add(e.raw.len()),
                    head,
                }
            })
            .collect();
        Outline {
            body_len: body.len(),
            elements,
        }
    }
}

/// A validated body's elements by position, and their heads, owned: what a stage that has just
/// validated a body hands to the next stage in the same process (`import`: ingest to fanout),
/// so that the body is not walked twice. It never travels on a queue: a message from outside
/// the process is always validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    body_len: usize,
    elements: Vec<Outlined>,
}

/// One element of an [`Outline`]: where it lies, and its head's class and type.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outlined {
    at: std::ops::Range<usize>,
    head: Option<(String, String)>,
}

impl Outline {
    /// The batch of `body`, the body this outline was made of; `None` when `body` cannot be it
    /// (another length, not UTF-8, an element that is not an object where the outline says):
    /// the caller validates it instead.
    pub fn batch<'a>(&'a self, body: &'a [u8]) -> Option<Batch<'a>> {
        if body.len() != self.body_len {
            return None;
        }
        let text = std::str::from_utf8(body).ok()?;
        let elements = self
            .elements
            .iter()
            .map(|Outlined { at, head }| {
                let raw = text.get(at.clone())?;
                (raw.starts_with('{') && raw.ends_with('}')).then(|| Element {
                    raw,
                    head: head.as_ref().map(|(class, event_type)| EventHead {
                        class: Cow::Borrowed(class),
                        event_type: Cow::Borrowed(event_type),
                    }),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Batch { elements })
    }
}

/// Why a body is not a SparkPost webhook batch. Never worth retrying: answer 4xx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("body is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("body is not a JSON array (it starts with {found})")]
    NotArray { found: String },
    #[error("element {index}: nested deeper than {max} levels")]
    TooDeep { index: usize, max: usize },
    #[error("element {index}: {problem}")]
    Element { index: usize, problem: String },
    #[error("after element {index}: {problem}")]
    Trailing { index: usize, problem: String },
}

impl ValidationError {
    /// The error without any text from the body (serde's messages can quote values, such as a
    /// recipient's address): what logs may carry.
    pub fn redacted(&self) -> String {
        match self {
            Self::NotUtf8 { offset } => format!("body is not valid UTF-8 (byte {offset})"),
            Self::NotArray { .. } => "body is not a JSON array".to_owned(),
            Self::TooDeep { index, max } => format!("element {index}: nested deeper than {max}"),
            Self::Element { index, .. } => format!("element {index}: not a SparkPost event"),
            Self::Trailing { index, .. } => format!("after element {index}: trailing data"),
        }
    }

    /// The index of the first bad element, where there is one.
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::NotUtf8 { .. } | Self::NotArray { .. } => None,
            Self::TooDeep { index, .. }
            | Self::Element { index, .. }
            | Self::Trailing { index, .. } => Some(*index),
        }
    }
}

/// Validates a webhook body and returns its elements.
///
/// One parse per element ([`read_each`]); a body it does not accept as it goes is read again by
/// [`validate_stepwise`], which says what is wrong. The result is [`validate_stepwise`]'s on
/// any body (tests and the fuzz target hold them equal).
pub fn validate(body: &[u8]) -> Result<Batch<'_>, ValidationError> {
    let mut elements = Vec::new();
    let taken = read_each(body, |raw, Head(head)| {
        elements.push(Element { raw, head });
        true
    });
    match taken {
        Ok(()) => Ok(Batch { elements }),
        Err(_) => validate_stepwise(body),
    }
}

/// [`validate`] in steps: the array's elements as text ([`elements`]), then each element's head
/// ([`read_head`]), two parses of every element. What [`validate`] falls back to, for its errors.
pub fn validate_stepwise(body: &[u8]) -> Result<Batch<'_>, ValidationError> {
    let elements = elements(body)?
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let head = read_head(raw).map_err(|e| ValidationError::Element {
                index,
                problem: e.to_string(),
            })?;
            Ok(Element { raw, head })
        })
        .collect::<Result<_, _>>()?;
    Ok(Batch { elements })
}

/// The first half of [`validate`]: the body as UTF-8 JSON, an array, no deeper than
/// [`MAX_DEPTH`], and the text of each element; the elements' shape is not yet checked (the
/// writer reads each element's head and fields in one pass, see
/// [`crate::event::Event::read_element`]).
pub fn elements(body: &[u8]) -> Result<Vec<&str>, ValidationError> {
    let text = body_text(body)?;
    let first = text.trim_start().chars().next();
    if first != Some('[') {
        return Err(ValidationError::NotArray {
            found: match first {
                None => "nothing (empty body)".into(),
                Some('{') => "an object".into(),
                Some('"') => "a string".into(),
                Some(c) => format!("{c:?}"),
            },
        });
    }
    check_depth(text)?;

    let seen = Cell::new(0);
    let mut de = serde_json::Deserializer::from_str(text);
    let raws = de
        .deserialize_seq(ArrayOfRaw { seen: &seen })
        .map_err(|e| ValidationError::Element {
            index: seen.get(),
            problem: format!("invalid JSON: {e}"),
        })?;
    de.end().map_err(|e| ValidationError::Trailing {
        index: raws.len().saturating_sub(1),
        problem: format!("invalid JSON: {e}"),
    })?;
    Ok(raws.into_iter().map(RawValue::get).collect())
}

/// The body's elements read as they are met, each straight from the body in one parse as a `T`
/// and given to `each` with its exact text; `each` answers whether it took it. `Err(n)` when
/// it stops short after `n` elements taken (a body that is not UTF-8, not an array, too deep,
/// an element that does not read as a `T` or that `each` does not take, anything after the
/// array): the caller reads the body again the stepwise way from there ([`elements`]), which
/// accepts every body this accepts, with the same element texts, and says why it refuses one.
pub fn read_each<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    mut each: impl FnMut(&'a str, T) -> bool,
) -> Result<(), usize> {
    let text = body_text(body).map_err(|_| 0usize)?;
    let bytes = text.as_bytes();
    let mut depth_checked = false;
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'[') {
        return Err(0);
    }
    at = skip_whitespace(bytes, at + 1);
    let mut count = 0;
    if bytes.get(at) == Some(&b']') {
        at += 1;
    } else {
        loop {
            // `at` is on the first byte of an element (ASCII punctuation came before it).
            let rest = text.get(at..).ok_or(count)?;
            let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<T>();
            let Some(Ok(value)) = stream.next() else {
                return Err(count);
            };
            let len = stream.byte_offset();
            let raw = rest.get(..len).ok_or(count)?;
            // An element holding fewer than MAX_DEPTH brackets (in strings or not) is not nested
            // too deep inside the array; past that the whole body is checked, once. (The parse
            // itself is bounded by serde_json's recursion limit.)
            if !depth_checked && opening_brackets(raw) >= MAX_DEPTH {
                check_depth(text).map_err(|_| count)?;
                depth_checked = true;
            }
            if !each(raw, value) {
                return Err(count);
            }
            count += 1;
            at = skip_whitespace(bytes, at + len);
            match bytes.get(at) {
                Some(b',') => at = skip_whitespace(bytes, at + 1),
                Some(b']') => {
                    at += 1;
                    break;
                }
                _ => return Err(count),
            }
        }
    }
    if skip_whitespace(bytes, at) == bytes.len() {
        Ok(())
    } else {
        Err(count)
    }
}

/// How many `{` and `[` bytes `text` holds.
fn opening_brackets(text: &str) -> usize {
    text.bytes()
        .fold(0, |n, b| n + usize::from(b == b'{' || b == b'['))
}

/// The first byte at or after `at` that is not JSON whitespace.
fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        at += 1;
    }
    at
}

/// An element's head as a `Deserialize` type, for [`read_each`].
struct Head<'a>(Option<EventHead<'a>>);

impl<'de> Deserialize<'de> for Head<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ElementVisitor).map(Head)
    }
}

/// Reads the event head of one element, `None` for a ping.
pub fn read_head(raw: &str) -> Result<Option<EventHead<'_>>, serde_json::Error> {
    serde_json::from_str::<Head>(raw).map(|Head(head)| head)
}

/// The body as text: UTF-8, without a leading byte order mark (RFC 8259 8.1: a parser may
/// ignore one. SparkPost sends none, but a proxy or a replay tool may add one, and the JSON
/// after it is unambiguous).
fn body_text(body: &[u8]) -> Result<&str, ValidationError> {
    let text = std::str::from_utf8(body).map_err(|e| ValidationError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// Refuses nesting deeper than [`MAX_DEPTH`] in one linear pass, before any recursive parse.
fn check_depth(text: &str) -> Result<(), ValidationError> {
    let bytes = text.as_bytes();
    let (mut depth, mut index, mut at) = (0usize, 0usize, 0usize);
    while let Some(&b) = bytes.get(at) {
        match b {
            // A string: to its closing quote, a memchr jump at a time (most of an event's bytes
            // are in strings); an escape skips the byte after the backslash. An unterminated
            // string ends the scan (the parser reports it).
            b'"' => loop {
                at += 1;
                match bytes
                    .get(at..)
                    .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                {
                    Some(n) if bytes[at + n] == b'\\' => at += n + 1,
                    Some(n) => {
                        at += n;
                        break;
                    }
                    None => return Ok(()),
                }
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ValidationError::TooDeep {
                        index,
                        max: MAX_DEPTH,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => index += 1,
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

/// Joins elements into one JSON array.
pub fn join<'e>(elements: impl IntoIterator<Item = &'e str>) -> String {
    let mut out = String::from("[");
    for (i, element) in elements.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(element);
    }
    out.push(']');
    out
}

/// An element too large for any message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("element {index} is {size} bytes, more than the {max} bytes a queue message holds")]
pub struct ElementTooLarge {
    pub index: usize,
    pub size: usize,
    pub max: usize,
}

/// Packs elements, in order, into as few JSON arrays of at most `max_bytes` each as a greedy
/// pass allows.
pub fn split(elements: &[&str], max_bytes: usize) -> Result<Vec<String>, ElementTooLarge> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut size = 2; // "[" and "]"
    for (index, element) in elements.iter().enumerate() {
        if element.len() + 2 > max_bytes {
            return Err(ElementTooLarge {
                index,
                size: element.len(),
                max: max_bytes.saturating_sub(2),
            });
        }
        let added = element.len() + usize::from(index > start);
        if size + added > max_bytes {
            parts.push(join(elements[start..index].iter().copied()));
            start = index;
            size = 2 + element.len();
        } else {
            size += added;
        }
    }
    if start < elements.len() {
        parts.push(join(elements[start..].iter().copied()));
    }
    Ok(parts)
}

/// Removes insignificant whitespace (outside strings), so a pretty-printed element fits one line.
/// Compact text (the usual case) is borrowed, not copied; strings are skipped with `memchr`
/// (only `"` and `\\` matter inside them), so the walk costs little more than a scan.
pub fn compact(json: &str) -> Cow<'_, str> {
    let bytes = json.as_bytes();
    // `out` starts at the first insignificant whitespace; `bytes[kept..at]` is still to copy.
    let mut out: Option<Vec<u8>> = None;
    let (mut at, mut kept) = (0, 0);
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                at += 1;
                let mut closed = false;
                while let Some(found) = memchr::memchr2(b'"', b'\\', &bytes[at..]) {
                    if bytes[at + found] == b'"' {
                        at += found + 1;
                        closed = true;
                        break;
                    }
                    // A backslash escapes the byte after it (the first of its character; the
                    // rest are UTF-8 continuation bytes, never `"` or `\\`).
                    at = (at + found + 2).min(bytes.len());
                }
                if !closed {
                    // Unterminated: the rest is inside the string.
                    at = bytes.len();
                }
            }
            b' ' | b'\n' | b'\r' | b'\t' => {
                let out = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
                out.extend_from_slice(&bytes[kept..at]);
                at += 1;
                kept = at;
            }
            _ => at += 1,
        }
    }
    match out {
        None => Cow::Borrowed(json),
        Some(mut out) => {
            out.extend_from_slice(&bytes[kept..]);
            // Only ASCII bytes outside strings were dropped, so the text is still UTF-8.
            String::from_utf8(out).map_or(Cow::Borrowed(json), Cow::Owned)
        }
    }
}

/// Collects the top-level array as borrowed slices, counting how far it got for error messages.
struct ArrayOfRaw<'c> {
    seen: &'c Cell<usize>,
}

impl<'de> Visitor<'de> for ArrayOfRaw<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of SparkPost events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            out.push(raw);
            self.seen.set(out.len());
        }
        Ok(out)
    }
}

/// A string, borrowed from the input when it holds no escapes.
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Option<EventHead<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with an `msys` object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut msys = None;
        while let Some(Str(key)) = map.next_key()? {
            if key == "msys" {
                if msys.is_some() {
                    return Err(de::Error::custom("`msys` appears twice"));
                }
                msys = Some(map.next_value_seed(MsysSeed)?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        msys.ok_or_else(|| de::Error::custom("no `msys` key"))
    }
}

struct MsysSeed;

impl<'de> DeserializeSeed<'de> for MsysSeed {
    type Value = Option<EventHead<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MsysSeed {
    type Value = Option<EventHead<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`msys` to be an object holding at most one event class")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(Str(class)) = map.next_key()? else {
            return Ok(None);
        };
        let event_type = map.next_value_seed(ClassSeed { class: &class })?;
        if let Some(Str(other)) = map.next_key()? {
            return Err(de::Error::custom(format_args!(
                "`msys` holds two event classes (`{class}` and `{other}`)"
            )));
        }
        Ok(Some(EventHead { class, event_type }))
    }
}

struct ClassSeed<'k> {
    class: &'k str,
}

impl<'de> DeserializeSeed<'de> for ClassSeed<'_> {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClassSeed<'_> {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "`{}` to be an object with a string `type`", self.class)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event_type = None;
        while let Some(Str(key)) = map.next_key()? {
            if key == "type" {
                // Two `type`s make the event ambiguous: parsers disagree on which one wins, so
                // the partition and a query reading `raw` could each pick another.
                if event_type.is_some() {
                    return Err(de::Error::custom(format_args!(
                        "`{}.type` appears twice",
                        self.class
                    )));
                }
                let Str(t) = map.next_value().map_err(|_: A::Error| {
                    de::Error::custom(format_args!("`{}.type` is not a string", self.class))
                })?;
                event_type = Some(t);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        match event_type {
            Some(t) if !t.is_empty() => Ok(t),
            Some(_) => Err(de::Error::custom(format_args!(
                "`{}.type` is empty",
                self.class
            ))),
            None => Err(de::Error::custom(format_args!(
                "`{}` has no `type`",
                self.class
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time depth check [`check_depth`] replaced, as the reference it must agree
    /// with on any text.
    fn check_depth_bytewise(text: &str) -> Result<(), ValidationError> {
        let (mut depth, mut index) = (0usize, 0usize);
        let (mut in_string, mut escaped) = (false, false);
        for b in text.bytes() {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(ValidationError::TooDeep {
                            index,
                            max: MAX_DEPTH,
                        });
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                b',' if depth == 1 => index += 1,
                _ => {}
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn depth_check_agrees_with_the_bytewise_scan(
            text in "\\[{0,70}[\\[{\\]},\"\\\\a ]{0,200}"
        ) {
            proptest::prop_assert_eq!(check_depth(&text), check_depth_bytewise(&text));
        }
    }

    #[test]
    fn depth_check_agrees_on_strings_and_escapes() {
        let deep = format!("[{}{}]", "[".repeat(70), "]".repeat(70));
        let cases = [
            deep.as_str(),
            r#"[{"a":"[[[[\"[[["},1,[[[]]]]"#,
            r#"["\\",[[["#,
            r#"["unterminated \"#,
            r#"["\"#,
            "[1,2,\"x\\\\\",[{",
        ];
        for text in cases {
            assert_eq!(check_depth(text), check_depth_bytewise(text), "{text}");
        }
        assert!(matches!(
            check_depth(&deep),
            Err(ValidationError::TooDeep { index: 0, .. })
        ));
    }
}
