//! `sparklake`: the pipeline on one machine.
//!
//! - [`queue`]: an embedded durable queue (SQLite) with SQS semantics.
//! - [`store`]: a folder of files as the object store and the raw archive.

pub mod queue;
pub mod store;
