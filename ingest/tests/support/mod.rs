//! Shared helpers of the ingest handler's tests: fixtures, configurations, requests, and a
//! harness running the handler over the in-memory queue and quarantine store of
//! `sparklake_core::memory`, with readers of what they were given.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::error::Error;
use std::io::Write as _;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::{Request, Response};
use ingest::{ConfigError, Ingest, IngestConfig};
use sha2::{Digest, Sha256};
use sparklake_core::memory::{MemoryQueue, MemoryStore};
use sparklake_core::message::OutboundMessage;
use sparklake_core::metrics::Metrics;

pub type TestResult = Result<(), Box<dyn Error>>;

/// The sample batch SparkPost documents: 19 events.
pub const BATCH: &str = "sparkpost/batch.json";

/// The largest message the harness's queue takes unless told otherwise (the local queue's
/// default, 1 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_576;

/// The bytes of a file under the repository's `fixtures/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The receive time the tests stamp on requests: 2024-05-06T12:00:00Z, in unix milliseconds.
pub fn received_at() -> i64 {
    1_714_996_800_000
}

/// Builds a configuration from environment-like pairs.
pub fn config(vars: &[(&str, &str)]) -> Result<IngestConfig, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    IngestConfig::from_lookup(|k| map.get(k).cloned())
}

/// An open configuration (`SPARKLAKE_AUTH=none`) with extra variables.
pub fn open_config(extra: &[(&str, &str)]) -> IngestConfig {
    let mut vars = vec![("SPARKLAKE_AUTH", "none")];
    vars.extend_from_slice(extra);
    config(&vars).expect("a valid open configuration")
}

/// A request with a method, path, headers and body.
pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Bytes> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).expect("a valid request")
}

/// `POST /` with headers and a body.
pub fn post(headers: &[(&str, &str)], body: impl Into<Bytes>) -> Request<Bytes> {
    request("POST", "/", headers, body)
}

/// An `Authorization: Basic` value for `user:password`.
pub fn basic(credentials: &str) -> String {
    format!("Basic {}", STANDARD.encode(credentials))
}

/// `data`, gzipped.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// The `error` text of a JSON error response.
pub fn error_text(response: &Response<Bytes>) -> String {
    let value: serde_json::Value =
        serde_json::from_slice(response.body()).expect("a JSON response body");
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no `error` in {value}"))
        .to_owned()
}

/// A message attribute.
pub fn attribute<'m>(message: &'m OutboundMessage, name: &str) -> Option<&'m str> {
    message.attributes.get(name).map(String::as_str)
}

/// `(body key, reason key)` of a quarantined body received at [`received_at`], computed here
/// rather than with the handler's own function, so a change to the layout shows.
pub fn quarantine_keys(body: &[u8]) -> (String, String) {
    let hash = hex::encode(&Sha256::digest(body)[..16]);
    (
        format!("quarantine/dt=2024-05-06/{hash}.body"),
        format!("quarantine/dt=2024-05-06/{hash}.reason.json"),
    )
}

/// The handler's queue and quarantine, in memory.
pub struct Harness {
    pub queue: MemoryQueue,
    pub store: MemoryStore,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_max_message_bytes(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// A harness whose queue takes messages of up to `max` bytes.
    pub fn with_max_message_bytes(max: usize) -> Self {
        Self {
            queue: MemoryQueue::new(max),
            store: MemoryStore::default(),
        }
    }

    /// Handles one request received at [`received_at`].
    pub async fn ingest(&self, config: &IngestConfig, request: Request<Bytes>) -> Response<Bytes> {
        self.handler(config).handle(request, received_at()).await
    }

    /// [`Self::ingest`], with the request's metrics.
    pub async fn ingest_measured(
        &self,
        config: &IngestConfig,
        request: Request<Bytes>,
    ) -> (Response<Bytes>, Metrics) {
        self.handler(config)
            .handle_measured(request, received_at())
            .await
    }

    fn handler<'a>(&'a self, config: &'a IngestConfig) -> Ingest<'a> {
        Ingest {
            config,
            queue: &self.queue,
            quarantine: &self.store,
        }
    }

    /// The key of every put into the quarantine store, in order.
    pub fn stored_keys(&self) -> Vec<String> {
        self.store.puts().into_iter().map(|o| o.key).collect()
    }

    /// Asserts that `body` is kept in the quarantine with a reason note saying `reason` and
    /// `status`, and returns the note.
    pub fn assert_quarantined(
        &self,
        body: &[u8],
        reason: &str,
        status: u16,
    ) -> Result<serde_json::Value, Box<dyn Error>> {
        self.assert_kept(quarantine_keys(body), body, reason, status)
    }

    /// [`Self::assert_quarantined`] for a body sent with `Content-Encoding: gzip`: kept as sent,
    /// compressed, under `<hash>.body.gz`.
    pub fn assert_quarantined_gzip(
        &self,
        body: &[u8],
        reason: &str,
        status: u16,
    ) -> Result<serde_json::Value, Box<dyn Error>> {
        let (body_key, reason_key) = quarantine_keys(body);
        let note =
            self.assert_kept((format!("{body_key}.gz"), reason_key), body, reason, status)?;
        assert_eq!(note["content_encoding"], "gzip");
        Ok(note)
    }

    fn assert_kept(
        &self,
        (body_key, reason_key): (String, String),
        body: &[u8],
        reason: &str,
        status: u16,
    ) -> Result<serde_json::Value, Box<dyn Error>> {
        let objects = self.store.objects();
        let kept = objects.get(&body_key).ok_or_else(|| {
            format!(
                "{body_key} should be in the quarantine: {:?}",
                objects.keys()
            )
        })?;
        assert!(
            kept.body == body,
            "{body_key} must hold the exact body bytes"
        );
        assert_eq!(kept.content_type, "application/octet-stream", "{body_key}");
        let note = objects
            .get(&reason_key)
            .ok_or_else(|| format!("{reason_key} should be in the quarantine"))?;
        assert_eq!(note.content_type, "application/json", "{reason_key}");
        let note: serde_json::Value = serde_json::from_slice(&note.body)?;
        assert_eq!(note["reason"], reason, "{reason_key}");
        assert_eq!(note["status"], status, "{reason_key}");
        assert_eq!(note["bytes"], body.len(), "{reason_key}");
        assert_eq!(note["body_key"], body_key.as_str(), "{reason_key}");
        Ok(note)
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}
