//! What the fuzz targets share (the in-memory ports are `sparklake_core::memory`): a runtime to drive the async handlers, a
//! reference reading of the webhook envelope to compare `envelope::validate` with, the checks
//! every accepted batch must pass, and structured generators (SparkPost batches, ALB events)
//! built from `arbitrary` bytes.
//!
//! A target's input is either a raw body (the corpus seeded from `fixtures/`), or, when its
//! first byte is [`STRUCTURED`], bytes the generators turn into a well-formed value, so the
//! fuzzer reaches deep paths (every field of every event type with drifting JSON types) without
//! first having to discover JSON.

#![allow(clippy::unwrap_used)]

pub mod alb;
pub mod checks;
mod field_lists;
mod fields;
pub mod gen_alb;
pub mod gen_batch;
pub mod queue;
pub mod reference;

/// First byte of an input that is generator bytes rather than a raw body. A raw body starting
/// with NUL is refused by every parser anyway, so the raw space loses nothing of interest.
pub const STRUCTURED: u8 = 0;

/// Runs an async handler to completion on one current-thread runtime per fuzzing thread.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|rt| rt.block_on(future))
}
