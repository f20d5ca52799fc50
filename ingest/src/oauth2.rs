//! SparkPost's OAuth2 mode: the token endpoint SparkPost asks for a token, and the tokens it
//! hands out.
//!
//! SparkPost posts its webhook's `auth_request_details.body` (client id and secret, grant type
//! `client_credentials`) to the token URL, expects `{"access_token", "expires_in"}`, then sends
//! `Authorization: Bearer <token>` with every batch and asks again when a batch is answered 400
//! or 401. Tokens are stateless: `sl1.<expiry>.<nonce>.<mac>`, the MAC an HMAC-SHA256 of the rest
//! under the signing key, so any instance (every Lambda, a restarted `serve`) verifies any token
//! without storing it. Verification compares MACs in constant time under the current and the
//! previous key (rotation) and checks the expiry. The client secret is kept only as a digest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::HeaderMap;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ConfigError;

/// Where SparkPost asks for a token.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// The largest token request read (a client id and secret, form or JSON).
pub const TOKEN_REQUEST_MAX_BYTES: usize = 16 * 1024;
/// Tokens last this long unless `SPARKLAKE_OAUTH2_TOKEN_TTL_SECS` says otherwise.
pub const DEFAULT_TTL_SECS: u64 = 3600;
/// A signing key shorter than this is refused (HMAC-SHA256 keys should hold 256 bits).
pub const MIN_KEY_BYTES: usize = 32;
const TOKEN_PREFIX: &str = "sl1";

/// The variables [`OAuth2::from_lookup`] reads.
pub const VARIABLES: &[&str] = &[
    "SPARKLAKE_OAUTH2_CLIENT_ID",
    "SPARKLAKE_OAUTH2_CLIENT_SECRET",
    "SPARKLAKE_OAUTH2_SIGNING_KEY",
    "SPARKLAKE_OAUTH2_SIGNING_KEY_PREVIOUS",
    "SPARKLAKE_OAUTH2_TOKEN_TTL_SECS",
];

/// The token issuer and verifier. `Debug` shows no secret.
#[derive(Clone)]
pub struct OAuth2 {
    /// Digest of `client_id`, then of `client_secret` (compared together, in constant time).
    client: [u8; 32],
    /// The current signing key first, then the previous one while rotating.
    keys: Vec<Vec<u8>>,
    ttl: Duration,
}

impl std::fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("keys", &self.keys.len())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A token request refused, as RFC 6749 5.2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// 400: not a form or JSON object, or a field missing or sent twice.
    InvalidRequest,
    /// 400: a grant type other than `client_credentials`.
    UnsupportedGrantType,
    /// 401: wrong client id or secret.
    InvalidClient,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidClient => "invalid_client",
        }
    }
}

/// An issued token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub access_token: String,
    pub expires_in: u64,
}

fn client_digest(id: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(Sha256::digest(id));
    h.update(Sha256::digest(secret));
    h.finalize().into()
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sixteen bytes that differ between any two tokens of a process (and, with the time and the
/// process id, of any two processes): not a secret, only what keeps two tokens apart.
fn nonce() -> [u8; 16] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::new()
        .chain_update(nanos.to_le_bytes())
        .chain_update(std::process::id().to_le_bytes())
        .chain_update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes())
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

impl OAuth2 {
    /// Reads [`VARIABLES`]; each but the previous key and the TTL is required.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(name, "oauth2"))
        };
        let id = required(VARIABLES[0])?;
        let secret = required(VARIABLES[1])?;
        let mut keys = vec![required(VARIABLES[2])?.into_bytes()];
        if let Some(previous) = lookup(VARIABLES[3]).filter(|v| !v.is_empty()) {
            keys.push(previous.into_bytes());
        }
        if let Some(short) = keys.iter().position(|k| k.len() < MIN_KEY_BYTES) {
            return Err(ConfigError::Invalid(
                VARIABLES[2 + short.min(1)],
                format!("a signing key must hold at least {MIN_KEY_BYTES} bytes"),
            ));
        }
        let ttl = match lookup(VARIABLES[4]).filter(|v| !v.trim().is_empty()) {
            None => DEFAULT_TTL_SECS,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (1..=86_400).contains(&n) => n,
                _ => {
                    return Err(ConfigError::Invalid(
                        VARIABLES[4],
                        format!("`{v}` is not a number of seconds from 1 to 86400"),
                    ));
                }
            },
        };
        Ok(Self {
            client: client_digest(id.as_bytes(), secret.as_bytes()),
            keys,
            ttl: Duration::from_secs(ttl),
        })
    }

    fn mac(key: &[u8], payload: &str) -> [u8; 32] {
        hmac_sha256(key, payload.as_bytes())
    }

    /// A token valid for the TTL from `now` (unix seconds), under the current key.
    pub fn issue_at(&self, now: u64) -> Token {
        let expiry = now.saturating_add(self.ttl.as_secs());
        let payload = format!(
            "{TOKEN_PREFIX}.{expiry}.{}",
            URL_SAFE_NO_PAD.encode(nonce())
        );
        let mac = Self::mac(&self.keys[0], &payload);
        Token {
            access_token: format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac)),
            expires_in: self.ttl.as_secs(),
        }
    }

    /// Whether `token` was issued under one of the keys and has not expired at `now` (unix
    /// seconds). Every key's MAC is compared, in constant time.
    pub fn verify_at(&self, token: &str, now: u64) -> bool {
        let Some((payload, mac)) = token.rsplit_once('.') else {
            return false;
        };
        let Ok(mac) = URL_SAFE_NO_PAD.decode(mac) else {
            return false;
        };
        if mac.len() != 32 {
            return false;
        }
        let signed = self.keys.iter().fold(false, |any, key| {
            any | bool::from(Self::mac(key, payload).ct_eq(&mac))
        });
        if !signed {
            return false;
        }
        let mut fields = payload.split('.');
        let (Some(TOKEN_PREFIX), Some(expiry), Some(_nonce), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        expiry.parse::<u64>().is_ok_and(|expiry| now < expiry)
    }

    pub fn verify(&self, token: &str) -> bool {
        self.verify_at(token, unix_now())
    }

    /// Answers a token request (its headers and body) at `now` (unix seconds): the client's
    /// credentials come in the body (form or JSON, as SparkPost sends its
    /// `auth_request_details.body`) or as HTTP basic (RFC 6749 2.3.1).
    pub fn token_for_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: u64,
    ) -> Result<Token, TokenError> {
        let fields = parse_fields(headers, body)?;
        let field = |name: &str| -> Result<Option<&str>, TokenError> {
            let mut values = fields
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            let first = values.next();
            if values.next().is_some() {
                return Err(TokenError::InvalidRequest);
            }
            Ok(first)
        };
        match field("grant_type")? {
            None | Some("client_credentials") => {}
            Some(_) => return Err(TokenError::UnsupportedGrantType),
        }
        let (id, secret) = match (field("client_id")?, field("client_secret")?) {
            (Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
            (None, None) => basic_client(headers).ok_or(TokenError::InvalidRequest)?,
            _ => return Err(TokenError::InvalidRequest),
        };
        let presented = client_digest(id.as_bytes(), secret.as_bytes());
        if !bool::from(self.client.ct_eq(&presented)) {
            return Err(TokenError::InvalidClient);
        }
        Ok(self.issue_at(now))
    }

    pub fn token_for(&self, headers: &HeaderMap, body: &[u8]) -> Result<Token, TokenError> {
        self.token_for_at(headers, body, unix_now())
    }
}

/// The request's fields: a JSON object of strings, or `application/x-www-form-urlencoded`.
fn parse_fields(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, TokenError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let looks_json = content_type.contains("json")
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if looks_json {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| TokenError::InvalidRequest)?;
        let object = value.as_object().ok_or(TokenError::InvalidRequest)?;
        return object
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(TokenError::InvalidRequest),
            })
            .collect();
    }
    let text = std::str::from_utf8(body).map_err(|_| TokenError::InvalidRequest)?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((form_decode(k)?, form_decode(v)?))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn form_decode(text: &str) -> Result<String, TokenError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(TokenError::InvalidRequest)?;
                let hex = std::str::from_utf8(hex).map_err(|_| TokenError::InvalidRequest)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| TokenError::InvalidRequest)?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| TokenError::InvalidRequest)
}

/// `Authorization: Basic base64(id:secret)`, the client authentication RFC 6749 prefers.
fn basic_client(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credential) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(credential.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const OTHER_KEY: &str = "fedcba9876543210fedcba9876543210";

    fn oauth(keys: &[&str], ttl: &str) -> OAuth2 {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        let ttl = ttl.to_owned();
        OAuth2::from_lookup(&|name| match name {
            "SPARKLAKE_OAUTH2_CLIENT_ID" => Some("sparkpost".into()),
            "SPARKLAKE_OAUTH2_CLIENT_SECRET" => Some("s3cret".into()),
            "SPARKLAKE_OAUTH2_SIGNING_KEY" => keys.first().cloned(),
            "SPARKLAKE_OAUTH2_SIGNING_KEY_PREVIOUS" => keys.get(1).cloned(),
            "SPARKLAKE_OAUTH2_TOKEN_TTL_SECS" => Some(ttl.clone()),
            _ => None,
        })
        .unwrap()
    }

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_is_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (test case 6).
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let o = oauth(&[KEY], "60");
        let token = o.issue_at(1_000);
        assert_eq!(token.expires_in, 60);
        assert!(o.verify_at(&token.access_token, 1_000));
        assert!(o.verify_at(&token.access_token, 1_059));
        assert!(!o.verify_at(&token.access_token, 1_060));
        assert_ne!(o.issue_at(1_000).access_token, token.access_token);
    }

    #[test]
    fn tampered_foreign_and_malformed_tokens_fail() {
        let o = oauth(&[KEY], "60");
        let token = o.issue_at(1_000).access_token;
        let (payload, mac) = token.rsplit_once('.').unwrap();
        // A later expiry with the old MAC.
        let longer = payload.replacen(".1060.", ".99999.", 1);
        assert!(!o.verify_at(&format!("{longer}.{mac}"), 1_000));
        // One character of the MAC changed.
        let mut bad = mac.to_owned().into_bytes();
        bad[3] = if bad[3] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(!o.verify_at(&format!("{payload}.{bad}"), 1_000));
        // Signed with another key.
        let foreign = oauth(&[OTHER_KEY], "60").issue_at(1_000).access_token;
        assert!(!o.verify_at(&foreign, 1_000));
        for junk in [
            "",
            ".",
            "sl1",
            "sl1.1060.x.",
            "a.b.c.d.e",
            &token[..token.len() - 1],
        ] {
            assert!(!o.verify_at(junk, 1_000), "{junk}");
        }
    }

    #[test]
    fn the_previous_key_verifies_during_rotation() {
        let old = oauth(&[OTHER_KEY], "60");
        let rotated = oauth(&[KEY, OTHER_KEY], "60");
        let before = old.issue_at(1_000).access_token;
        assert!(rotated.verify_at(&before, 1_000));
        // New tokens are signed with the new key only.
        let after = rotated.issue_at(1_000).access_token;
        assert!(!old.verify_at(&after, 1_000));
        assert!(oauth(&[KEY], "60").verify_at(&after, 1_000));
    }

    #[test]
    fn token_requests_as_sparkpost_and_rfc_6749_send_them() {
        let o = oauth(&[KEY], "60");
        let json = HeaderMap::from_iter([(CONTENT_TYPE, "application/json".parse().unwrap())]);
        let form = HeaderMap::from_iter([(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        )]);
        let ok = [
            (
                &json,
                r#"{"client_id":"sparkpost","client_secret":"s3cret","grant_type":"client_credentials"}"#,
            ),
            (
                &json,
                r#"{"client_id":"sparkpost","client_secret":"s3cret"}"#,
            ),
            (
                &form,
                "grant_type=client_credentials&client_id=sparkpost&client_secret=s3cr%65t",
            ),
        ];
        for (headers, body) in ok {
            let token = o.token_for_at(headers, body.as_bytes(), 5).unwrap();
            assert!(o.verify_at(&token.access_token, 5), "{body}");
        }
        let basic = HeaderMap::from_iter([
            (
                CONTENT_TYPE,
                "application/x-www-form-urlencoded".parse().unwrap(),
            ),
            (
                AUTHORIZATION,
                format!("Basic {}", STANDARD.encode("sparkpost:s3cret"))
                    .parse()
                    .unwrap(),
            ),
        ]);
        assert!(
            o.token_for_at(&basic, b"grant_type=client_credentials", 5)
                .is_ok()
        );
        let refused = [
            (
                &json,
                r#"{"client_id":"sparkpost","client_secret":"wrong"}"#,
                TokenError::InvalidClient,
            ),
            (
                &json,
                r#"{"client_id":"other","client_secret":"s3cret"}"#,
                TokenError::InvalidClient,
            ),
            (
                &json,
                r#"{"client_id":"sparkpost"}"#,
                TokenError::InvalidRequest,
            ),
            (
                &json,
                r#"{"client_id":"sparkpost","client_secret":1}"#,
                TokenError::InvalidRequest,
            ),
            (&json, r#"["client_id"]"#, TokenError::InvalidRequest),
            (
                &json,
                r#"{"client_id":"sparkpost","client_secret":"s3cret","grant_type":"password"}"#,
                TokenError::UnsupportedGrantType,
            ),
            (
                &form,
                "client_id=sparkpost&client_id=sparkpost&client_secret=s3cret",
                TokenError::InvalidRequest,
            ),
            (
                &form,
                "client_id=sparkpost&client_secret=%zz",
                TokenError::InvalidRequest,
            ),
            (&form, "", TokenError::InvalidRequest),
        ];
        for (headers, body, error) in refused {
            assert_eq!(
                o.token_for_at(headers, body.as_bytes(), 5),
                Err(error),
                "{body}"
            );
        }
    }

    #[test]
    fn configuration_is_checked() {
        let lookup = |short_key: bool| {
            move |name: &str| match name {
                "SPARKLAKE_OAUTH2_CLIENT_ID" => Some("id".to_owned()),
                "SPARKLAKE_OAUTH2_CLIENT_SECRET" => Some("secret".to_owned()),
                "SPARKLAKE_OAUTH2_SIGNING_KEY" => {
                    Some(if short_key { "short" } else { KEY }.to_owned())
                }
                _ => None,
            }
        };
        assert!(OAuth2::from_lookup(&lookup(false)).is_ok());
        assert!(matches!(
            OAuth2::from_lookup(&lookup(true)),
            Err(ConfigError::Invalid("SPARKLAKE_OAUTH2_SIGNING_KEY", _))
        ));
        assert!(matches!(
            OAuth2::from_lookup(&|_: &str| None),
            Err(ConfigError::Missing("SPARKLAKE_OAUTH2_CLIENT_ID", "oauth2"))
        ));
        assert!(!format!("{:?}", OAuth2::from_lookup(&lookup(false)).unwrap()).contains(KEY));
    }
}
