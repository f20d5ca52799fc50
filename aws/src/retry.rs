//! Backoff for the partial failures the SDK reports as success (`Failed` entries of a batch call).

use std::time::Duration;

/// Attempts of a batch call, the first included.
pub const ATTEMPTS: u32 = 5;

/// Exponential backoff with full jitter, capped at two seconds.
pub fn backoff(attempt: u32) -> Duration {
    let base = 50u64.saturating_mul(1u64 << attempt.min(6));
    let capped = base.min(2_000);
    // Jitter without a random crate: the low bits of the clock are noise enough here.
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    Duration::from_millis(capped / 2 + noise % (capped / 2 + 1))
}
