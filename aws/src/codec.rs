//! How a message body travels on SQS.
//!
//! SQS bills each 64 KiB of a message and caps one at 1 MiB, and SparkPost JSON compresses about
//! tenfold, so a body is sent as zstd then base64 (SQS bodies must be text) with the attribute
//! `content_encoding = zstd-base64`, unless that is not smaller than the raw JSON. A consumer reads
//! both forms; a body without the attribute is raw.

use std::io::Read as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use sparklake_core::message::{Attributes, InboundMessage};
use tracing::warn;

/// The message attribute naming the body's encoding.
pub const CONTENT_ENCODING: &str = "content_encoding";
/// zstd, then base64.
pub const ZSTD_BASE64: &str = "zstd-base64";
/// zstd level. SQS bills a message per 64 KiB: a generated 350-event batch (316,825 B of JSON)
/// is 71,748 B on the wire at level 3 (two billing units) and 60,632 B at level 6 (one); the
/// extra ~2 ms of CPU per batch costs far less than a request (BENCHMARKS.md).
const LEVEL: i32 = 6;
/// The most a zstd body may inflate to. Every body sparklake compresses is a queue message, at
/// most 1 MiB before compression; a larger one is refused rather than inflated, so a small
/// hostile message (a "zstd bomb") cannot exhaust a consumer's memory.
pub const MAX_DECODED_BYTES: usize = 4 * 1024 * 1024;
/// Largest zstd window accepted (2^23 = 8 MiB). A frame header can ask the decoder for a window
/// of up to 2 GiB, allocated before any output; what `encode` writes never needs more than the
/// body's own size.
const WINDOW_LOG_MAX: u32 = 23;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("body is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("body is not valid zstd: {0}")]
    Zstd(#[source] std::io::Error),
    #[error("raw body is not UTF-8 text, which SQS requires")]
    NotText,
    #[error("unknown content encoding `{0}`")]
    Unknown(String),
    #[error("body inflates to more than {max} bytes")]
    TooLarge { max: usize },
}

/// A body ready for SQS: its text and the encoding attribute to send with it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub text: String,
    pub encoding: Option<&'static str>,
}

/// Encodes a body, compressing when that makes it smaller.
pub fn encode(body: &[u8], compress: bool) -> Result<Encoded, CodecError> {
    if compress
        && let Ok(packed) = zstd::bulk::compress(body, LEVEL)
        && base64_len(packed.len()) < body.len()
    {
        return Ok(Encoded {
            text: STANDARD.encode(packed),
            encoding: Some(ZSTD_BASE64),
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| CodecError::NotText)?;
    Ok(Encoded {
        text: text.to_owned(),
        encoding: None,
    })
}

/// Decodes a body received with the given encoding attribute.
pub fn decode(text: &str, encoding: Option<&str>) -> Result<Bytes, CodecError> {
    match encoding {
        None | Some("" | "identity") => Ok(Bytes::copy_from_slice(text.as_bytes())),
        Some(ZSTD_BASE64) => {
            let packed = STANDARD.decode(text.trim())?;
            let mut decoder =
                zstd::stream::read::Decoder::new(&packed[..]).map_err(CodecError::Zstd)?;
            decoder
                .window_log_max(WINDOW_LOG_MAX)
                .map_err(CodecError::Zstd)?;
            let limit = u64::try_from(MAX_DECODED_BYTES)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            let mut out = Vec::with_capacity(packed.len().saturating_mul(8).min(MAX_DECODED_BYTES));
            decoder
                .take(limit)
                .read_to_end(&mut out)
                .map_err(CodecError::Zstd)?;
            if out.len() > MAX_DECODED_BYTES {
                return Err(CodecError::TooLarge {
                    max: MAX_DECODED_BYTES,
                });
            }
            Ok(Bytes::from(out))
        }
        Some(other) => Err(CodecError::Unknown(other.to_owned())),
    }
}

/// Turns a received SQS message into the handlers' message, undoing the body's encoding. A body
/// that cannot be decoded is passed on as received, so the handler reports it failed and it
/// reaches the dead-letter queue instead of vanishing.
pub fn to_inbound(
    id: &str,
    body: &str,
    encoding: Option<&str>,
    attributes: impl IntoIterator<Item = (String, String)>,
    receive_count: u32,
) -> InboundMessage {
    let body = decode(body, encoding).unwrap_or_else(|e| {
        warn!(id, error = %e, "undecodable message body; passing it on to fail");
        bytes::Bytes::copy_from_slice(body.as_bytes())
    });
    InboundMessage {
        id: id.to_owned(),
        body,
        attributes: attributes
            .into_iter()
            .filter(|(k, _)| k != CONTENT_ENCODING)
            .collect::<Attributes>(),
        receive_count,
    }
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/sparkpost/batch.json"
        );
        std::fs::read(path).unwrap_or_default()
    }

    #[test]
    fn sparkpost_json_compresses_and_round_trips() {
        let body = sample();
        assert!(body.len() > 20_000);
        let encoded = encode(&body, true).expect("encode");
        assert_eq!(encoded.encoding, Some(ZSTD_BASE64));
        assert!(
            encoded.text.len() * 4 < body.len(),
            "{} vs {}",
            encoded.text.len(),
            body.len()
        );
        assert_eq!(
            decode(&encoded.text, encoded.encoding).expect("decode"),
            body
        );
    }

    #[test]
    fn small_or_incompressible_bodies_travel_raw() {
        let ping = br#"[{"msys":{}}]"#;
        let encoded = encode(ping, true).expect("encode");
        assert_eq!(
            encoded,
            Encoded {
                text: String::from_utf8_lossy(ping).into_owned(),
                encoding: None
            }
        );
        assert_eq!(decode(&encoded.text, None).expect("decode"), &ping[..]);
        let off = encode(&sample(), false).expect("encode");
        assert_eq!(off.encoding, None);
    }

    #[test]
    fn bad_encodings_are_errors_not_panics() {
        assert!(matches!(
            decode("!!", Some(ZSTD_BASE64)),
            Err(CodecError::Base64(_))
        ));
        assert!(matches!(
            decode("aGVsbG8=", Some(ZSTD_BASE64)),
            Err(CodecError::Zstd(_))
        ));
        assert!(matches!(
            decode("x", Some("br")),
            Err(CodecError::Unknown(_))
        ));
        assert!(matches!(
            encode(&[0xff, 0xfe], false),
            Err(CodecError::NotText)
        ));
    }

    #[test]
    fn a_zstd_bomb_is_refused_not_inflated() {
        // 64 MiB of one byte packs into a few KiB: decoding it whole would take 64 MiB.
        let bomb = zstd::bulk::compress(&vec![b'['; 64 << 20], 3).expect("compress");
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        let text = STANDARD.encode(&bomb);
        assert!(matches!(
            decode(&text, Some(ZSTD_BASE64)),
            Err(CodecError::TooLarge {
                max: MAX_DECODED_BYTES
            })
        ));
        // Exactly the limit still decodes.
        let full = vec![b' '; MAX_DECODED_BYTES];
        let packed = STANDARD.encode(zstd::bulk::compress(&full, 3).expect("compress"));
        assert_eq!(
            decode(&packed, Some(ZSTD_BASE64)).expect("decode").len(),
            MAX_DECODED_BYTES
        );
    }

    #[test]
    fn a_frame_asking_for_a_huge_window_is_refused() {
        // A streamed frame (no content size) compressed with a 128 MiB window: its header asks
        // the decoder for that window before a byte comes out.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        encoder.window_log(27).expect("window log");
        encoder.long_distance_matching(true).expect("ldm");
        std::io::Write::write_all(&mut encoder, b"[{\"msys\":{}}]").expect("write");
        let frame = encoder.finish().expect("finish");
        assert!(matches!(
            decode(&STANDARD.encode(frame), Some(ZSTD_BASE64)),
            Err(CodecError::Zstd(_))
        ));
    }
}
