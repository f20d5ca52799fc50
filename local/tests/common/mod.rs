//! Shared helpers of the handler tests: fixtures, a tempdir with the real local adapters
//! (an SQLite [`LocalQueues`] and an [`FsStore`]), requests, and readers of what was written.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::NaiveDate;
use http::{Request, Response};
use ingest::{ConfigError, Ingest, IngestConfig};
use sparklake::queue::{LocalQueue, LocalQueues, QueueConfig};
use sparklake::store::FsStore;
use sparklake_core::ports::Received;

pub type TestResult = Result<(), Box<dyn Error>>;
pub type AnyResult<T> = Result<T, Box<dyn Error>>;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Unix milliseconds of a UTC date and time.
pub fn millis(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|date| date.and_hms_opt(h, mi, s))
        .expect("a valid date")
        .and_utc()
        .timestamp_millis()
}

/// The receive time the tests stamp on requests: 2024-05-06T12:00:00Z.
pub fn received_at() -> i64 {
    millis(2024, 5, 6, 12, 0, 0)
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

/// The `error` text of a JSON error response.
pub fn error_text(response: &Response<Bytes>) -> String {
    let value: serde_json::Value =
        serde_json::from_slice(response.body()).expect("a JSON response body");
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no `error` in {value}"))
        .to_owned()
}

/// A temporary directory holding a queue database and an object store, both real.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub queues: LocalQueues,
    pub store: FsStore,
}

impl Harness {
    pub fn new() -> AnyResult<Self> {
        let dir = tempfile::tempdir()?;
        let queues = LocalQueues::open(&dir.path().join("queues.sqlite3"))?;
        let store = FsStore::new(dir.path().join("store"));
        Ok(Self { dir, queues, store })
    }

    pub fn store_root(&self) -> &Path {
        self.store.root()
    }

    pub fn queue(&self, name: &str, config: QueueConfig) -> LocalQueue {
        self.queues.queue(name, config)
    }

    /// Handles one request with the ingest handler, over `queue` and this store.
    pub async fn ingest(
        &self,
        config: &IngestConfig,
        queue: &LocalQueue,
        request: Request<Bytes>,
        received_at: i64,
    ) -> Response<Bytes> {
        Ingest {
            config,
            queue,
            quarantine: &self.store,
        }
        .handle(request, received_at)
        .await
    }

    /// Every file under the store's root, relative to it, sorted.
    pub fn store_files(&self) -> Vec<String> {
        files(self.store_root())
    }
}

/// Every visible message of `queue`, each once, in order.
pub async fn receive_all(queue: &LocalQueue) -> AnyResult<Vec<Received>> {
    Ok(queue.receive(100_000).await?)
}

/// Every file under `dir`, as `/`-separated paths relative to it, sorted; none if it is missing.
pub fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(relative) = path.strip_prefix(root) {
                let parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
