//! The compactor: rewrites each partition's many small objects as few large ones, each event
//! identity once, without ever losing a row (README, "Compaction").
//!
//! - [`listing`]: the lake's objects grouped by partition (format, event type, date).
//! - [`policy`]: when a partition is compacted and what one job merges (pure, unit-tested).
//! - [`rows`]: a stored object's rows and identities, read streaming (Parquet, CSV).
//! - [`merge`]: one job's k-way merge in timestamp order, de-duplicated, into outputs closed
//!   at the target size.
//! - [`identities`]: the identities of objects at target size (sidecar, or their columns).
//! - [`journal`]: what a job records under its lease so a rerun finishes or undoes it.
//! - [`run`]: a run over every due partition, under leases, within a deadline.
//! - [`pending`]: what waits for compaction, read without changing anything.
//! - [`report`]: what a run did (log, EMF) and what a dry run would do.
//! - [`scratch`]: a job's temporary folder.

pub mod identities;
pub mod journal;
pub mod listing;
pub mod merge;
pub mod pending;
pub mod policy;
pub mod report;
pub mod rows;
pub mod run;
pub mod scratch;

pub use pending::Waiting;
pub use policy::Policy;
pub use report::{Planned, Report};
pub use run::{Compactor, RunOptions};
