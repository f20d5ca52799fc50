//! In-memory ports: they never fail and keep everything they are given.

use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use sparklake_core::message::OutboundMessage;
use sparklake_core::ports::{ArchiveAppend, ObjectPut, PortError, QueueSend};

pub struct MemQueue {
    pub max: usize,
    pub sent: Mutex<Vec<OutboundMessage>>,
}

impl MemQueue {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            sent: Mutex::new(Vec::new()),
        }
    }

    pub fn take(&self) -> Vec<OutboundMessage> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

#[async_trait]
impl QueueSend for MemQueue {
    fn max_message_bytes(&self) -> usize {
        self.max
    }

    async fn send(&self, messages: Vec<OutboundMessage>) -> Result<(), PortError> {
        self.sent.lock().unwrap().extend(messages);
        Ok(())
    }
}

/// An object store: `(key, body, content type)` in put order.
#[derive(Default)]
pub struct MemStore {
    pub objects: Mutex<Vec<(String, Bytes, String)>>,
}

impl MemStore {
    pub fn take(&self) -> Vec<(String, Bytes, String)> {
        std::mem::take(&mut *self.objects.lock().unwrap())
    }
}

#[async_trait]
impl ObjectPut for MemStore {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), PortError> {
        self.objects
            .lock()
            .unwrap()
            .push((key.to_owned(), body, content_type.to_owned()));
        Ok(())
    }
}

#[derive(Default)]
pub struct MemArchive {
    pub records: Mutex<Vec<Bytes>>,
}

#[async_trait]
impl ArchiveAppend for MemArchive {
    async fn append(&self, records: Vec<Bytes>) -> Result<(), PortError> {
        self.records.lock().unwrap().extend(records);
        Ok(())
    }
}
