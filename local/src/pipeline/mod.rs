//! The pipeline on either backend: the local queues in `<data>/queue.sqlite3` and a folder
//! ([`local`]), or SQS, S3, Firehose and Glue ([`aws`]), and the fanout and writer workers that
//! poll them as an SQS event source mapping does ([`workers`]).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ingest::{Ingest, IngestConfig};
use sparklake_core::metrics::Metrics;
use sparklake_core::ports::{
    ArchiveAppend, LakeStore, ObjectPut, PortError, QueueReceive, QueueSend, TypeCatalog,
};

use crate::config::Settings;
use crate::queue::LocalQueue;

mod aws;
mod local;
mod workers;

/// The queue ingest sends batches to, and fanout reads.
pub const INGEST_QUEUE: &str = "ingest";
/// The queue fanout sends per-type events to, and the writer reads.
pub const EVENTS_QUEUE: &str = "events";

/// Unix milliseconds now (one clock for every backend).
pub use sparklake_aws::now_millis;

/// The local queues, for what only they can do (inspect dead letters).
#[derive(Clone)]
pub struct LocalParts {
    pub data: PathBuf,
    pub ingest: LocalQueue,
    pub events: LocalQueue,
}

/// Everything the workers run on.
#[derive(Clone)]
pub struct Pipeline {
    pub settings: Settings,
    pub ingest_queue: Arc<dyn QueueReceive>,
    pub events_queue: Arc<dyn QueueReceive>,
    pub routes: Vec<(String, BTreeSet<String>, Arc<dyn QueueSend>)>,
    pub store: Arc<dyn ObjectPut>,
    /// The same store as the compactor reads and rewrites it.
    pub lake: Arc<dyn LakeStore>,
    pub archive: Option<Arc<dyn ArchiveAppend>>,
    /// The tables' catalog the writer keeps in step (aws, with `SPARKLAKE_GLUE_DATABASE`).
    pub catalog: Option<Arc<dyn TypeCatalog>>,
    /// How long a receive waits for a first message (SQS long polling; 0 locally).
    pub poll_wait: Duration,
    /// Numbers recorded since the reporter last took them.
    pub metrics: Arc<Mutex<Metrics>>,
    pub local: Option<LocalParts>,
}

impl Pipeline {
    /// Adds a call's numbers to the totals.
    pub fn record(&self, metrics: &Metrics) {
        // A poisoned lock only means a panic elsewhere mid-merge; the numbers are still usable.
        let mut totals = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        totals.merge(metrics);
    }

    /// The numbers recorded since the last call, which starts a new interval (with the AWS
    /// SDK's retries of the interval).
    pub fn take_metrics(&self) -> Metrics {
        let mut metrics =
            std::mem::take(&mut *self.metrics.lock().unwrap_or_else(|p| p.into_inner()));
        metrics.retries += sparklake_aws::observe::take_retries();
        metrics.dead_lettered += crate::queue::take_dead_lettered();
        metrics
    }

    /// The ingest handler over this pipeline's queue and quarantine.
    pub fn ingest<'a>(&'a self, config: &'a IngestConfig) -> Ingest<'a> {
        Ingest {
            config,
            queue: self.ingest_queue.as_ref(),
            quarantine: self.store.as_ref(),
        }
    }

    /// After a crash, in-flight messages would wait out their visibility timeout; the local
    /// process is their only consumer, so make them visible at once.
    pub async fn recover(&self) -> Result<usize, PortError> {
        Ok(self.ingest_queue.recover().await? + self.events_queue.recover().await?)
    }
}
