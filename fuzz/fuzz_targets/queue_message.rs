//! Bytes (+ arbitrary attributes) → the SQS body codec (zstd + base64, capped) → the handlers'
//! message (`to_inbound`) → fanout (split by type, routes, archive) → the codec again → writer
//! (Parquet + CSV per partition), with in-memory ports. A raw input is tried as a plain body, as
//! a zstd-base64 text, and round-tripped through `encode`; a first byte of 0 makes the rest the
//! seed of a generated message (attributes, encoding, a zstd frame or a SparkPost batch).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sparklake_fuzz::queue::{GenMessage, check_message, check_raw};

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&sparklake_fuzz::STRUCTURED, rest)) => {
            if let Ok(message) = GenMessage::arbitrary_take_rest(Unstructured::new(rest)) {
                check_message(&message);
            }
        }
        _ => check_raw(data),
    }
});
