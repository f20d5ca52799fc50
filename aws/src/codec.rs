//! How a message body travels on SQS.
//!
//! SQS bills each 64 KiB of a message and caps one at 1 MiB, and SparkPost JSON compresses about
//! tenfold, so a body is sent as zstd then base64 (SQS bodies must be text) with the attribute
//! `content_encoding = zstd-base64`, unless that is not smaller than the raw JSON. A consumer reads
//! both forms; a body without the attribute is raw.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;

/// The message attribute naming the body's encoding.
pub const CONTENT_ENCODING: &str = "content_encoding";
/// zstd, then base64.
pub const ZSTD_BASE64: &str = "zstd-base64";
/// zstd level. SQS bills a message per 64 KiB: a generated 350-event batch (316,825 B of JSON)
/// is 71,748 B on the wire at level 3 (two billing units) and 60,632 B at level 6 (one); the
/// extra ~2 ms of CPU per batch costs far less than a request (BENCHMARKS.md).
const LEVEL: i32 = 6;

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
            let mut out = Vec::with_capacity(packed.len() * 8);
            zstd::stream::copy_decode(&packed[..], &mut out).map_err(CodecError::Zstd)?;
            Ok(Bytes::from(out))
        }
        Some(other) => Err(CodecError::Unknown(other.to_owned())),
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
}
