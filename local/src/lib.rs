//! `sparklake`: the pipeline on one machine, and the same workers over SQS and S3.
//!
//! - [`cli`]: the command line, every flag and its environment variable, and the typed
//!   configuration each command is built from.
//! - [`config`]: how the workers poll and write (the [`config::Settings`] of either backend).
//! - [`pipeline`]: the queues, store, archive and catalog of either backend, and the fanout and
//!   writer workers that poll them as an SQS event source mapping does.
//! - [`app`]: the whole pipeline as one process: server, workers, metrics reporter, ordered stop.
//! - [`server`]: the HTTP/1.1 server in front of the ingest handler, every resource a client
//!   can make it spend bounded ([`server::Limits`]).
//! - [`commands`]: the commands (serve, demo, import, redrive, schema, status), one file each.
//! - [`queue`]: an embedded durable queue (SQLite) with SQS semantics and its dead-letter policy.
//! - [`store`]: a folder of files as the object store and the raw archive.
//! - [`report`]: what a data folder holds: rows per partition, for `demo` and `status`.
//! - [`generate`]: synthetic SparkPost webhook batches (`gen`), for benchmarks and load tests.
//! - [`bench`]: the writer stage alone, timed (`bench-writer`, for `scripts/bench`).
//! - [`http_client`]: a minimal HTTP/1.1 client posting to a local `serve` (demo, tests).
//! - [`logging`]: logs to stderr, text or JSON.
//! - [`stdout`]: command output that ends quietly on a closed pipe.

pub mod app;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod compaction;
pub mod config;
pub mod generate;
pub mod http_client;
pub mod logging;
pub mod pipeline;
pub mod queue;
pub mod report;
pub mod server;
pub mod stdout;
pub mod store;
