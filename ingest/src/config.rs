//! Configuration from the environment, shared by `sparklake serve` and the ingest Lambda.

use crate::auth::{Auth, Mode};

/// Every variable [`IngestConfig::from_lookup`] reads (the README's configuration table is
/// tested against these lists).
pub const VARIABLES: &[&str] = &[
    "SPARKLAKE_MAX_BODY_BYTES",
    "SPARKLAKE_AUTH",
    "SPARKLAKE_BASIC_USER",
    "SPARKLAKE_BASIC_PASSWORD",
    "SPARKLAKE_BASIC_PASSWORD_PREVIOUS",
    "SPARKLAKE_BASIC_USER_PREVIOUS",
    "SPARKLAKE_BEARER_TOKENS",
    "SPARKLAKE_HEADER_NAME",
    "SPARKLAKE_HEADER_VALUE",
    "SPARKLAKE_HEADER_VALUE_PREVIOUS",
];

/// The ingest Lambda's Secrets Manager secret holding credentials under these names.
pub const SECRET_ARN_VARIABLE: &str = "SPARKLAKE_AUTH_SECRET_ARN";

/// Default largest body accepted, after decompression: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub auth: Auth,
    /// Bodies larger than this (after `Content-Encoding` is undone) are answered 413.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("SPARKLAKE_AUTH is not set; set it to none, basic, bearer or header (comma-separated)")]
    AuthUnset,
    #[error("SPARKLAKE_AUTH: unknown mode `{0}` (expected none, basic, bearer or header)")]
    UnknownMode(String),
    #[error("SPARKLAKE_AUTH: `none` cannot be combined with other modes")]
    NoneWithOthers,
    #[error("{0} must be set (and not empty) when SPARKLAKE_AUTH includes {1}")]
    Missing(&'static str, &'static str),
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
}

impl IngestConfig {
    /// Reads the configuration through `lookup` (the process environment in `main`s).
    /// `SPARKLAKE_AUTH` unset is [`ConfigError::AuthUnset`]: the caller decides whether that
    /// is fatal (the Lambda) or means an open endpoint (`sparklake serve`, loudly).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let max_body_bytes = match lookup("SPARKLAKE_MAX_BODY_BYTES") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => v.trim().parse().map_err(|_| {
                ConfigError::Invalid(
                    "SPARKLAKE_MAX_BODY_BYTES",
                    format!("`{v}` is not a byte count"),
                )
            })?,
        };
        let modes = lookup("SPARKLAKE_AUTH").ok_or(ConfigError::AuthUnset)?;
        let auth = Auth::from_lookup(&modes, &lookup)?;
        Ok(Self {
            auth,
            max_body_bytes,
        })
    }

    /// Whether requests are accepted without any credential.
    pub fn is_open(&self) -> bool {
        self.auth.modes().is_empty()
    }

    /// The same configuration with no authentication (for `serve` when none is set).
    pub fn open(max_body_bytes: usize) -> Self {
        Self {
            auth: Auth::none(),
            max_body_bytes,
        }
    }
}

/// Splits `SPARKLAKE_AUTH` into modes.
pub(crate) fn parse_modes(text: &str) -> Result<Vec<Mode>, ConfigError> {
    let mut modes = Vec::new();
    let mut none = false;
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word.to_ascii_lowercase().as_str() {
            "none" => none = true,
            "basic" => modes.push(Mode::Basic),
            "bearer" => modes.push(Mode::Bearer),
            "header" => modes.push(Mode::Header),
            _ => return Err(ConfigError::UnknownMode(word.to_owned())),
        }
    }
    if none && !modes.is_empty() {
        return Err(ConfigError::NoneWithOthers);
    }
    if !none && modes.is_empty() {
        return Err(ConfigError::UnknownMode(text.to_owned()));
    }
    modes.dedup();
    Ok(modes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_lists_every_variable_read() {
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let config = IngestConfig::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_owned());
            Some(match name {
                "SPARKLAKE_AUTH" => "basic,bearer,header".to_owned(),
                "SPARKLAKE_MAX_BODY_BYTES" => "1000".to_owned(),
                "SPARKLAKE_HEADER_NAME" => "x-secret".to_owned(),
                _ => "value".to_owned(),
            })
        });
        assert!(config.is_ok(), "{config:?}");
        let listed: std::collections::BTreeSet<String> =
            VARIABLES.iter().map(|v| (*v).to_owned()).collect();
        assert_eq!(asked.into_inner(), listed);
    }
}
