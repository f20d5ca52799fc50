//! One SparkPost event, read leniently: every field SparkPost has sent with drifting types.
//!
//! Fields borrow from the element's text where they can. A field of an unexpected JSON type
//! reads as absent rather than failing the event; the `raw` text always keeps it.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::envelope::{EventHead, Str, ValidationError, read_head};
use crate::timestamp;

/// An event's identity: `(type, event_id)`, or a hash of its raw JSON when it has no id.
/// SparkPost reuses one `event_id` across the types of a message's life, so the id alone is not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity<'a> {
    Id {
        event_type: Cow<'a, str>,
        event_id: Cow<'a, str>,
    },
    RawHash([u8; 16]),
}

impl<'a> Identity<'a> {
    /// The identity of a stored row from its columns, as [`Event::identity`] defines it: its
    /// `type` and `event_id`, or the hash of its `raw` text when it has no id.
    pub fn of_columns(event_type: &'a str, event_id: Option<&'a str>, raw: &str) -> Self {
        match event_id {
            Some(id) => Identity::Id {
                event_type: Cow::Borrowed(event_type),
                event_id: Cow::Borrowed(id),
            },
            None => Identity::RawHash(raw_hash(raw)),
        }
    }

    /// 128 bits standing for the identity (the first half of a SHA-256): what compaction keeps
    /// a set of, 16 bytes a row.
    pub fn digest(&self) -> u128 {
        match self {
            Identity::Id {
                event_type,
                event_id,
            } => {
                let mut hasher = Sha256::new();
                hasher.update(b"id\0");
                hasher.update(event_type.as_bytes());
                hasher.update(b"\0");
                hasher.update(event_id.as_bytes());
                let digest = hasher.finalize();
                let mut half = [0u8; 16];
                half.copy_from_slice(&digest[..16]);
                u128::from_be_bytes(half)
            }
            Identity::RawHash(hash) => u128::from_be_bytes(*hash),
        }
    }
}

fn raw_hash(raw: &str) -> [u8; 16] {
    let digest = Sha256::digest(raw.as_bytes());
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&digest[..16]);
    hash
}

/// A parsed event: its head, the typed fields, and the element exactly as received.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub head: EventHead<'a>,
    pub fields: Fields<'a>,
    /// The whole array element (`msys` and any sibling keys such as `cust`), as received.
    pub raw: &'a str,
}

impl<'a> Event<'a> {
    /// Reads one array element; `Ok(None)` for a ping. Fails only if the element's shape is not
    /// a SparkPost event (which ingest has already refused).
    pub fn parse(raw: &'a str) -> Result<Option<Self>, serde_json::Error> {
        Ok(read_head(raw)?.map(|head| Self::with_head(raw, head)))
    }

    /// Reads the fields of an element whose head [`crate::envelope::validate`] already read.
    pub fn with_head(raw: &'a str, head: EventHead<'a>) -> Self {
        // Unreadable fields are a data problem, not a reason to lose the event: keep it with
        // what the head says and its raw text.
        let mut fields = serde_json::from_str::<MapOnly<HeadedElement<'a>>>(raw)
            .ok()
            .and_then(|MapOnly(element)| element.msys.0)
            .map(|(_, fields)| fields)
            .unwrap_or_default();
        fields.event_type = EventType::default();
        Self { head, fields, raw }
    }

    /// Reads one element in one pass: its head and its fields together, `Ok(None)` for a ping,
    /// and for an element that is not a SparkPost event the error [`read_head`] gives. The
    /// same as [`read_head`] then [`Self::with_head`] (which are a walk each), and it is that
    /// when the one pass cannot decide: an element with no `msys`, two classes, a missing,
    /// empty, repeated or non-string `type`, or fields that do not read.
    pub fn read_element(raw: &'a str) -> Result<Option<Self>, serde_json::Error> {
        match serde_json::from_str::<OnePass<'a>>(raw) {
            Ok(read) => Self::from_one_pass(raw, read),
            Err(_) => Self::parse(raw),
        }
    }

    /// [`Self::read_element`] once the one pass has read `raw`.
    fn from_one_pass(raw: &'a str, read: OnePass<'a>) -> Result<Option<Self>, serde_json::Error> {
        let MapOnly(HeadedElement { msys }) = read;
        match msys.0 {
            None => Ok(None),
            Some((class, mut fields)) => {
                match fields.event_type.0.take().filter(|t| !t.is_empty()) {
                    Some(event_type) => Ok(Some(Self {
                        head: EventHead { class, event_type },
                        fields,
                        raw,
                    })),
                    None => Self::parse(raw),
                }
            }
        }
    }

    pub fn identity(&self) -> Identity<'a> {
        match &self.fields.event_id.0 {
            Some(id) => Identity::Id {
                event_type: self.head.event_type.clone(),
                event_id: id.clone(),
            },
            None => Identity::RawHash(raw_hash(self.raw)),
        }
    }

    /// The event's time in UTC milliseconds, if its `timestamp` could be read.
    pub fn timestamp_millis(&self) -> Option<i64> {
        self.fields.timestamp.0
    }
}

/// A body as the writer reads it: each element as [`Event::read_element`] reads it, `None` for
/// a ping, in one parse per element; refused as
/// [`crate::envelope::validate`] refuses it, with the same error.
pub fn read_batch(body: &[u8]) -> Result<Vec<Option<Event<'_>>>, ValidationError> {
    let mut out = Vec::with_capacity(likely_elements(body));
    read_elements(body, |event| out.push(event))?;
    Ok(out)
}

/// Room for a body's elements without regrowing for events of the usual size (most are 0.6 to
/// 1.5 KB), so that rows built in place are not moved.
fn likely_elements(body: &[u8]) -> usize {
    body.len() / 600 + 1
}

/// Every element of `body` read as [`Event::read_element`] reads it, given to `each` in order
/// (`None` for a ping). One parse per element, straight from the body
/// ([`crate::envelope::read_each`]); from an element that pass does not take on (and for a body
/// it does not accept), the stepwise reading: [`crate::envelope::elements`], then
/// [`Event::read_element`] of each, whose errors are [`crate::envelope::validate`]'s.
fn read_elements<'a>(
    body: &'a [u8],
    mut each: impl FnMut(Option<Event<'a>>),
) -> Result<(), ValidationError> {
    let fast =
        crate::envelope::read_each(body, |raw, read: OnePass<'a>| {
            match Event::from_one_pass(raw, read) {
                Ok(event) => {
                    each(event);
                    true
                }
                Err(_) => false,
            }
        });
    let Err(done) = fast else {
        return Ok(());
    };
    // The elements before `done` were read and given already, with the same texts.
    for (index, raw) in crate::envelope::elements(body)?
        .into_iter()
        .enumerate()
        .skip(done)
    {
        each(Event::read_element(raw).map_err(|e| element_error(index, &e))?);
    }
    Ok(())
}

/// Why element `index` of a batch does not read, as validation says it.
fn element_error(index: usize, error: &serde_json::Error) -> ValidationError {
    ValidationError::Element {
        index,
        problem: error.to_string(),
    }
}

/// [`read_batch`]'s events (pings left out) each made into a `T` as it is read, in order: the
/// writer's rows are built where they will stay, rather than collected as events and moved
/// (an event is over a kilobyte).
pub fn read_events<'a, T>(
    body: &'a [u8],
    mut each: impl FnMut(Event<'a>) -> T,
) -> Result<Vec<T>, ValidationError> {
    let mut out = Vec::with_capacity(likely_elements(body));
    read_elements(body, |event| {
        if let Some(event) = event {
            out.push(each(event));
        }
    })?;
    Ok(out)
}

#[derive(Deserialize)]
struct HeadedElement<'a> {
    #[serde(borrow)]
    msys: HeadedMsys<'a>,
}

/// `msys`: its one class and the class's fields, or `None` when it is empty (the ping).
struct HeadedMsys<'a>(Option<(Cow<'a, str>, Fields<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for HeadedMsys<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = HeadedMsys<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an msys object of at most one class")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let Some(Str(class)) = map.next_key()? else {
                    return Ok(HeadedMsys(None));
                };
                let MapOnly(fields) = map.next_value()?;
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("two event classes"));
                }
                Ok(HeadedMsys(Some((class, fields))))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// What [`Event::read_element`]'s one pass reads an element as.
type OnePass<'a> = MapOnly<HeadedElement<'a>>;

/// A struct read from a JSON object only: a derived struct also reads an array (its fields in
/// order), which [`read_head`] refuses, so the one pass must too.
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(MapOnly)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The class's `type` as [`read_head`] reads it: a string, or an error that sends the element
/// the long way.
#[derive(Debug, Clone, Default)]
struct EventType<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for EventType<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Str(text) = Str::deserialize(d)?;
        Ok(EventType(Some(text)))
    }
}

/// The fields the table has columns for. Everything else stays in `raw`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Fields<'a> {
    /// The class's `type`, read with the fields by [`Event::read_element`] and moved to the
    /// head (`None` after it; the head has it).
    #[serde(borrow, rename = "type")]
    event_type: EventType<'a>,
    #[serde(borrow)]
    pub event_id: Text<'a>,
    pub timestamp: Timestamp,
    #[serde(borrow)]
    pub message_id: Text<'a>,
    #[serde(borrow)]
    pub transmission_id: Text<'a>,
    #[serde(borrow)]
    pub campaign_id: Text<'a>,
    #[serde(borrow)]
    pub template_id: Text<'a>,
    #[serde(borrow)]
    pub template_version: Text<'a>,
    pub subaccount_id: Int,
    pub customer_id: Int,
    #[serde(borrow)]
    pub rcpt_to: Text<'a>,
    #[serde(borrow)]
    pub raw_rcpt_to: Text<'a>,
    #[serde(borrow)]
    pub rcpt_type: Text<'a>,
    #[serde(borrow)]
    pub msg_from: Text<'a>,
    #[serde(borrow)]
    pub friendly_from: Text<'a>,
    #[serde(borrow)]
    pub subject: Text<'a>,
    #[serde(borrow)]
    pub ip_pool: Text<'a>,
    #[serde(borrow)]
    pub sending_ip: Text<'a>,
    #[serde(borrow)]
    pub routing_domain: Text<'a>,
    #[serde(borrow)]
    pub delv_method: Text<'a>,
    pub bounce_class: Int,
    #[serde(borrow)]
    pub reason: Text<'a>,
    #[serde(borrow)]
    pub raw_reason: Text<'a>,
    pub error_code: Int,
    pub num_retries: Int,
    pub queue_time: Int,
    pub msg_size: Int,
    #[serde(borrow)]
    pub user_agent: Text<'a>,
    #[serde(borrow)]
    pub ip_address: Text<'a>,
    #[serde(borrow)]
    pub target_link_name: Text<'a>,
    #[serde(borrow)]
    pub target_link_url: Text<'a>,
    #[serde(borrow)]
    pub geo_ip: GeoIp<'a>,
    #[serde(borrow)]
    pub rcpt_tags: Json<'a>,
    #[serde(borrow)]
    pub rcpt_meta: Json<'a>,
    #[serde(borrow)]
    pub relay_id: Text<'a>,
    #[serde(borrow)]
    pub sms_src: Text<'a>,
    #[serde(borrow)]
    pub sms_dst: Text<'a>,
    // Documented since (SparkPost's event model, 2020-10; fixtures/documented/README.md).
    #[serde(borrow)]
    pub mailbox_provider: Text<'a>,
    #[serde(borrow)]
    pub mailbox_provider_region: Text<'a>,
    #[serde(borrow)]
    pub recipient_domain: Text<'a>,
    #[serde(borrow)]
    pub sending_domain: Text<'a>,
    pub injection_time: Timestamp,
    pub scheduled_time: Timestamp,
    pub outbound_tls: Int,
    #[serde(borrow)]
    pub recv_method: Text<'a>,
    pub click_tracking: Flag,
    pub open_tracking: Flag,
    pub initial_pixel: Flag,
    pub amp_enabled: Flag,
    pub transactional: Flag,
    #[serde(borrow)]
    pub rcpt_hash: Text<'a>,
    #[serde(borrow)]
    pub ab_test_id: Text<'a>,
    pub ab_test_version: Int,
    #[serde(borrow)]
    pub device_token: Text<'a>,
    pub sms_segments: Int,
    #[serde(borrow)]
    pub sms_coding: Text<'a>,
    #[serde(borrow)]
    pub sms_src_npi: Text<'a>,
    #[serde(borrow)]
    pub sms_src_ton: Text<'a>,
    #[serde(borrow)]
    pub sms_dst_npi: Text<'a>,
    #[serde(borrow)]
    pub sms_dst_ton: Text<'a>,
    #[serde(borrow)]
    pub sms_remoteids: Json<'a>,
    #[serde(borrow)]
    pub fbtype: Text<'a>,
    #[serde(borrow)]
    pub report_by: Text<'a>,
    #[serde(borrow)]
    pub report_to: Text<'a>,
    /// `ab_test_completed` / `ab_test_cancelled`: the test's summary object.
    #[serde(borrow)]
    pub ab_test: AbTest<'a>,
    /// Ingest events (`success` / `error`): the Ingest API batch they report on.
    #[serde(borrow, rename = "batch_id")]
    pub ingest_batch_id: Text<'a>,
    pub number_succeeded: Int,
    pub number_failed: Int,
    pub number_duplicates: Int,
    #[serde(borrow)]
    pub error_type: Text<'a>,
    pub retryable: Flag,
    pub expiration_timestamp: Timestamp,
    #[serde(borrow, rename = "href")]
    pub ingest_href: Text<'a>,
}

/// The `ab_test` object of an A/B test event: an object, or absent when it is anything else.
/// `json` keeps it whole (its templates and variants); the scalars are typed.
#[derive(Debug, Clone, Default)]
pub struct AbTest<'a> {
    pub json: Json<'a>,
    pub id: Text<'a>,
    pub name: Text<'a>,
    pub version: Int,
    pub test_mode: Text<'a>,
    pub engagement_metric: Text<'a>,
    pub winning_template_id: Text<'a>,
    pub default_template_id: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AbTestFields<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
    version: Int,
    #[serde(borrow)]
    test_mode: Text<'a>,
    #[serde(borrow)]
    engagement_metric: Text<'a>,
    #[serde(borrow)]
    winning_template_id: Text<'a>,
    #[serde(borrow)]
    default_template: TemplateRef<'a>,
}

/// `{"template_id": …}` of an A/B test's template entry.
#[derive(Default)]
struct TemplateRef<'a>(Text<'a>);

#[derive(Deserialize, Default)]
#[serde(default)]
struct TemplateFields<'a> {
    #[serde(borrow)]
    template_id: Text<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for TemplateRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Lenient(fields) = Lenient::<TemplateFields<'a>>::deserialize(d)?;
        Ok(TemplateRef(fields.unwrap_or_default().template_id))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for AbTest<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'a RawValue>::deserialize(d)?;
        if !raw.get().starts_with('{') {
            return Ok(Self::default());
        }
        let fields: AbTestFields<'a> = serde_json::from_str(raw.get()).unwrap_or_default();
        Ok(AbTest {
            json: Json(Some(raw)),
            id: fields.id,
            name: fields.name,
            version: fields.version,
            test_mode: fields.test_mode,
            engagement_metric: fields.engagement_metric,
            winning_template_id: fields.winning_template_id,
            default_template_id: fields.default_template.0,
        })
    }
}

/// `geo_ip`: an object, or absent when it is anything else.
#[derive(Debug, Clone, Default)]
pub struct GeoIp<'a> {
    pub country: Text<'a>,
    pub region: Text<'a>,
    pub city: Text<'a>,
    pub zip: Text<'a>,
    pub latitude: Float,
    pub longitude: Float,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GeoFields<'a> {
    #[serde(borrow)]
    country: Text<'a>,
    #[serde(borrow)]
    region: Text<'a>,
    #[serde(borrow)]
    city: Text<'a>,
    #[serde(borrow)]
    zip: Text<'a>,
    #[serde(borrow)]
    postal_code: Text<'a>,
    latitude: Float,
    longitude: Float,
}

impl<'de: 'a, 'a> Deserialize<'de> for GeoIp<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Lenient(fields) = Lenient::<GeoFields<'a>>::deserialize(d)?;
        let g = fields.unwrap_or_default();
        Ok(GeoIp {
            country: g.country,
            region: g.region,
            city: g.city,
            zip: if g.zip.0.is_some() {
                g.zip
            } else {
                g.postal_code
            },
            latitude: g.latitude,
            longitude: g.longitude,
        })
    }
}

/// A struct read from an object, or `None` when the value is not an object.
struct Lenient<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// What a scalar JSON value says, whatever its JSON type, read from its exact text: a number
/// stays the digits it was sent as, so a text column gets them verbatim and a typed column gets
/// its value or null, never a rounded one (and a number beyond f64's range, valid JSON, nulls
/// only its own column). `None` for null, arrays, objects, and a string that is not text (a
/// lone surrogate escape).
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Number(&'a str),
    Bool(bool),
    None,
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <&'de RawValue>::deserialize(d)?.get();
        Ok(match text.as_bytes().first() {
            Some(b'"') => {
                let inner = text.get(1..text.len() - 1).unwrap_or_default();
                if inner.contains('\\') {
                    serde_json::from_str::<String>(text)
                        .map_or(Scalar::None, |s| Scalar::Str(Cow::Owned(s)))
                } else {
                    Scalar::Str(Cow::Borrowed(inner))
                }
            }
            Some(b't') => Scalar::Bool(true),
            Some(b'f') => Scalar::Bool(false),
            Some(b'-' | b'0'..=b'9') => Scalar::Number(text),
            _ => Scalar::None,
        })
    }
}

/// An integer from a number's text, exactly: `12`, `12.0`, `1.2e1` and `1200e-2` are 12;
/// anything with a nonzero fraction, beyond i64, or not a decimal number is `None` (the text is
/// read as a decimal, never through a float, so nothing is rounded).
fn int_of(text: &str) -> Option<i64> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(i);
    }
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = || whole.bytes().chain(fraction.bytes());
    if whole.is_empty() && fraction.is_empty() || !digits().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The significant digits and the power of ten that scales them.
    let significant: Vec<u8> = digits().skip_while(|&b| b == b'0').collect();
    let trailing_zeros = significant.iter().rev().take_while(|&&b| b == b'0').count();
    let significant = &significant[..significant.len() - trailing_zeros];
    if significant.is_empty() {
        return Some(0);
    }
    let scale = exponent
        .checked_sub(i64::try_from(fraction.len()).ok()?)?
        .checked_add(i64::try_from(trailing_zeros).ok()?)?;
    if !(0..=18).contains(&scale) || significant.len() > 19 {
        return None;
    }
    let mut value: i128 = 0;
    for &d in significant {
        value = value * 10 + i128::from(d - b'0');
    }
    value *= 10_i128.pow(u32::try_from(scale).ok()?);
    i64::try_from(if negative { -value } else { value }).ok()
}

/// A text field; numbers and booleans are kept as their text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Text(match Scalar::deserialize(d)? {
            Scalar::Str(s) => Some(s),
            Scalar::Number(n) => Some(Cow::Borrowed(n)),
            Scalar::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            Scalar::None => None,
        }))
    }
}

impl Text<'_> {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// An integer field, given as a JSON number or a string of digits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Int(pub Option<i64>);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Int(match Scalar::deserialize(d)? {
            Scalar::Number(n) => int_of(n),
            Scalar::Str(s) => int_of(s.trim()),
            Scalar::Bool(_) | Scalar::None => None,
        }))
    }
}

/// A floating-point field, given as a JSON number or a numeric string.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Float(pub Option<f64>);

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Float(match Scalar::deserialize(d)? {
            Scalar::Number(n) => n.parse::<f64>().ok().filter(|f| f.is_finite()),
            Scalar::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            Scalar::Bool(_) | Scalar::None => None,
        }))
    }
}

/// A yes/no field, given as a JSON boolean, `1`/`0`, or the strings `"true"`/`"false"`/`"1"`/
/// `"0"` (any case, trimmed): SparkPost sends `transactional` as `"1"` and the tracking flags as
/// booleans. Anything else is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flag(pub Option<bool>);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = |text: &str| match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        };
        Ok(Flag(match Scalar::deserialize(d)? {
            Scalar::Bool(b) => Some(b),
            Scalar::Number(n) => int_of(n).and_then(|i| match i {
                1 => Some(true),
                0 => Some(false),
                _ => None,
            }),
            Scalar::Str(s) => word(&s),
            Scalar::None => None,
        }))
    }
}

/// `timestamp` in UTC milliseconds, in any form [`timestamp`] reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timestamp(pub Option<i64>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Timestamp(match Scalar::deserialize(d)? {
            Scalar::Number(n) => n.parse::<f64>().ok().and_then(timestamp::from_number),
            Scalar::Str(s) => timestamp::parse_str(&s),
            Scalar::Bool(_) | Scalar::None => None,
        }))
    }
}

/// A field kept as JSON text (`rcpt_tags`, `rcpt_meta`), exactly as received.
#[derive(Debug, Clone, Default)]
pub struct Json<'a>(pub Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'a RawValue>::deserialize(d)?;
        Ok(Json((raw.get() != "null").then_some(raw)))
    }
}

impl Json<'_> {
    pub fn as_str(&self) -> Option<&str> {
        self.0.map(RawValue::get)
    }
}
