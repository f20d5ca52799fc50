//! Configuration from the environment, shared by `sparklake serve` and the ingest Lambda.

use crate::auth::{Auth, Mode};

/// Every variable [`IngestConfig::from_lookup`] reads (the README's configuration table is
/// tested against these lists).
pub const VARIABLES: &[&str] = &[
    "SPARKLAKE_MAX_BODY_BYTES",
    "SPARKLAKE_MAX_TYPES_PER_BATCH",
    "SPARKLAKE_QUARANTINE_MAX_BYTES",
    "SPARKLAKE_AUTH",
    "SPARKLAKE_BASIC_USER",
    "SPARKLAKE_BASIC_PASSWORD",
    "SPARKLAKE_BASIC_PASSWORD_PREVIOUS",
    "SPARKLAKE_BASIC_USER_PREVIOUS",
    "SPARKLAKE_BEARER_TOKENS",
    "SPARKLAKE_HEADER_NAME",
    "SPARKLAKE_HEADER_VALUE",
    "SPARKLAKE_HEADER_VALUE_PREVIOUS",
    "SPARKLAKE_OAUTH2_CLIENT_ID",
    "SPARKLAKE_OAUTH2_CLIENT_SECRET",
    "SPARKLAKE_OAUTH2_SIGNING_KEY",
    "SPARKLAKE_OAUTH2_SIGNING_KEY_PREVIOUS",
    "SPARKLAKE_OAUTH2_TOKEN_TTL_SECS",
];

/// The ingest Lambda's Secrets Manager secret holding credentials under these names.
pub const SECRET_ARN_VARIABLE: &str = "SPARKLAKE_AUTH_SECRET_ARN";

/// Default largest body accepted, after decompression: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Default most distinct event types in one batch (SparkPost documents 27).
pub const DEFAULT_MAX_TYPES_PER_BATCH: usize = 100;
/// Default quarantine budget: 1 GiB.
pub const DEFAULT_QUARANTINE_MAX_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub auth: Auth,
    /// Bodies larger than this (after `Content-Encoding` is undone) are answered 413.
    pub max_body_bytes: usize,
    /// A batch with more distinct event types than this is refused (400, quarantined).
    pub max_types_per_batch: usize,
    /// What the quarantine may hold.
    pub quarantine: QuarantineBudget,
}

/// The quarantine's byte budget: bodies are kept while it lasts; then only their reasons, up
/// to a sixteenth more; then nothing. Shared by the clones of a configuration; the host sets
/// what the quarantine already holds at start ([`QuarantineBudget::set_used`]).
#[derive(Debug, Clone)]
pub struct QuarantineBudget {
    max: u64,
    used: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl QuarantineBudget {
    pub fn new(max: u64) -> Self {
        Self {
            max,
            used: Default::default(),
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max
    }

    /// What the quarantine already holds.
    pub fn set_used(&self, bytes: u64) {
        self.used.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn take_within(&self, bytes: u64, limit: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.used
            .fetch_update(Relaxed, Relaxed, |used| {
                used.checked_add(bytes).filter(|&after| after <= limit)
            })
            .is_ok()
    }

    /// Takes `bytes` for a body and its reason, if the budget has them.
    pub fn take(&self, bytes: u64) -> bool {
        self.take_within(bytes, self.max)
    }

    /// Takes `bytes` for a reason alone, within the reasons' allowance past the budget.
    pub fn take_reason(&self, bytes: u64) -> bool {
        self.take_within(bytes, self.max.saturating_add(self.max / 16))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "SPARKLAKE_AUTH is not set; set it to none, basic, bearer, header or oauth2 (comma-separated)"
    )]
    AuthUnset,
    #[error("SPARKLAKE_AUTH: unknown mode `{0}` (expected none, basic, bearer, header or oauth2)")]
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
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match lookup(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| {
                        ConfigError::Invalid(
                            name,
                            format!("`{v}` is not a whole number of at least 1"),
                        )
                    }),
            }
        };
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let max_body_bytes = to_usize(number(
            "SPARKLAKE_MAX_BODY_BYTES",
            DEFAULT_MAX_BODY_BYTES as u64,
        )?);
        let max_types_per_batch = to_usize(number(
            "SPARKLAKE_MAX_TYPES_PER_BATCH",
            DEFAULT_MAX_TYPES_PER_BATCH as u64,
        )?);
        let quarantine = QuarantineBudget::new(number(
            "SPARKLAKE_QUARANTINE_MAX_BYTES",
            DEFAULT_QUARANTINE_MAX_BYTES,
        )?);
        let modes = lookup("SPARKLAKE_AUTH").ok_or(ConfigError::AuthUnset)?;
        let auth = Auth::from_lookup(&modes, &lookup)?;
        Ok(Self {
            auth,
            max_body_bytes,
            max_types_per_batch,
            quarantine,
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
            max_types_per_batch: DEFAULT_MAX_TYPES_PER_BATCH,
            quarantine: QuarantineBudget::new(DEFAULT_QUARANTINE_MAX_BYTES),
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
            "oauth2" => modes.push(Mode::OAuth2),
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
                "SPARKLAKE_AUTH" => "basic,bearer,header,oauth2".to_owned(),
                "SPARKLAKE_OAUTH2_SIGNING_KEY" | "SPARKLAKE_OAUTH2_SIGNING_KEY_PREVIOUS" => {
                    "k".repeat(32)
                }
                "SPARKLAKE_OAUTH2_TOKEN_TTL_SECS" => "60".to_owned(),
                "SPARKLAKE_MAX_BODY_BYTES" => "1000".to_owned(),
                "SPARKLAKE_MAX_TYPES_PER_BATCH" => "10".to_owned(),
                "SPARKLAKE_QUARANTINE_MAX_BYTES" => "100000".to_owned(),
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
