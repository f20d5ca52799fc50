//! writer: turns a batch of queue messages of events into one Parquet and one CSV object per
//! (event type, UTC date).
//!
//! Objects are named from the ids of the messages they hold, so a batch retried whole overwrites
//! what it wrote before instead of adding a copy. Delivery is at least once all the same: a
//! message retried in a different company (after a partial failure, or a redelivery into another
//! batch) is written under a new name, so exact queries de-duplicate on `(type, event_id)`. Within a batch an event is written once per identity
//! ((type, event_id), or a hash of its raw JSON). Failures are per message: a message that cannot
//! be read, or whose rows could not be stored, is reported failed; the others are done.
//!
//! - [`handler`]: the handler: messages in, rows grouped by partition and de-duplicated, objects
//!   stored, the catalog told of new types, failures per message.
//! - [`encode`]: every group's Parquet and CSV, encoded on all cores.

pub mod encode;
pub mod handler;

pub use handler::{Outcome, WriteError, Writer};
