//! Bytes → the ALB event decoder of the ingest Lambda (`lambda_http`'s ALB request, base64
//! bodies, multi-value headers, then `sparklake_aws::alb::to_handler`) → `Ingest::handle` with an
//! open configuration and in-memory queue and quarantine → `alb::from_handler`. Checks the
//! status against an independent reading of the request, and that an accepted batch is in the
//! queue whole and a refused one in the quarantine. A first byte of 0 makes the rest the seed of
//! a generated ALB event.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sparklake_fuzz::alb::check_event;
use sparklake_fuzz::gen_alb::GenAlb;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&sparklake_fuzz::STRUCTURED, rest)) => {
            if let Ok(alb) = GenAlb::arbitrary_take_rest(Unstructured::new(rest)) {
                let event = alb.to_event();
                check_event(&event.json, Some(&event));
            }
        }
        _ => {
            // A Lambda event is JSON text.
            if let Ok(text) = std::str::from_utf8(data) {
                check_event(text, None);
            }
        }
    }
});
