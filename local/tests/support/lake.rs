//! The lake a run wrote, as the tests check it: event identities of what was posted and of what
//! was written (Parquet and CSV), the repository's de-duplicating view run in DuckDB, and the
//! JSON logs of `serve`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::files::files_ending;
use super::fixtures::repo_root;
use super::http::TOKEN;
use super::process::{serve, sparklake};

use arrow::array::{Array as _, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};

/// An event's identity as the writer and the de-duplicating view see it: `(type, event_id)`, or
/// the SHA-256 of the element exactly as received when it has no `event_id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    Id(String, String),
    Raw(String),
}

impl Identity {
    pub fn of(event_type: &str, event_id: Option<&str>, raw: &str) -> Self {
        match event_id.filter(|id| !id.is_empty()) {
            Some(id) => Self::Id(event_type.to_owned(), id.to_owned()),
            None => Self::Raw(hex::encode(Sha256::digest(raw.as_bytes()))),
        }
    }
}

/// The identities of the events of a batch (pings left out), in order.
pub fn batch_identities(batch: &str) -> Vec<Identity> {
    let elements: Vec<&RawValue> = serde_json::from_str(batch).expect("a JSON array");
    elements
        .into_iter()
        .filter_map(|element| {
            let value: serde_json::Value = serde_json::from_str(element.get()).expect("json");
            let (_, event) = value["msys"].as_object()?.iter().next()?;
            let event_type = event["type"].as_str().expect("type").to_owned();
            Some(Identity::of(
                &event_type,
                event["event_id"].as_str(),
                element.get(),
            ))
        })
        .collect()
}

/// A `serve` command over `data` with bearer auth on, logging JSON at info level to `log`.
pub fn serve_command(data: &Path, log: &Path, extra: &[&str]) -> Command {
    let mut command = sparklake();
    command
        .env("SPARKLAKE_AUTH", "bearer")
        .env("SPARKLAKE_BEARER_TOKENS", TOKEN)
        .env("SPARKLAKE_LOG", "info")
        .env("SPARKLAKE_LOG_FORMAT", "json")
        .stderr(log_file(log));
    serve(command, data, extra)
}

/// `path` opened for appending (several runs log to one file).
pub fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

/// The `event_id` of every row of every Parquet object under `data/parquet`.
pub fn written_event_ids(data: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for path in files_ending(&data.join("parquet"), ".parquet") {
        let file = std::fs::File::open(&path).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let column = batch.column_by_name("event_id").expect("event_id column");
            let strings = column.as_any().downcast_ref::<StringArray>().expect("utf8");
            ids.extend(strings.iter().map(|s| s.unwrap_or_default().to_owned()));
        }
    }
    ids
}

/// The identity of every row of every Parquet object under `data/parquet`, one per row.
pub fn parquet_identities(data: &Path) -> Vec<Identity> {
    let mut out = Vec::new();
    for path in files_ending(&data.join("parquet"), ".parquet") {
        let file = std::fs::File::open(&path).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{} is not whole Parquet: {e}", path.display()))
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.expect("record batch");
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .unwrap_or_else(|| panic!("no {name} column"))
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap_or_else(|| panic!("{name} is not utf8"))
                    .clone()
            };
            let (types, ids, raws) = (column("type"), column("event_id"), column("raw"));
            for row in 0..batch.num_rows() {
                let id = (!ids.is_null(row)).then(|| ids.value(row));
                out.push(Identity::of(types.value(row), id, raws.value(row)));
            }
        }
    }
    out
}

/// The identity of every row of every CSV object under `data/csv`, one per row.
pub fn csv_identities(data: &Path) -> Vec<Identity> {
    let mut out = Vec::new();
    for path in files_ending(&data.join("csv"), ".csv") {
        let mut reader = csv::Reader::from_path(&path).expect("open csv");
        let header = reader.headers().expect("header").clone();
        let index = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("no {name} column in {}", path.display()))
        };
        let (t, id, raw) = (index("type"), index("event_id"), index("raw"));
        for record in reader.records() {
            let record = record.expect("csv record");
            out.push(Identity::of(&record[t], Some(&record[id]), &record[raw]));
        }
    }
    out
}

/// Rows, distinct identities, and the largest number of copies of one identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub rows: usize,
    pub distinct: usize,
    pub max_copies: usize,
}

impl Tally {
    pub fn duplicates(&self) -> usize {
        self.rows - self.distinct
    }
}

pub fn tally(identities: &[Identity]) -> (Tally, BTreeSet<Identity>) {
    let mut copies: BTreeMap<&Identity, usize> = BTreeMap::new();
    for identity in identities {
        *copies.entry(identity).or_default() += 1;
    }
    let tally = Tally {
        rows: identities.len(),
        distinct: copies.len(),
        max_copies: copies.values().copied().max().unwrap_or(0),
    };
    (tally, copies.into_keys().cloned().collect())
}

/// The python of the virtualenv `scripts/test.sh` prepares, if it has duckdb.
fn duckdb_python() -> Option<PathBuf> {
    let venv = std::env::var_os("SPARKLAKE_VENV").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/sparklake/venv")
        },
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import duckdb"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

/// Runs `sql` with `scripts/query --local` (DuckDB, the view `events_dedup` created from
/// `queries/events_dedup_view.sql`) over `data`; returns the value of the one row's one column.
/// `None` when the virtualenv has no duckdb (outside `scripts/test.sh`), unless
/// `SPARKLAKE_REQUIRE_DUCKDB` is set, which `scripts/test.sh` does: then it is a failure.
pub fn duckdb_scalar(data: &Path, sql: &str) -> Option<u64> {
    if duckdb_python().is_none() {
        assert!(
            std::env::var_os("SPARKLAKE_REQUIRE_DUCKDB").is_none(),
            "SPARKLAKE_REQUIRE_DUCKDB is set but the virtualenv has no duckdb"
        );
        eprintln!(
            "note: no virtualenv with duckdb (scripts/test.sh prepares one): the DuckDB check of the de-duplicating view is skipped"
        );
        return None;
    }
    let output = Command::new(repo_root().join("scripts/query"))
        .args(["--local", "--data"])
        .arg(data)
        .args(["--sql", sql])
        .output()
        .expect("run scripts/query");
    assert!(
        output.status.success(),
        "scripts/query failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let value = text.lines().nth(1).unwrap_or_default().trim();
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("scripts/query printed {text:?}")),
    )
}

/// The `fields` of each JSON log line of `log` whose message is `message`.
pub fn log_events(log: &Path, message: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["fields"]["message"].as_str() == Some(message))
        .map(|v| v["fields"].clone())
        .collect()
}

/// A batch of one delivery event whose `event_id` is `<tag>-<n>-0` (a timestamp in 2024).
pub fn numbered_batch(tag: &str, n: usize) -> String {
    serde_json::json!([{"msys": {"message_event": {
        "type": "delivery",
        "event_id": format!("{tag}-{n}-0"),
        "timestamp": "1717243200",
        "rcpt_to": "someone@example.com",
    }}}])
    .to_string()
}
