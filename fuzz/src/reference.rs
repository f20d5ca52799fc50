//! A second, deliberately naive reading of a webhook body: parse the whole JSON into a tree that
//! keeps every key in order (duplicates included), then apply the envelope's rules to the tree.
//! `envelope::validate` must agree with it on every input: same verdict, same heads.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value with object keys in order, duplicates kept.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    I(i64),
    U(u64),
    F(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<J, E> {
                Ok(J::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<J, E> {
                Ok(J::I(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<J, E> {
                Ok(J::U(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<J, E> {
                Ok(J::F(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<J, E> {
                Ok(J::Str(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(J::Arr(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, J>()? {
                    out.push((k, v));
                }
                Ok(J::Obj(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl J {
    /// Nesting depth: a scalar is 0, `[]` is 1.
    pub fn depth(&self) -> usize {
        match self {
            J::Arr(items) => 1 + items.iter().map(J::depth).max().unwrap_or(0),
            J::Obj(pairs) => 1 + pairs.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }

    pub fn parse(text: &str) -> Option<J> {
        serde_json::from_str(text).ok()
    }

    /// Whether the text fails to read as a tree only because a number is outside f64's range
    /// (`1e999`): still JSON by the grammar, which the envelope (reading only the keys it needs)
    /// accepts, so the reference cannot judge it.
    pub fn out_of_range(text: &str) -> bool {
        serde_json::from_str::<J>(text)
            .err()
            .is_some_and(|e| e.to_string().starts_with("number out of range"))
    }

    fn obj(&self) -> Option<&[(String, J)]> {
        match self {
            J::Obj(pairs) => Some(pairs),
            _ => None,
        }
    }
}

/// An element's head as the reference reads it: `(class, type)`, `None` for a ping.
pub type Head = Option<(String, String)>;

/// The reference verdict: the elements' heads, or `None` when the body must be refused.
pub fn heads(body: &[u8]) -> Option<Vec<Head>> {
    let text = std::str::from_utf8(body).ok()?;
    // serde_json refuses nesting past 128 on its own; the envelope's limit is 64.
    let tree = J::parse(text)?;
    if tree.depth() > sparklake_core::envelope::MAX_DEPTH {
        return None;
    }
    let J::Arr(elements) = tree else {
        return None;
    };
    elements.iter().map(head).collect()
}

/// One element's head: `Some(head)` when it is acceptable, `None` when it is not.
pub fn head(element: &J) -> Option<Head> {
    let pairs = element.obj()?;
    let mut msys = pairs.iter().filter(|(k, _)| k == "msys");
    let (_, msys_value) = msys.next()?;
    if msys.next().is_some() {
        return None;
    }
    let classes = msys_value.obj()?;
    let (class, body) = match classes {
        [] => return Some(None),
        [one] => one,
        _ => return None,
    };
    // Exactly one `type`: two make the event ambiguous and are refused.
    let mut types = body.obj()?.iter().filter(|(k, _)| k == "type");
    let (_, event_type) = types.next()?;
    if types.next().is_some() {
        return None;
    }
    match event_type {
        J::Str(t) if !t.is_empty() => Some(Some((class.clone(), t.clone()))),
        _ => None,
    }
}
