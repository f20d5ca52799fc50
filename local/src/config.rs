//! How the pipeline's workers poll and write: one typed value, built once from flags and the
//! environment by [`crate::cli`] (flags win), for either backend.

use std::collections::BTreeSet;
use std::time::Duration;

use sparklake_core::output::OutputSettings;

use crate::queue::QueueConfig;

/// How the workers poll.
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue: QueueConfig,
    pub fanout_batch_size: usize,
    pub writer_batch_size: usize,
    /// How long the writer waits to fill a batch before writing what it has (at most half the
    /// visibility timeout, so a waiting batch is never redelivered).
    pub writer_window: Duration,
    /// Append every event to the raw archive (`<data>/archive/` locally).
    pub archive: bool,
    /// Extra routes: a name and the event types sent to the local queue `route-<name>`.
    pub routes: Vec<(String, BTreeSet<String>)>,
    /// Partition values longer than this are shortened in object keys (`None`: kept whole).
    pub partition_value_max_bytes: Option<usize>,
    /// How the writer writes the lake.
    pub output: OutputSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            queue: QueueConfig::default(),
            fanout_batch_size: 10,
            writer_batch_size: 1000,
            writer_window: Duration::from_secs(1),
            archive: true,
            routes: Vec::new(),
            partition_value_max_bytes: None,
            output: OutputSettings::default(),
        }
    }
}
