//! Authentication of webhook requests, as SparkPost can send it: HTTP basic, an OAuth2 bearer
//! token, and a custom header with a secret value.
//!
//! Basic and bearer both travel in `Authorization`, so when both are enabled either one passes;
//! an enabled custom header is required in addition. Secrets are kept only as SHA-256 digests
//! and compared digest to digest with `subtle`'s constant-time equality: what is compared is
//! always 32 bytes, whatever the secret's or the attempt's length, and every configured secret
//! of a mode is compared (no early exit on the first match), so the time taken does not depend
//! on how much of a secret an attempt got right.
//!
//! Parsing follows RFC 9110/7235 where it is standard: the scheme name is case-insensitive
//! (`bearer`, `BEARER`), one or more spaces separate it from the credential, and whitespace
//! around the whole field value is not part of it. Secrets are compared exactly (case, every
//! byte). Anything else is refused: a tab or a space inside the credential, a field sent twice,
//! bytes that are not visible ASCII in `Authorization`.
//!
//! Each mode can accept two credentials at once, for rotating them without refusing a batch:
//! several comma-separated bearer tokens, and a `*_PREVIOUS` password or header value beside the
//! current one (see SECURITY.md).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ConfigError, parse_modes};
use crate::oauth2::OAuth2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Basic,
    Bearer,
    Header,
    /// SparkPost's OAuth2 mode: bearer tokens this service issued at `/oauth2/token`.
    OAuth2,
}

/// A secret held as its digest.
#[derive(Clone)]
struct Secret([u8; 32]);

impl Secret {
    fn new(value: &[u8]) -> Self {
        Self(Sha256::digest(value).into())
    }

    fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        bool::from(self.0.ct_eq(&digest))
    }
}

/// The configured authentication. `Debug` never shows a secret.
#[derive(Clone, Default)]
pub struct Auth {
    modes: Vec<Mode>,
    /// `user:password` digests: the current one and, while rotating, the previous one.
    basic: Vec<Secret>,
    bearer: Vec<Secret>,
    /// The header and its accepted values' digests (current, and previous while rotating).
    header: Option<(HeaderName, Vec<Secret>)>,
    /// The token issuer, when OAuth2 is on.
    oauth2: Option<OAuth2>,
}

/// Whether any of `secrets` matches `presented`; compares with every one of them, so the time
/// taken does not tell which one (if any) matched.
fn any_matches(secrets: &[Secret], presented: &[u8]) -> bool {
    secrets
        .iter()
        .fold(false, |any, s| any | s.matches(presented))
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("modes", &self.modes)
            .field("basic_credentials", &self.basic.len())
            .field("bearer_tokens", &self.bearer.len())
            .field("header", &self.header.as_ref().map(|(n, _)| n))
            .field("oauth2", &self.oauth2)
            .finish_non_exhaustive()
    }
}

/// Why a request was refused; safe to log (it holds no credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no credential")]
    Missing,
    #[error("credential is malformed")]
    Malformed,
    #[error("credential is wrong")]
    Wrong,
    #[error("required header is missing or wrong")]
    Header,
    #[error("credential header sent more than once")]
    Repeated,
}

impl Auth {
    /// No authentication at all.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn modes(&self) -> &[Mode] {
        &self.modes
    }

    /// Builds from `SPARKLAKE_AUTH`'s value and the variables each mode needs.
    pub fn from_lookup(
        modes: &str,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let required = |name: &'static str, mode: &'static str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(name, mode))
        };
        let modes = parse_modes(modes)?;
        let mut auth = Auth {
            modes: modes.clone(),
            ..Auth::default()
        };
        for mode in modes {
            match mode {
                Mode::Basic => {
                    let user = required("SPARKLAKE_BASIC_USER", "basic")?;
                    let password = required("SPARKLAKE_BASIC_PASSWORD", "basic")?;
                    auth.basic
                        .push(basic_secret("SPARKLAKE_BASIC_USER", &user, &password)?);
                    let previous =
                        lookup("SPARKLAKE_BASIC_PASSWORD_PREVIOUS").filter(|v| !v.is_empty());
                    if let Some(previous) = previous {
                        let user = lookup("SPARKLAKE_BASIC_USER_PREVIOUS")
                            .filter(|v| !v.is_empty())
                            .unwrap_or(user);
                        auth.basic.push(basic_secret(
                            "SPARKLAKE_BASIC_USER_PREVIOUS",
                            &user,
                            &previous,
                        )?);
                    }
                }
                Mode::Bearer => {
                    let tokens = required("SPARKLAKE_BEARER_TOKENS", "bearer")?;
                    let tokens: Vec<&str> = tokens
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .collect();
                    if tokens.is_empty() {
                        return Err(ConfigError::Missing("SPARKLAKE_BEARER_TOKENS", "bearer"));
                    }
                    // A token that is not visible ASCII without blanks could never be presented
                    // in a well-formed `Authorization: Bearer` field: refuse it up front.
                    if let Some(i) = tokens
                        .iter()
                        .position(|t| !t.bytes().all(|b| b.is_ascii_graphic()))
                    {
                        return Err(ConfigError::Invalid(
                            "SPARKLAKE_BEARER_TOKENS",
                            format!(
                                "token {} holds a blank or a character that is not visible ASCII",
                                i + 1
                            ),
                        ));
                    }
                    auth.bearer = tokens.iter().map(|t| Secret::new(t.as_bytes())).collect();
                }
                Mode::Header => {
                    let name = required("SPARKLAKE_HEADER_NAME", "header")?;
                    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                        ConfigError::Invalid(
                            "SPARKLAKE_HEADER_NAME",
                            format!("`{name}` is not a header name"),
                        )
                    })?;
                    let value = required("SPARKLAKE_HEADER_VALUE", "header")?;
                    let mut values = vec![Secret::new(value.as_bytes())];
                    if let Some(previous) =
                        lookup("SPARKLAKE_HEADER_VALUE_PREVIOUS").filter(|v| !v.is_empty())
                    {
                        values.push(Secret::new(previous.as_bytes()));
                    }
                    auth.header = Some((name, values));
                }
                Mode::OAuth2 => auth.oauth2 = Some(OAuth2::from_lookup(lookup)?),
            }
        }
        Ok(auth)
    }

    /// The `WWW-Authenticate` challenge to send with a 401, if a scheme needs one.
    pub fn challenge(&self) -> Option<&'static str> {
        if !self.basic.is_empty() {
            Some(r#"Basic realm="sparklake", charset="UTF-8""#)
        } else if !self.bearer.is_empty() || self.oauth2.is_some() {
            Some(r#"Bearer realm="sparklake""#)
        } else {
            None
        }
    }

    /// The token issuer, when OAuth2 is on.
    pub fn oauth2(&self) -> Option<&OAuth2> {
        self.oauth2.as_ref()
    }

    /// Checks a request's headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        if !self.basic.is_empty() || !self.bearer.is_empty() || self.oauth2.is_some() {
            self.check_authorization(headers)?;
        }
        if let Some((name, secrets)) = &self.header {
            let value = single(headers, name).map_err(|e| match e {
                AuthFailure::Repeated => AuthFailure::Repeated,
                _ => AuthFailure::Header,
            })?;
            if !any_matches(secrets, value.as_bytes()) {
                return Err(AuthFailure::Header);
            }
        }
        Ok(())
    }

    fn check_authorization(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        let value = single(headers, &AUTHORIZATION)?;
        // Visible ASCII only (`to_str` refuses NUL, obs-text and other bytes).
        let value = value.to_str().map_err(|_| AuthFailure::Malformed)?;
        // RFC 9110: whitespace around a field value is not part of it.
        let value = value.trim_matches([' ', '\t']);
        // RFC 7235: `credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`.
        let (scheme, credential) = value.split_once(' ').ok_or(AuthFailure::Malformed)?;
        let credential = credential.trim_start_matches(' ');
        if credential.is_empty() || credential.contains([' ', '\t']) {
            return Err(AuthFailure::Malformed);
        }
        // Scheme names are case-insensitive (RFC 9110 11.1); credentials are not.
        if scheme.eq_ignore_ascii_case("basic") {
            if self.basic.is_empty() {
                return Err(AuthFailure::Wrong);
            }
            let decoded = STANDARD
                .decode(credential)
                .map_err(|_| AuthFailure::Malformed)?;
            if !decoded.contains(&b':') {
                return Err(AuthFailure::Malformed);
            }
            return any_matches(&self.basic, &decoded)
                .then_some(())
                .ok_or(AuthFailure::Wrong);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            // A static token, or one issued at the token endpoint: both are checked.
            let issued = self.oauth2.as_ref().is_some_and(|o| o.verify(credential));
            return (any_matches(&self.bearer, credential.as_bytes()) | issued)
                .then_some(())
                .ok_or(AuthFailure::Wrong);
        }
        Err(AuthFailure::Malformed)
    }
}

/// The one value of a header that must appear at most once: two `Authorization` fields (or two
/// of the custom header) are refused rather than one of them picked, since a proxy in front
/// may pick the other one (RFC 9110 5.3: a singleton field sent twice is invalid).
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<&'h http::HeaderValue, AuthFailure> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().ok_or(AuthFailure::Missing)?;
    if values.next().is_some() {
        return Err(AuthFailure::Repeated);
    }
    Ok(first)
}

/// The digest of `user:password`; a user holding `:` is refused (RFC 7617: the first colon
/// ends the user-id, so `a:b` + `c` would also accept `a` + `b:c`).
fn basic_secret(variable: &'static str, user: &str, password: &str) -> Result<Secret, ConfigError> {
    if user.contains(':') {
        return Err(ConfigError::Invalid(
            variable,
            "a basic-auth user name cannot contain `:`".to_owned(),
        ));
    }
    Ok(Secret::new(format!("{user}:{password}").as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The comparison is digest against digest: whatever the lengths of the secret and of the
    /// attempt, `ct_eq` always runs over two 32-byte arrays.
    #[test]
    fn secrets_are_fixed_length_digests() {
        for len in [0, 1, 31, 32, 33, 4096] {
            let secret = Secret::new(&vec![b'a'; len]);
            assert_eq!(secret.0.len(), 32);
            assert!(secret.matches(&vec![b'a'; len]));
            assert!(!secret.matches(&vec![b'a'; len + 1]));
        }
    }

    #[test]
    fn any_matches_compares_with_every_secret() {
        let secrets = [Secret::new(b"one"), Secret::new(b"two")];
        assert!(any_matches(&secrets, b"one"));
        assert!(any_matches(&secrets, b"two"));
        assert!(!any_matches(&secrets, b"three"));
        assert!(!any_matches(&[], b""));
    }
}
