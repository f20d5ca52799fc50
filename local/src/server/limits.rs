//! What one client, or all of them together, can make the server spend: each bound a setting
//! with a safe default (the README's configuration table).

use std::time::Duration;

/// Every variable [`Limits::from_lookup`] reads (the README's configuration table is tested
/// against these lists).
pub const VARIABLES: &[&str] = &[
    "SPARKLAKE_MAX_CONNECTIONS",
    "SPARKLAKE_MAX_REQUESTS",
    "SPARKLAKE_MAX_BODY_MEMORY_BYTES",
    "SPARKLAKE_HEADER_TIMEOUT_SECS",
    "SPARKLAKE_BODY_TIMEOUT_SECS",
    "SPARKLAKE_IDLE_TIMEOUT_SECS",
    "SPARKLAKE_SHUTDOWN_GRACE_SECS",
];

/// The server's bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Open connections at once; more wait in the listen backlog until one closes. Below the
    /// common descriptor limit (`ulimit -n` 1024) with room for the data folder's files.
    pub max_connections: usize,
    /// Requests being read or handled at once; more are answered 503 with `Retry-After`.
    pub max_requests: usize,
    /// Request body bytes held in memory at once, over all requests (a gzip body counts its
    /// compressed size and the largest body it may inflate to); past it, 503.
    pub max_body_memory_bytes: usize,
    /// A new connection's first request head must have arrived within this.
    pub header_timeout: Duration,
    /// A request's body must have arrived within this of its head (else 408).
    pub body_timeout: Duration,
    /// After a response, the next request's head must have arrived within this.
    pub idle_timeout: Duration,
    /// After the shutdown signal: how long requests under way may take to arrive; bodies still
    /// arriving then are answered 503 and idle or half-sent connections closed. Requests whose
    /// body has arrived are always handled to the end.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_requests: 64,
            max_body_memory_bytes: 256 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl Limits {
    /// Reads [`VARIABLES`] through `lookup` (unset or blank: the default). `max_body_bytes` is
    /// the largest body accepted: the memory budget must hold at least one.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        max_body_bytes: usize,
    ) -> Result<Self, String> {
        let d = Self::default();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let count = |name: &str, default: usize| -> Result<usize, String> {
            match get(name) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(format!("{name}: `{v}` is not a whole number of at least 1")),
                },
            }
        };
        // Seconds, fractions allowed (tests lower them below a second).
        let secs = |name: &str, default: Duration| -> Result<Duration, String> {
            match get(name) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<f64>() {
                    Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
                    _ => Err(format!(
                        "{name}: `{v}` is not a number of seconds above 0 (at most a day)"
                    )),
                },
            }
        };
        let limits = Self {
            max_connections: count(VARIABLES[0], d.max_connections)?,
            max_requests: count(VARIABLES[1], d.max_requests)?,
            max_body_memory_bytes: count(VARIABLES[2], d.max_body_memory_bytes)?,
            header_timeout: secs(VARIABLES[3], d.header_timeout)?,
            body_timeout: secs(VARIABLES[4], d.body_timeout)?,
            idle_timeout: secs(VARIABLES[5], d.idle_timeout)?,
            shutdown_grace: secs(VARIABLES[6], d.shutdown_grace)?,
        };
        // A gzip body needs its compressed bytes and what they inflate to.
        let one_body = max_body_bytes.saturating_mul(2);
        if limits.max_body_memory_bytes < one_body {
            return Err(format!(
                "{}: {} bytes cannot hold one gzip body of SPARKLAKE_MAX_BODY_BYTES ({max_body_bytes}) and what it inflates to; set it to at least {one_body}",
                VARIABLES[2], limits.max_body_memory_bytes
            ));
        }
        Ok(limits)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            Limits::from_lookup(|_| None, 10 << 20).unwrap(),
            Limits::default()
        );
        let limits = Limits::from_lookup(
            |name| match name {
                "SPARKLAKE_MAX_REQUESTS" => Some("3".into()),
                "SPARKLAKE_BODY_TIMEOUT_SECS" => Some("0.5".into()),
                "SPARKLAKE_MAX_BODY_MEMORY_BYTES" => Some("2048".into()),
                _ => None,
            },
            1024,
        )
        .unwrap();
        assert_eq!(limits.max_requests, 3);
        assert_eq!(limits.body_timeout, Duration::from_millis(500));
        assert_eq!(limits.max_body_memory_bytes, 2048);
    }

    #[test]
    fn refuses_what_cannot_work() {
        for (name, value) in [
            ("SPARKLAKE_MAX_CONNECTIONS", "0"),
            ("SPARKLAKE_MAX_REQUESTS", "many"),
            ("SPARKLAKE_IDLE_TIMEOUT_SECS", "0"),
            ("SPARKLAKE_HEADER_TIMEOUT_SECS", "-1"),
            ("SPARKLAKE_SHUTDOWN_GRACE_SECS", "NaN"),
            // Less than one body (and what it inflates to).
            ("SPARKLAKE_MAX_BODY_MEMORY_BYTES", "1000"),
        ] {
            let got = Limits::from_lookup(|n| (n == name).then(|| value.to_owned()), 1024);
            assert!(got.unwrap_err().contains(name), "{name}={value}");
        }
    }
}
