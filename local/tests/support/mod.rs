//! What the integration tests under `local/tests` share, one module per kind of part they
//! drive: [`fixtures`] (files under `fixtures/`, dates), [`files`] (what a run left on disk),
//! [`process`] (the real `sparklake` binary: start, signal, wait), [`http`] (raw HTTP/1.1 to it,
//! every byte under the test's control), [`lake`] (event identities posted and written, the
//! de-duplicating view in DuckDB, JSON logs), [`handlers`] (the handlers over the real local
//! adapters in a tempdir), [`events`] (writer messages made up in the test) and [`aws`] (the emulator through the real AWS SDK).
//!
//! Each test file is its own crate and uses some of these; what one leaves unused is not dead.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

pub mod aws;
pub mod events;
pub mod files;
pub mod fixtures;
pub mod handlers;
pub mod http;
pub mod lake;
pub mod process;
