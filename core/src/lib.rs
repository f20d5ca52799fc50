//! The SparkPost events domain, free of any cloud SDK.
//!
//! - [`envelope`]: validates a webhook body (a JSON array of `{"msys": {...}}` elements) without
//!   building a JSON tree, and splits it into queue-sized parts on element boundaries.
//! - [`event`]: reads one event's fields, tolerating the type drift SparkPost payloads show.
//! - [`timestamp`]: every timestamp form SparkPost has sent, to UTC milliseconds.
//! - [`partition`]: the Hive-style partition of an event and the object keys derived from content.
//! - [`schema`]: the one wide column set every event type is written with.
//! - [`encode`]: CSV and Parquet encoders over that schema.
//! - [`output`]: how the lake is written (Parquet timestamp type, timestamp policy), read once.
//! - [`metrics`]: the pipeline's counters and their CloudWatch Embedded Metric Format.
//! - [`parallel`]: independent jobs spread over the machine's cores.
//! - [`message`]: what travels on the queues between the handlers.
//! - [`ports`]: the small traits (queue to send to and to receive from, object store, archive,
//!   catalog) the handlers reach the world through.
//! - `memory` (feature `test-support`): in-memory implementations of those ports, for tests,
//!   fuzz targets and benchmarks.

pub mod encode;
pub mod envelope;
pub mod event;
#[cfg(feature = "test-support")]
pub mod memory;
pub mod message;
pub mod metrics;
pub mod output;
pub mod parallel;
pub mod partition;
pub mod ports;
pub mod schema;
pub mod timestamp;
