//! Bytes → the webhook envelope's validation, checked against a naive reference reading, and for
//! accepted batches everything downstream: join, split into queue messages, `Event::parse`, the
//! row's columns, identity, partition keys, CSV and Arrow. A first byte of 0 makes the rest the
//! seed of a generated SparkPost batch instead of the body itself.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sparklake_fuzz::checks::check_body;
use sparklake_fuzz::gen_batch::GenBatch;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&sparklake_fuzz::STRUCTURED, rest)) => {
            if let Ok(batch) = GenBatch::arbitrary_take_rest(Unstructured::new(rest)) {
                let _ = check_body(batch.to_body().as_bytes());
            }
        }
        _ => {
            let _ = check_body(data);
        }
    }
});
