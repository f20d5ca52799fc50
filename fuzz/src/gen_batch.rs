//! A structured SparkPost batch generator: `arbitrary` bytes become a webhook body with
//! SparkPost's classes, types and fields, each field holding any of the JSON types real
//! payloads have drifted to (numbers as strings, timestamps in every form, objects where text
//! was expected), plus pings, sibling keys, repeated keys, escapes and pretty-printing.

use std::fmt::Write as _;

use arbitrary::Arbitrary;

#[derive(Arbitrary, Debug)]
pub struct GenBatch {
    pub elements: Vec<GenElement>,
    pub pretty: bool,
}

#[derive(Arbitrary, Debug)]
pub enum GenElement {
    Ping,
    Event(GenEvent),
    /// Anything at all as an element.
    Value(GenValue),
}

#[derive(Arbitrary, Debug)]
pub struct GenEvent {
    pub class: Class,
    pub event_type: Name,
    pub fields: Vec<(Field, GenValue)>,
    /// A sibling of `msys`, as SparkPost's `cust` key.
    pub sibling: Option<(String, GenValue)>,
    /// Whether `type` comes first or after the fields.
    pub type_last: bool,
    /// Write the class and type names with `\u` escapes.
    pub escape_names: bool,
}

#[derive(Arbitrary, Debug)]
pub enum Class {
    Message,
    Track,
    Gen,
    Unsubscribe,
    Relay,
    AbTest,
    Ingest,
    Other(String),
}

impl Class {
    fn name(&self) -> &str {
        match self {
            Class::Message => "message_event",
            Class::Track => "track_event",
            Class::Gen => "gen_event",
            Class::Unsubscribe => "unsubscribe_event",
            Class::Relay => "relay_event",
            Class::AbTest => "ab_test_event",
            Class::Ingest => "ingest_event",
            Class::Other(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum Name {
    Known(u8),
    Other(String),
}

const TYPES: &[&str] = &[
    "injection",
    "delivery",
    "bounce",
    "delay",
    "policy_rejection",
    "out_of_band",
    "spam_complaint",
    "sms_status",
    "open",
    "initial_open",
    "amp_open",
    "amp_initial_open",
    "click",
    "amp_click",
    "generation_failure",
    "generation_rejection",
    "list_unsubscribe",
    "link_unsubscribe",
    "relay_injection",
    "relay_rejection",
    "relay_delivery",
    "relay_tempfail",
    "relay_permfail",
    "ab_test_completed",
    "ab_test_cancelled",
];

impl Name {
    fn name(&self) -> &str {
        match self {
            Name::Known(i) => TYPES[usize::from(*i) % TYPES.len()],
            Name::Other(s) => s,
        }
    }
}

/// The fields the table has columns for, a repeated `type`, and anything else.
pub const FIELDS: &[&str] = &[
    "event_id",
    "timestamp",
    "message_id",
    "transmission_id",
    "campaign_id",
    "template_id",
    "template_version",
    "subaccount_id",
    "customer_id",
    "rcpt_to",
    "raw_rcpt_to",
    "rcpt_type",
    "msg_from",
    "friendly_from",
    "subject",
    "ip_pool",
    "sending_ip",
    "routing_domain",
    "delv_method",
    "bounce_class",
    "reason",
    "raw_reason",
    "error_code",
    "num_retries",
    "queue_time",
    "msg_size",
    "user_agent",
    "ip_address",
    "target_link_name",
    "target_link_url",
    "geo_ip",
    "rcpt_tags",
    "rcpt_meta",
    "relay_id",
    "sms_src",
    "sms_dst",
    "type",
];

#[derive(Arbitrary, Debug)]
pub enum Field {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
pub enum GenValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    /// A number written as a string, with optional padding.
    NumStr(i64, bool),
    FloatStr(f64),
    Timestamp(Ts),
    Geo(Vec<(GeoKey, Box<GenValue>)>),
    Arr(Vec<GenValue>),
    Obj(Vec<(String, GenValue)>),
    /// Raw text dropped in as is (it may well not be JSON).
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Ts {
    UnixSecondsStr(u32),
    UnixSeconds(u32),
    UnixMillis(i64),
    UnixFloat(u32, u16),
    Iso {
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        millis: Option<u16>,
        offset_minutes: Option<i16>,
    },
    Garbage(String),
}

#[derive(Arbitrary, Debug)]
pub enum GeoKey {
    Country,
    Region,
    City,
    Zip,
    PostalCode,
    Latitude,
    Longitude,
    Other(String),
}

impl GeoKey {
    fn name(&self) -> &str {
        match self {
            GeoKey::Country => "country",
            GeoKey::Region => "region",
            GeoKey::City => "city",
            GeoKey::Zip => "zip",
            GeoKey::PostalCode => "postal_code",
            GeoKey::Latitude => "latitude",
            GeoKey::Longitude => "longitude",
            GeoKey::Other(s) => s,
        }
    }
}

/// Writes JSON text: compact, or with spaces and newlines between tokens.
struct Out {
    text: String,
    pretty: bool,
}

impl Out {
    fn ws(&mut self) {
        if self.pretty {
            self.text.push_str("\n  ");
        }
    }

    fn string(&mut self, s: &str, escape_all: bool) {
        if escape_all {
            self.text.push('"');
            for unit in s.encode_utf16() {
                let _ = write!(self.text, "\\u{unit:04x}");
            }
            self.text.push('"');
        } else {
            self.text
                .push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
        }
    }

    fn number(&mut self, f: f64) {
        // JSON has no NaN or infinity: write what a sender would (null).
        match serde_json::Number::from_f64(f) {
            Some(n) => self.text.push_str(&n.to_string()),
            None => self.text.push_str("null"),
        }
    }

    fn value(&mut self, v: &GenValue, depth: usize) {
        if depth > 70 {
            self.text.push_str("null");
            return;
        }
        match v {
            GenValue::Null => self.text.push_str("null"),
            GenValue::Bool(b) => self.text.push_str(if *b { "true" } else { "false" }),
            GenValue::Int(i) => self.text.push_str(&i.to_string()),
            GenValue::UInt(u) => self.text.push_str(&u.to_string()),
            GenValue::Float(f) => self.number(*f),
            GenValue::Str(s) => self.string(s, false),
            GenValue::NumStr(i, pad) => {
                let s = if *pad {
                    format!(" {i} ")
                } else {
                    i.to_string()
                };
                self.string(&s, false);
            }
            GenValue::FloatStr(f) => self.string(&f.to_string(), false),
            GenValue::Timestamp(ts) => self.timestamp(ts),
            GenValue::Geo(pairs) => {
                self.text.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    self.ws();
                    self.string(k.name(), false);
                    self.text.push(':');
                    self.value(v, depth + 1);
                }
                self.text.push('}');
            }
            GenValue::Arr(items) => {
                self.text.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    self.ws();
                    self.value(item, depth + 1);
                }
                self.text.push(']');
            }
            GenValue::Obj(pairs) => {
                self.text.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    self.ws();
                    self.string(k, false);
                    self.text.push(':');
                    self.value(v, depth + 1);
                }
                self.text.push('}');
            }
            GenValue::Raw(s) => self.text.push_str(s),
        }
    }

    fn timestamp(&mut self, ts: &Ts) {
        match ts {
            Ts::UnixSecondsStr(s) => self.string(&s.to_string(), false),
            Ts::UnixSeconds(s) => self.text.push_str(&s.to_string()),
            Ts::UnixMillis(ms) => self.text.push_str(&ms.to_string()),
            Ts::UnixFloat(s, frac) => {
                let _ = write!(self.text, "{s}.{frac}");
            }
            Ts::Iso {
                year,
                month,
                day,
                hour,
                minute,
                second,
                millis,
                offset_minutes,
            } => {
                let mut s = format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                    year % 10_000,
                    month % 14,
                    day % 33,
                    hour % 25,
                    minute % 61,
                    second % 62
                );
                if let Some(ms) = millis {
                    let _ = write!(s, ".{:03}", ms % 1000);
                }
                match offset_minutes {
                    None => s.push('Z'),
                    Some(o) => {
                        let o = i32::from(*o) % (24 * 60);
                        let sign = if o < 0 { '-' } else { '+' };
                        let _ = write!(s, "{sign}{:02}:{:02}", o.abs() / 60, o.abs() % 60);
                    }
                }
                self.string(&s, false);
            }
            Ts::Garbage(s) => self.string(s, false),
        }
    }

    fn event(&mut self, e: &GenEvent) {
        self.text.push('{');
        self.ws();
        self.string("msys", false);
        self.text.push_str(":{");
        self.string(e.class.name(), e.escape_names);
        self.text.push_str(":{");
        let mut first = true;
        let mut sep = |out: &mut Out| {
            if !std::mem::take(&mut first) {
                out.text.push(',');
            }
            out.ws();
        };
        if !e.type_last {
            sep(self);
            self.string("type", false);
            self.text.push(':');
            self.string(e.event_type.name(), e.escape_names);
        }
        for (field, value) in &e.fields {
            sep(self);
            match field {
                Field::Known(i) => self.string(FIELDS[usize::from(*i) % FIELDS.len()], false),
                Field::Other(s) => self.string(s, false),
            }
            self.text.push(':');
            self.value(value, 3);
        }
        if e.type_last {
            sep(self);
            self.string("type", false);
            self.text.push(':');
            self.string(e.event_type.name(), e.escape_names);
        }
        self.text.push_str("}}");
        if let Some((key, value)) = &e.sibling {
            self.text.push(',');
            self.string(key, false);
            self.text.push(':');
            self.value(value, 1);
        }
        self.text.push('}');
    }
}

impl GenBatch {
    /// The batch as a webhook body.
    pub fn to_body(&self) -> String {
        let mut out = Out {
            text: String::from("["),
            pretty: self.pretty,
        };
        for (i, element) in self.elements.iter().enumerate() {
            if i > 0 {
                out.text.push(',');
            }
            out.ws();
            match element {
                GenElement::Ping => out.text.push_str(r#"{"msys":{}}"#),
                GenElement::Event(e) => out.event(e),
                GenElement::Value(v) => out.value(v, 1),
            }
        }
        out.text.push(']');
        out.text
    }
}
