//! `sparklake import` through the real binary: the handlers in memory on two threads (no queue
//! between them) write every event of the files once in each format, a second import adds a
//! second copy (as a replay does, never overwriting the first), and a lake that cannot be
//! written stops it with an error instead of losing events quietly.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::files::files_ending;
use support::lake::{Identity, batch_identities, csv_identities, parquet_identities};
use support::process::sparklake;

fn output(command: &mut Command) -> Output {
    command.output().expect("run sparklake")
}

fn generate(dir: &Path, events: u64) -> Vec<PathBuf> {
    let out = dir.join("in");
    let done = output(sparklake().args([
        "gen",
        "--events",
        &events.to_string(),
        "--batch-size",
        "250",
        "--seed",
        "7",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]));
    assert!(done.status.success(), "gen failed: {done:?}");
    let mut files = files_ending(&out, ".json");
    files.sort();
    files
}

/// `import` with small writer calls (many calls waiting on the writer thread).
fn import(data: &Path, files: &[PathBuf]) -> Output {
    output(
        sparklake()
            .env("SPARKLAKE_LOG", "warn")
            .args(["import", "--writer-batch-size", "8", "--data"])
            .arg(data)
            .args(files),
    )
}

fn counts(identities: Vec<Identity>) -> BTreeMap<Identity, usize> {
    let mut out = BTreeMap::new();
    for identity in identities {
        *out.entry(identity).or_default() += 1;
    }
    out
}

#[test]
fn import_writes_each_event_of_the_files_in_both_formats_and_again_on_a_second_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = generate(dir.path(), 3_000);
    let data = dir.path().join("data");
    let sent = counts(
        files
            .iter()
            .flat_map(|f| batch_identities(&std::fs::read_to_string(f).expect("read")))
            .collect(),
    );
    assert!(sent.values().sum::<usize>() >= 3_000);

    let first = import(&data, &files);
    assert!(first.status.success(), "import failed: {first:?}");
    assert_eq!(
        counts(parquet_identities(&data)),
        sent,
        "parquet/ after one import"
    );
    assert_eq!(counts(csv_identities(&data)), sent, "csv/ after one import");
    let archived: usize = files_ending(&data.join("archive"), ".ndjson")
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read").lines().count())
        .sum();
    assert_eq!(archived, sent.values().sum::<usize>(), "the raw archive");

    let second = import(&data, &files);
    assert!(second.status.success(), "second import failed: {second:?}");
    let twice: BTreeMap<Identity, usize> = sent.iter().map(|(k, n)| (k.clone(), 2 * n)).collect();
    assert_eq!(
        counts(parquet_identities(&data)),
        twice,
        "parquet/ after two imports"
    );
    assert_eq!(
        counts(csv_identities(&data)),
        twice,
        "csv/ after two imports"
    );
    // Nothing was left in the queues: import ran the handlers in memory.
    let status = output(sparklake().args(["status", "--data"]).arg(&data));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "status failed: {status:?}");
    for queue in ["ingest", "events"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(queue))
            .unwrap_or_else(|| panic!("no {queue} line in status:\n{text}"));
        assert!(
            line.split_whitespace().skip(1).all(|n| n == "0"),
            "the {queue} queue is not empty after import:\n{text}"
        );
    }
}

#[test]
fn import_stops_with_an_error_when_the_lake_cannot_be_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = generate(dir.path(), 500);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data folder");
    // parquet/ is a file: no object can be written under it.
    std::fs::write(data.join("parquet"), b"not a folder").expect("block parquet/");
    let done = import(&data, &files);
    assert!(!done.status.success(), "import succeeded: {done:?}");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(
        stderr.contains("the writer failed 3 times"),
        "unexpected error:\n{stderr}"
    );
}

#[test]
fn import_refuses_a_file_holding_an_element_too_large_for_a_message_and_imports_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Generated files (250 events, far over the limit below, so ingest splits them) and one
    // file whose one event is larger than any message may be.
    let mut files = generate(dir.path(), 500);
    let sent = counts(
        files
            .iter()
            .flat_map(|f| batch_identities(&std::fs::read_to_string(f).expect("read")))
            .collect(),
    );
    let huge = dir.path().join("huge.json");
    let subject = "x".repeat(8_192);
    std::fs::write(
        &huge,
        format!(
            r#"[{{"msys":{{"message_event":{{"type":"delivery","event_id":"huge-1","timestamp":"1714996800","subject":"{subject}"}}}}}}]"#
        ),
    )
    .expect("write");
    files.insert(1, huge);
    let data = dir.path().join("data");

    let done = output(
        sparklake()
            .env("SPARKLAKE_LOG", "warn")
            .env("SPARKLAKE_MAX_MESSAGE_BYTES", "4096")
            .args(["import", "--data"])
            .arg(&data)
            .args(&files),
    );
    assert!(
        !done.status.success(),
        "a refused file fails the import: {done:?}"
    );
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        stdout.lines().any(|l| l.contains("huge.json: 413")),
        "the large element is refused by ingest:\n{stdout}"
    );
    assert_eq!(
        files_ending(&data.join("quarantine"), ".json").len(),
        1,
        "the refused file is kept to inspect and replay"
    );
    // Every other file went through, each event once in each format.
    assert_eq!(counts(parquet_identities(&data)), sent, "parquet/");
    assert_eq!(counts(csv_identities(&data)), sent, "csv/");
}
