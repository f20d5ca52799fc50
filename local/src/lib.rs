//! `sparklake`: the pipeline on one machine.
//!
//! - [`queue`]: an embedded durable queue (SQLite) with SQS semantics.
//! - [`store`]: a folder of files as the object store and the raw archive.
//! - [`pipeline`]: the queues, the store and the fanout and writer workers over them.
//! - [`server`]: the HTTP server in front of the ingest handler.
//! - [`commands`]: the `sparklake` commands (serve, demo, import, redrive, status; `gen` is in
//!   [`generate`]).
//! - [`bench`]: the writer stage alone, timed (`bench-writer`, for `scripts/bench`).
//! - [`report`]: what a data folder holds: rows per partition, for `demo` and `status`.
//! - [`generate`]: synthetic SparkPost webhook batches (`gen`), for benchmarks and load tests.

pub mod bench;
pub mod commands;
pub mod generate;
pub mod pipeline;
pub mod queue;
pub mod report;
pub mod server;
pub mod store;
