//! What can go wrong in the local queue.

use sparklake_core::ports::PortError;

/// A failure of the local queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue database: {operation} failed: {source}")]
    Sqlite {
        operation: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("queue database: cannot create the directory for {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "queue {queue}: message {index} has a {bytes}-byte body, larger than the {max}-byte limit"
    )]
    TooLarge {
        queue: String,
        index: usize,
        bytes: usize,
        max: usize,
    },
    #[error("queue {queue}: cannot encode attributes: {source}")]
    EncodeAttributes {
        queue: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("queue {queue}: message {id} has unreadable attributes: {source}")]
    DecodeAttributes {
        queue: String,
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "queue {queue} is full: the queue database holds {used} bytes of messages, the limit is {max} (SPARKLAKE_QUEUE_MAX_BYTES)"
    )]
    Full { queue: String, used: u64, max: u64 },
    #[error("queue database task did not complete: {source}")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
}

impl From<QueueError> for PortError {
    fn from(error: QueueError) -> Self {
        PortError::new("local queue send", error)
    }
}

pub(crate) fn sql_error(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> QueueError {
    move |source| QueueError::Sqlite { operation, source }
}
