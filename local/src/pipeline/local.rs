//! The local backend: queues in one SQLite database, a folder as the store and the archive.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sparklake_core::ports::{ArchiveAppend, QueueSend};

use super::{EVENTS_QUEUE, INGEST_QUEUE, LocalParts, Pipeline};
use crate::config::Settings;
use crate::queue::{LocalQueues, QueueConfig, QueueError};
use crate::store::{FsArchive, FsStore};

impl Pipeline {
    /// The local backend, opened from one data folder.
    pub fn open(data: &Path, settings: Settings) -> Result<Self, QueueError> {
        let queues = LocalQueues::open(&data.join("queue.sqlite3"))?;
        let ingest = queues.queue(INGEST_QUEUE, settings.queue.clone());
        // The size limit refuses new work only: fanout must always be able to move it on.
        let internal = QueueConfig {
            max_database_bytes: None,
            ..settings.queue.clone()
        };
        let events = queues.queue(EVENTS_QUEUE, internal.clone());
        let routes = settings
            .routes
            .iter()
            .map(|(name, types)| {
                let queue = queues.queue(&format!("route-{name}"), internal.clone());
                (
                    name.clone(),
                    types.clone(),
                    Arc::new(queue) as Arc<dyn QueueSend>,
                )
            })
            .collect();
        let store = Arc::new(
            FsStore::new(data)
                .with_faults(queues.storage_faults())
                .with_max_partition_value_bytes(settings.partition_value_max_bytes),
        );
        Ok(Self {
            ingest_queue: Arc::new(ingest.clone()),
            events_queue: Arc::new(events.clone()),
            routes,
            store: store.clone(),
            lake: store,
            archive: settings.archive.then(|| {
                Arc::new(FsArchive::new(data).with_faults(queues.storage_faults()))
                    as Arc<dyn ArchiveAppend>
            }),
            catalog: None,
            poll_wait: Duration::ZERO,
            metrics: Arc::default(),
            local: Some(LocalParts {
                data: data.to_owned(),
                ingest,
                events,
            }),
            settings,
        })
    }
}
