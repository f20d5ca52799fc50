//! Authentication of webhook requests, as SparkPost can send it: HTTP basic, an OAuth2 bearer
//! token, and a custom header with a secret value.
//!
//! Basic and bearer both travel in `Authorization`, so when both are enabled either one passes;
//! an enabled custom header is required in addition. Secrets are kept only as SHA-256 digests
//! and compared digest to digest in constant time, so neither content nor length leaks.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ConfigError, parse_modes};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Basic,
    Bearer,
    Header,
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
    basic: Option<Secret>,
    bearer: Vec<Secret>,
    header: Option<(HeaderName, Secret)>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("modes", &self.modes)
            .field("bearer_tokens", &self.bearer.len())
            .field("header", &self.header.as_ref().map(|(n, _)| n))
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
                    auth.basic = Some(Secret::new(format!("{user}:{password}").as_bytes()));
                }
                Mode::Bearer => {
                    let tokens = required("SPARKLAKE_BEARER_TOKENS", "bearer")?;
                    auth.bearer = tokens
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(|t| Secret::new(t.as_bytes()))
                        .collect();
                    if auth.bearer.is_empty() {
                        return Err(ConfigError::Missing("SPARKLAKE_BEARER_TOKENS", "bearer"));
                    }
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
                    auth.header = Some((name, Secret::new(value.as_bytes())));
                }
            }
        }
        Ok(auth)
    }

    /// The `WWW-Authenticate` challenge to send with a 401, if a scheme needs one.
    pub fn challenge(&self) -> Option<&'static str> {
        if self.basic.is_some() {
            Some(r#"Basic realm="sparklake", charset="UTF-8""#)
        } else if !self.bearer.is_empty() {
            Some(r#"Bearer realm="sparklake""#)
        } else {
            None
        }
    }

    /// Checks a request's headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        if self.basic.is_some() || !self.bearer.is_empty() {
            self.check_authorization(headers)?;
        }
        if let Some((name, secret)) = &self.header {
            let ok = headers
                .get(name)
                .is_some_and(|v| secret.matches(v.as_bytes()));
            if !ok {
                return Err(AuthFailure::Header);
            }
        }
        Ok(())
    }

    fn check_authorization(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        let value = headers.get(AUTHORIZATION).ok_or(AuthFailure::Missing)?;
        let value = value.to_str().map_err(|_| AuthFailure::Malformed)?.trim();
        let (scheme, credential) = value.split_once(' ').ok_or(AuthFailure::Malformed)?;
        let credential = credential.trim();
        if credential.is_empty() {
            return Err(AuthFailure::Malformed);
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let secret = self.basic.as_ref().ok_or(AuthFailure::Wrong)?;
            let decoded = STANDARD
                .decode(credential)
                .map_err(|_| AuthFailure::Malformed)?;
            if !decoded.contains(&b':') {
                return Err(AuthFailure::Malformed);
            }
            return secret
                .matches(&decoded)
                .then_some(())
                .ok_or(AuthFailure::Wrong);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            // Every token is compared, so timing does not tell which one (if any) matched.
            let matched = self
                .bearer
                .iter()
                .fold(false, |any, t| any | t.matches(credential.as_bytes()));
            return matched.then_some(()).ok_or(AuthFailure::Wrong);
        }
        Err(AuthFailure::Malformed)
    }
}
