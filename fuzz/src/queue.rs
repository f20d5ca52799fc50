//! The `queue_message` target: a message as SQS delivers it, through the codec, fanout and
//! writer, with in-memory ports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fanout::{Fanout, Route};
use sparklake_aws::codec::{
    self, CONTENT_ENCODING, CodecError, MAX_DECODED_BYTES, ZSTD_BASE64, to_inbound,
};
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::envelope;
use sparklake_core::message::{InboundMessage, OutboundMessage, attr};
use writer::Writer;

use crate::block_on;
use crate::checks::{RECEIVED_AT, check_error};
use crate::gen_batch::GenBatch;
use sparklake_core::memory::{MemoryArchive, MemoryQueue, MemoryStore};

static PARQUET: LazyLock<ParquetEncoder> = LazyLock::new(ParquetEncoder::default);

#[derive(Arbitrary, Debug)]
pub struct GenMessage {
    pub encoding: GenEncoding,
    pub body: GenQueueBody,
    pub batch_id: Option<String>,
    pub received_at: Option<GenReceivedAt>,
    pub extra: Vec<(String, String)>,
    pub receive_count: u32,
    /// The writer queue's message limit (fanout packs to it), from 64 bytes up.
    pub max_message_bytes: u16,
    pub route_types: Vec<String>,
    pub compress_to_writer: bool,
}

#[derive(Arbitrary, Debug)]
pub enum GenEncoding {
    /// No attribute: the body is raw.
    Absent,
    Identity,
    Empty,
    /// The body compressed by `codec::encode`, as a sender does.
    Encoded,
    /// The encoding attribute with fuzzer-made bytes as the zstd frame.
    ZstdFrame(Vec<u8>),
    /// The encoding attribute with fuzzer-made text as the base64.
    ZstdText(String),
    Other(String),
}

#[derive(Arbitrary, Debug)]
pub enum GenQueueBody {
    Batch(GenBatch),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
pub enum GenReceivedAt {
    Millis(i64),
    Text(String),
}

/// A raw input: as a plain body, as zstd-base64 text, and round-tripped through `encode`.
pub fn check_raw(data: &[u8]) {
    // encode → decode is the identity wherever encode accepts the body.
    for compress in [true, false] {
        match codec::encode(data, compress) {
            Ok(encoded) => {
                let back = codec::decode(&encoded.text, encoded.encoding).expect("decodes");
                assert_eq!(&back[..], data, "codec round trip");
                if encoded.encoding.is_some() {
                    assert!(
                        encoded.text.len() < data.len(),
                        "compressed but not smaller"
                    );
                }
            }
            Err(CodecError::NotText) => {
                assert!(std::str::from_utf8(data).is_err());
            }
            Err(e) => panic!("encode failed: {e}"),
        }
    }
    let text = String::from_utf8_lossy(data);
    let routes = BTreeSet::from(["bounce".to_owned(), "delivery".to_owned()]);
    let plain = check_delivery(&text, None, Vec::new(), 1);
    check_handlers(&plain, &routes, 4096, true);
    check_delivery(&text, Some(ZSTD_BASE64), Vec::new(), 1);
}

pub fn check_message(message: &GenMessage) {
    let plain = match &message.body {
        GenQueueBody::Batch(batch) => batch.to_body().into_bytes(),
        GenQueueBody::Bytes(bytes) => bytes.clone(),
    };
    let (text, encoding): (String, Option<&str>) = match &message.encoding {
        GenEncoding::Absent => (String::from_utf8_lossy(&plain).into_owned(), None),
        GenEncoding::Identity => (
            String::from_utf8_lossy(&plain).into_owned(),
            Some("identity"),
        ),
        GenEncoding::Empty => (String::from_utf8_lossy(&plain).into_owned(), Some("")),
        GenEncoding::Encoded => match codec::encode(&plain, true) {
            Ok(e) => (e.text, e.encoding),
            Err(_) => return,
        },
        GenEncoding::ZstdFrame(frame) => (STANDARD.encode(frame), Some(ZSTD_BASE64)),
        GenEncoding::ZstdText(t) => (t.clone(), Some(ZSTD_BASE64)),
        GenEncoding::Other(name) => (String::from_utf8_lossy(&plain).into_owned(), Some(name)),
    };
    let mut attributes: Vec<(String, String)> = message.extra.clone();
    if let Some(id) = &message.batch_id {
        attributes.push((attr::BATCH_ID.into(), id.clone()));
    }
    match &message.received_at {
        Some(GenReceivedAt::Millis(ms)) => {
            attributes.push((attr::RECEIVED_AT.into(), ms.to_string()));
        }
        Some(GenReceivedAt::Text(t)) => attributes.push((attr::RECEIVED_AT.into(), t.clone())),
        None => {}
    }
    if let Some(e) = encoding {
        attributes.push((CONTENT_ENCODING.into(), e.to_owned()));
    }
    let routes: BTreeSet<String> = message.route_types.iter().cloned().collect();
    let max = 64 + usize::from(message.max_message_bytes);
    let inbound = check_delivery(&text, encoding, attributes, message.receive_count);
    check_handlers(&inbound, &routes, max, message.compress_to_writer);
}

/// A delivery through `to_inbound`: the body decoded (or passed on as received when it cannot
/// be), the encoding attribute gone. Runs the handlers on it with default settings.
fn check_delivery(
    text: &str,
    encoding: Option<&str>,
    attributes: Vec<(String, String)>,
    receive_count: u32,
) -> InboundMessage {
    let expected_attributes: BTreeMap<String, String> = attributes
        .iter()
        .filter(|(k, _)| k != CONTENT_ENCODING)
        .cloned()
        .collect();
    let decoded = codec::decode(text, encoding);
    let inbound = to_inbound("m-1", text, encoding, attributes, receive_count);
    match &decoded {
        Ok(body) => {
            assert!(
                body.len() <= MAX_DECODED_BYTES.max(text.len()),
                "decode cap"
            );
            assert_eq!(&inbound.body, body);
        }
        Err(_) => assert_eq!(&inbound.body[..], text.as_bytes(), "undecodable passed on"),
    }
    assert_eq!(inbound.attributes, expected_attributes);
    assert_eq!(inbound.receive_count, receive_count);
    inbound
}

/// Fanout, then the writer on what fanout sent.
fn check_handlers(message: &InboundMessage, routes: &BTreeSet<String>, max: usize, compress: bool) {
    let verdict = envelope::validate(&message.body);
    let events_queue = MemoryQueue::new(max);
    let route_queue = MemoryQueue::new(max);
    let archive = MemoryArchive::default();
    let route = [Route {
        name: "fuzz".into(),
        event_types: routes.clone(),
        queue: &route_queue,
    }];
    let fanout = Fanout {
        events: &events_queue,
        routes: &route,
        archive: Some(&archive),
    };
    let outcome = block_on(fanout.handle(std::slice::from_ref(message)));
    let to_writer = events_queue.take();
    let routed = route_queue.take();
    let archived = archive.records();

    let batch = match verdict {
        Err(e) => {
            check_error(&message.body, &e);
            assert_eq!(outcome.failed, vec![message.id.clone()]);
            assert!(to_writer.is_empty() && routed.is_empty() && archived.is_empty());
            return;
        }
        Ok(batch) => batch,
    };
    let too_large = batch.events().any(|(e, _)| e.raw.len() + 2 > max);
    if too_large {
        assert_eq!(outcome.failed, vec![message.id.clone()]);
        assert!(to_writer.is_empty() && routed.is_empty() && archived.is_empty());
        return;
    }
    assert!(outcome.failed.is_empty(), "fanout failed a valid message");
    assert_eq!(outcome.events, batch.event_count());

    // Per type, the writer's messages hold that type's events in order; routes a subset.
    let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (e, head) in batch.events() {
        by_type.entry(&head.event_type).or_default().push(e.raw);
    }
    assert_eq!(grouped(&to_writer, max, message), as_owned(&by_type, None));
    assert_eq!(
        grouped(&routed, max, message),
        as_owned(&by_type, Some(routes))
    );
    // The archive: one NDJSON line per event, the same JSON.
    assert_eq!(archived.len(), batch.event_count());
    for (record, (e, _)) in archived.iter().zip(batch.events()) {
        assert!(!record.contains(&b'\n'), "an archive record spans lines");
        let text = std::str::from_utf8(record).expect("UTF-8 record");
        assert_eq!(
            crate::reference::J::parse(text),
            crate::reference::J::parse(e.raw)
        );
    }

    check_writer(&to_writer, compress, batch.event_count());
}

type Grouped = BTreeMap<String, Vec<String>>;

fn as_owned(by_type: &BTreeMap<&str, Vec<&str>>, only: Option<&BTreeSet<String>>) -> Grouped {
    by_type
        .iter()
        .filter(|(t, _)| only.is_none_or(|o| o.contains(**t)))
        .map(|(t, raws)| {
            (
                (*t).to_owned(),
                raws.iter().map(|r| (*r).to_owned()).collect(),
            )
        })
        .collect()
}

fn grouped(messages: &[OutboundMessage], max: usize, from: &InboundMessage) -> Grouped {
    let mut out = Grouped::new();
    for m in messages {
        assert!(m.body.len() <= max, "a message over the limit");
        let t = m
            .attributes
            .get(attr::EVENT_TYPE)
            .expect("event_type attribute");
        for name in [attr::BATCH_ID, attr::RECEIVED_AT] {
            assert_eq!(
                m.attributes.get(name).map(String::as_str),
                from.attribute(name)
            );
        }
        let batch = envelope::validate(&m.body).expect("a fanout message validates");
        for (e, head) in batch.events() {
            assert_eq!(&head.event_type, t, "a message mixes types");
            out.entry(t.clone()).or_default().push(e.raw.to_owned());
        }
    }
    out
}

/// The writer over fanout's messages, each sent through the codec as SQS would carry it.
fn check_writer(messages: &[OutboundMessage], compress: bool, events: usize) {
    let inbound: Vec<InboundMessage> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let encoded = codec::encode(&m.body, compress).expect("a batch is text");
            let mut attributes: Vec<(String, String)> = m
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Some(e) = encoded.encoding {
                attributes.push((CONTENT_ENCODING.into(), e.into()));
            }
            let inbound = to_inbound(
                &format!("w-{i}"),
                &encoded.text,
                encoded.encoding,
                attributes,
                1,
            );
            assert_eq!(inbound.body, m.body, "codec round trip");
            inbound
        })
        .collect();
    let store = MemoryStore::default();
    let writer = Writer {
        store: &store,
        parquet: &PARQUET,
        timestamps: Default::default(),
        catalog: None,
    };
    let outcome = block_on(writer.handle(&inbound, RECEIVED_AT));
    assert!(
        outcome.failed.is_empty(),
        "the writer failed valid messages"
    );
    assert_eq!(outcome.rows + outcome.duplicates, events, "rows lost");
    let objects = store.take();
    assert_eq!(objects.len(), outcome.objects.len());
    let mut csv_rows = 0;
    for object in &objects {
        let (key, body) = (&object.key, &object.body);
        if key.ends_with(".csv") {
            let mut reader = csv::Reader::from_reader(&body[..]);
            for record in reader.records() {
                record.expect("CSV reads back");
                csv_rows += 1;
            }
        } else {
            assert!(key.ends_with(".parquet"));
            assert!(body.starts_with(b"PAR1") && body.ends_with(b"PAR1"));
        }
    }
    assert_eq!(csv_rows, outcome.rows, "CSV rows");
}
