//! The repository's fixtures and the dates the tests stamp.

use std::error::Error;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

pub type TestResult = Result<(), Box<dyn Error>>;
pub type AnyResult<T> = Result<T, Box<dyn Error>>;

/// The repository's root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

pub fn fixture_path(name: &str) -> PathBuf {
    repo_root().join("fixtures").join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Unix milliseconds of a UTC date and time.
pub fn millis(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|date| date.and_hms_opt(h, mi, s))
        .expect("a valid date")
        .and_utc()
        .timestamp_millis()
}

/// The receive time the tests stamp on requests: 2024-05-06T12:00:00Z.
pub fn received_at() -> i64 {
    millis(2024, 5, 6, 12, 0, 0)
}
