//! The handlers over the real local adapters: a tempdir with an SQLite [`LocalQueues`] and an
//! [`FsStore`], configurations, and requests.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use http::{Request, Response};
use ingest::{ConfigError, Ingest, IngestConfig};
use sparklake::queue::{LocalQueue, LocalQueues, QueueConfig};
use sparklake::store::FsStore;
use sparklake_core::ports::Received;

use super::files::relative_files;
use super::fixtures::AnyResult;

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

/// A `POST /` request with headers and a body.
pub fn post_request(headers: &[(&str, &str)], body: impl Into<Bytes>) -> Request<Bytes> {
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
        relative_files(self.store_root())
    }
}

/// Every visible message of `queue`, each once, in order.
pub async fn receive_all(queue: &LocalQueue) -> AnyResult<Vec<Received>> {
    Ok(queue.receive(100_000).await?)
}
