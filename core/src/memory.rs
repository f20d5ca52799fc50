//! In-memory implementations of the ports, for the handlers' tests, the property tests, the
//! fuzz targets and the benchmarks (feature `test-support`): each keeps everything it is given,
//! in order, and fails when told to, so a test can see what a handler sent, stored or archived,
//! and what it does when the world fails it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use crate::envelope::Outline;
use crate::message::OutboundMessage;
use crate::ports::{ArchiveAppend, ObjectPut, PortError, Projection, QueueSend, TypeCatalog};

/// The lock's data, poisoned or not: a test panicking elsewhere leaves it usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An infrastructure failure, as a port reports one.
fn failure(operation: &'static str) -> PortError {
    PortError::new(operation, "injected failure")
}

/// A queue that keeps what it is sent (and, as a real queue, refuses a message over its limit).
pub struct MemoryQueue {
    max_message_bytes: usize,
    /// Each message sent, with the outline of its body when the sender gave one.
    sent: Mutex<Vec<(OutboundMessage, Option<Arc<Outline>>)>>,
    failing: Mutex<bool>,
}

impl MemoryQueue {
    /// A queue taking messages of up to `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            max_message_bytes,
            sent: Mutex::new(Vec::new()),
            failing: Mutex::new(false),
        }
    }

    /// Whether sends fail (storing nothing) from now on.
    pub fn fail(&self, failing: bool) {
        *lock(&self.failing) = failing;
    }

    /// A copy of what was sent, in order.
    pub fn sent(&self) -> Vec<OutboundMessage> {
        lock(&self.sent).iter().map(|(m, _)| m.clone()).collect()
    }

    /// What was sent, in order, emptying the queue.
    pub fn take(&self) -> Vec<OutboundMessage> {
        self.take_outlined().into_iter().map(|(m, _)| m).collect()
    }

    /// What was sent, in order, each message with the outline its sender gave, emptying the
    /// queue.
    pub fn take_outlined(&self) -> Vec<(OutboundMessage, Option<Arc<Outline>>)> {
        std::mem::take(&mut *lock(&self.sent))
    }

    /// What was sent, in order.
    pub fn into_sent(self) -> Vec<OutboundMessage> {
        let sent = self.sent.into_inner().unwrap_or_else(|p| p.into_inner());
        sent.into_iter().map(|(m, _)| m).collect()
    }
}

#[async_trait]
impl QueueSend for MemoryQueue {
    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    async fn send(&self, messages: Vec<OutboundMessage>) -> Result<(), PortError> {
        self.send_outlined(messages, Vec::new()).await
    }

    fn keeps_outlines(&self) -> bool {
        true
    }

    async fn send_outlined(
        &self,
        messages: Vec<OutboundMessage>,
        outlines: Vec<Option<Arc<Outline>>>,
    ) -> Result<(), PortError> {
        if *lock(&self.failing) {
            return Err(failure("memory queue send"));
        }
        // As SQS and the local queue do: a message over the limit fails the whole send.
        if let Some(large) = messages
            .iter()
            .find(|m| m.body.len() > self.max_message_bytes)
        {
            return Err(PortError::new(
                "memory queue send",
                format!(
                    "a {}-byte message, over the {}-byte limit",
                    large.body.len(),
                    self.max_message_bytes
                ),
            ));
        }
        let mut outlines = outlines.into_iter();
        lock(&self.sent).extend(messages.into_iter().map(|m| (m, outlines.next().flatten())));
        Ok(())
    }
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub body: Bytes,
    pub content_type: String,
}

/// An object store that keeps every put, in order (a key put twice is there twice: the last
/// is the object).
#[derive(Default)]
pub struct MemoryStore {
    puts: Mutex<Vec<StoredObject>>,
    failing: Mutex<Vec<String>>,
    max_partition_value_bytes: Option<usize>,
}

impl MemoryStore {
    /// Keys of partition values longer than `max` are shortened, as the real stores do.
    pub fn with_max_partition_value_bytes(mut self, max: Option<usize>) -> Self {
        self.max_partition_value_bytes = max;
        self
    }

    /// Puts of keys containing `fragment` fail from now on (storing nothing).
    pub fn fail_keys_containing(&self, fragment: &str) {
        lock(&self.failing).push(fragment.to_owned());
    }

    /// Puts succeed again.
    pub fn heal(&self) {
        lock(&self.failing).clear();
    }

    /// Every put, in order.
    pub fn puts(&self) -> Vec<StoredObject> {
        lock(&self.puts).clone()
    }

    /// The objects as they stand: the last put of each key, by key.
    pub fn objects(&self) -> std::collections::BTreeMap<String, StoredObject> {
        lock(&self.puts)
            .iter()
            .map(|o| (o.key.clone(), o.clone()))
            .collect()
    }

    /// Every put, emptying the store.
    pub fn take(&self) -> Vec<StoredObject> {
        std::mem::take(&mut *lock(&self.puts))
    }
}

#[async_trait]
impl ObjectPut for MemoryStore {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), PortError> {
        if lock(&self.failing).iter().any(|f| key.contains(f.as_str())) {
            return Err(failure("memory store put"));
        }
        lock(&self.puts).push(StoredObject {
            key: key.to_owned(),
            body,
            content_type: content_type.to_owned(),
        });
        Ok(())
    }

    fn max_partition_value_bytes(&self) -> Option<usize> {
        self.max_partition_value_bytes
    }
}

/// An archive that keeps every record.
#[derive(Default)]
pub struct MemoryArchive {
    records: Mutex<Vec<Bytes>>,
    failing: Mutex<bool>,
}

impl MemoryArchive {
    /// Whether appends fail from now on.
    pub fn fail(&self, failing: bool) {
        *lock(&self.failing) = failing;
    }

    /// Every record appended, in order.
    pub fn records(&self) -> Vec<Bytes> {
        lock(&self.records).clone()
    }
}

#[async_trait]
impl ArchiveAppend for MemoryArchive {
    async fn append(&self, records: Vec<Bytes>) -> Result<(), PortError> {
        if *lock(&self.failing) {
            return Err(failure("memory archive append"));
        }
        lock(&self.records).extend(records);
        Ok(())
    }
}

/// A catalog that projects what it is asked to (values with a comma excepted, as an enum).
#[derive(Default)]
pub struct MemoryCatalog {
    projected: Mutex<BTreeSet<String>>,
    failing: Mutex<bool>,
}

impl MemoryCatalog {
    /// Whether updates fail from now on.
    pub fn fail(&self, failing: bool) {
        *lock(&self.failing) = failing;
    }

    /// What it projects.
    pub fn projected(&self) -> BTreeSet<String> {
        lock(&self.projected).clone()
    }
}

#[async_trait]
impl TypeCatalog for MemoryCatalog {
    async fn ensure_projected(&self, values: &[String]) -> Result<Projection, PortError> {
        if *lock(&self.failing) {
            return Err(failure("memory catalog update"));
        }
        let mut projected = lock(&self.projected);
        let mut outcome = Projection::default();
        for value in values {
            if value.contains(',') {
                outcome.unprojectable.push(value.clone());
            } else if projected.insert(value.clone()) {
                outcome.added.push(value.clone());
            }
        }
        Ok(outcome)
    }
}
