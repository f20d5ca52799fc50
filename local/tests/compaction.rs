//! Compaction over the folder store, through the real binary: a lake of writer-shaped objects
//! with duplicates and late retries becomes exact (each identity once per format, every row's
//! values those of one of its input copies), DuckDB reads it through the same views, and neither
//! `kill -9` at seeded random points, nor two compactors and an importer at once, lose a row.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow::array::{Array as _, AsArray as _};
use arrow::datatypes::TimestampMillisecondType;
use arrow::util::display::array_value_to_string;
use support::files::files_ending;
use support::lake::{Identity, csv_identities, duckdb_scalar, parquet_identities, tally};
use support::process::sparklake;

/// Small enough that a test lake makes objects at target size and remainders.
const TARGET_BYTES: &str = "65536";

fn run(command: &mut Command) {
    let output = command.output().expect("run sparklake");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `sparklake gen` into `dir/in`: `events` events in files of `batch` events.
fn generate(dir: &Path, events: u64, batch: usize, seed: u64) -> Vec<PathBuf> {
    let out = dir.join(format!("in-{seed}"));
    run(sparklake()
        .args([
            "gen",
            "--events",
            &events.to_string(),
            "--batch-size",
            &batch.to_string(),
        ])
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(&out));
    let mut files = files_ending(&out, ".json");
    files.sort();
    files
}

/// `sparklake import` with small writer calls, as a minute of live traffic writes them.
fn import_command(data: &Path, files: &[PathBuf]) -> Command {
    let mut command = sparklake();
    command
        .env("SPARKLAKE_LOG", "warn")
        .args([
            "import",
            "--no-archive",
            "--writer-batch-size",
            "8",
            "--data",
        ])
        .arg(data)
        .args(files)
        .stdout(Stdio::null());
    command
}

fn compact_command(data: &Path) -> Command {
    let mut command = sparklake();
    command
        .env("SPARKLAKE_LOG", "warn")
        .env("SPARKLAKE_COMPACT_TARGET_BYTES", TARGET_BYTES)
        .env("SPARKLAKE_COMPACT_MAX_INPUTS", "16")
        .args(["compact", "--all", "--data"])
        .arg(data);
    command
}

/// Each row of each Parquet object as text (column = value, in file order), by identity.
fn parquet_rows(data: &Path) -> BTreeMap<Identity, Vec<String>> {
    let mut rows: BTreeMap<Identity, Vec<String>> = BTreeMap::new();
    for path in files_ending(&data.join("parquet"), ".parquet") {
        let bytes = std::fs::read(&path).expect("read parquet");
        for batch in sparklake_core::encode::read_parquet(bytes.into()).expect("parquet reads") {
            let schema = batch.schema();
            let text = |name: &str, row: usize| {
                let column = batch.column_by_name(name).expect("column");
                (!column.is_null(row)).then(|| array_value_to_string(column, row).expect("value"))
            };
            for row in 0..batch.num_rows() {
                let identity = Identity::of(
                    &text("type", row).unwrap_or_default(),
                    text("event_id", row).as_deref(),
                    &text("raw", row).unwrap_or_default(),
                );
                let values: Vec<String> = schema
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let column = batch.column(i);
                        let value = if column.is_null(row) {
                            "NULL".to_owned()
                        } else if let Some(t) =
                            column.as_primitive_opt::<TimestampMillisecondType>()
                        {
                            // Shown as milliseconds: the display needs chrono-tz for "UTC".
                            t.value(row).to_string()
                        } else {
                            array_value_to_string(column, row).expect("value")
                        };
                        format!("{}={value}", f.name())
                    })
                    .collect();
                rows.entry(identity).or_default().push(values.join("\u{1}"));
            }
        }
    }
    rows
}

/// Each CSV record (every field, in order), by identity.
fn csv_rows(data: &Path) -> BTreeMap<Identity, Vec<String>> {
    let mut rows: BTreeMap<Identity, Vec<String>> = BTreeMap::new();
    for path in files_ending(&data.join("csv"), ".csv") {
        let mut reader = csv::Reader::from_path(&path).expect("open csv");
        let header = reader.headers().expect("header").clone();
        let at = |name: &str| header.iter().position(|h| h == name).expect("column");
        let (t, id, raw) = (at("type"), at("event_id"), at("raw"));
        for record in reader.records() {
            let record = record.expect("record");
            let identity = Identity::of(&record[t], Some(&record[id]), &record[raw]);
            let fields: Vec<&str> = record.iter().collect();
            rows.entry(identity).or_default().push(fields.join("\u{1}"));
        }
    }
    rows
}

/// Every identity kept exactly once, with the values of one of its copies before.
fn assert_exact_and_equal(
    before: &BTreeMap<Identity, Vec<String>>,
    after: &BTreeMap<Identity, Vec<String>>,
    format: &str,
) {
    let missing: Vec<&Identity> = before.keys().filter(|k| !after.contains_key(k)).collect();
    assert!(
        missing.is_empty(),
        "{format}: {} identities lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let extra: Vec<&Identity> = after.keys().filter(|k| !before.contains_key(k)).collect();
    assert!(
        extra.is_empty(),
        "{format}: identities that were never written: {extra:?}"
    );
    for (identity, rows) in after {
        assert_eq!(
            rows.len(),
            1,
            "{format}: {identity:?} kept {} times",
            rows.len()
        );
        assert!(
            before[identity].contains(&rows[0]),
            "{format}: {identity:?} has values none of its input copies had:\n{}\nbefore:\n{}",
            rows[0],
            before[identity].join("\n")
        );
    }
}

/// The lake's objects per partition folder: their sizes.
fn objects_by_partition(data: &Path) -> BTreeMap<PathBuf, Vec<u64>> {
    let mut out: BTreeMap<PathBuf, Vec<u64>> = BTreeMap::new();
    for format in ["parquet", "csv"] {
        for path in files_ending(&data.join(format), &format!(".{format}")) {
            let size = std::fs::metadata(&path).expect("size").len();
            out.entry(path.parent().expect("folder").to_path_buf())
                .or_default()
                .push(size);
        }
    }
    out
}

fn object_count(data: &Path) -> usize {
    objects_by_partition(data).values().map(Vec::len).sum()
}

#[test]
fn compaction_makes_the_lake_exact_with_every_row_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let files = generate(dir.path(), 3000, 50, 7);
    run(&mut import_command(&data, &files));
    // SparkPost's retries: a third of the batches again, as new messages.
    run(&mut import_command(&data, &files[..files.len() / 3]));
    let (parquet_before, csv_before) = (parquet_rows(&data), csv_rows(&data));
    let (tally_before, distinct) = tally(&parquet_identities(&data));
    assert!(
        tally_before.duplicates() > 900,
        "the test lake has duplicates: {tally_before:?}"
    );
    let objects_before = object_count(&data);

    run(&mut compact_command(&data));

    assert_exact_and_equal(&parquet_before, &parquet_rows(&data), "parquet");
    assert_exact_and_equal(&csv_before, &csv_rows(&data), "csv");
    let objects_after = object_count(&data);
    assert!(
        objects_after * 2 < objects_before,
        "{objects_before} objects became {objects_after}"
    );
    // As few objects as the target allows: at most one below it per partition.
    let target: u64 = TARGET_BYTES.parse().expect("number");
    for (folder, sizes) in objects_by_partition(&data) {
        let small = sizes.iter().filter(|&&s| s < target).count();
        assert!(
            small <= 1,
            "{}: {small} objects below the target: {sizes:?}",
            folder.display()
        );
    }
    // DuckDB reads the compacted lake through the same views, and needs no de-duplication.
    if let Some(rows) = duckdb_scalar(&data, "SELECT count(*) FROM events") {
        assert_eq!(rows as usize, distinct.len());
        let dedup = duckdb_scalar(&data, "SELECT count(*) FROM events_dedup").unwrap_or(0);
        assert_eq!(dedup, rows);
        let csv = duckdb_scalar(&data, "SELECT count(*) FROM events_csv").unwrap_or(0);
        assert_eq!(csv, rows);
    }

    // Late retries of events compacted already (into objects at target size and below).
    run(&mut import_command(&data, &files[files.len() / 2..]));
    assert!(tally(&parquet_identities(&data)).0.duplicates() > 0);
    run(&mut compact_command(&data));
    let (parquet, csv) = (
        tally(&parquet_identities(&data)),
        tally(&csv_identities(&data)),
    );
    assert_eq!(parquet.0.rows, distinct.len(), "parquet: {:?}", parquet.0);
    assert_eq!(csv.0.rows, distinct.len(), "csv: {:?}", csv.0);
    assert_eq!(parquet.1, distinct);

    // A second run finds nothing to do.
    let objects = object_count(&data);
    run(&mut compact_command(&data));
    assert_eq!(object_count(&data), objects);
}

/// The identities of both formats, as sets, with their row counts.
fn lake_state(data: &Path) -> (BTreeSet<Identity>, usize, BTreeSet<Identity>, usize) {
    let (p, pset) = tally(&parquet_identities(data));
    let (c, cset) = tally(&csv_identities(data));
    (pset, p.rows, cset, c.rows)
}

#[test]
fn kill_9_at_random_points_then_a_rerun_converges_to_the_exact_lake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let files = generate(dir.path(), 6000, 50, 11);
    run(&mut import_command(&data, &files));
    run(&mut import_command(&data, &files[..files.len() / 4]));
    let (parquet, _, csv, _) = lake_state(&data);
    let rounds: u64 = std::env::var("SPARKLAKE_COMPACT_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut seed: u64 = std::env::var("SPARKLAKE_COMPACT_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261201);
    let mut killed = 0;
    for round in 0..rounds {
        // xorshift: a delay between 20 ms and ~1.3 s into the run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(20 + seed % 1300);
        let mut child = compact_command(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn compact");
        std::thread::sleep(delay);
        if child.try_wait().expect("wait").is_none() {
            child.kill().expect("kill -9");
            killed += 1;
        }
        let _ = child.wait();
        let (p, _, c, _) = lake_state(&data);
        assert!(
            parquet.is_subset(&p),
            "round {round} (killed after {delay:?}): Parquet rows lost"
        );
        assert!(
            csv.is_subset(&c),
            "round {round} (killed after {delay:?}): CSV rows lost"
        );
        assert_eq!((p.len(), c.len()), (parquet.len(), csv.len()));
    }
    assert!(
        killed > 0,
        "no run was killed: the lake is too small for the delays"
    );
    run(&mut compact_command(&data));
    let (p, prows, c, crows) = lake_state(&data);
    assert_eq!((p, prows), (parquet.clone(), parquet.len()));
    assert_eq!((c, crows), (csv.clone(), csv.len()));
    // No journal left, no temporary file left.
    let leftovers: Vec<PathBuf> = files_ending(&data.join("_compaction"), ".journal")
        .into_iter()
        .chain(files_ending(&data.join("_compaction/tmp"), ""))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn two_compactors_and_an_importer_at_once_lose_nothing_and_converge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let first = generate(dir.path(), 3000, 50, 21);
    let second = generate(dir.path(), 2000, 50, 22);
    run(&mut import_command(&data, &first));
    let piped = |mut command: Command| {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    };
    let children = vec![
        piped(compact_command(&data)).spawn().expect("compact 1"),
        piped(compact_command(&data)).spawn().expect("compact 2"),
        // One importer (a data folder has one owner of its queues): new events, and retries
        // of some already written.
        piped(import_command(&data, &[&second[..], &first[..10]].concat()))
            .spawn()
            .expect("import"),
    ];
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert!(
            output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    run(&mut compact_command(&data));
    let mut expected: BTreeSet<Identity> = BTreeSet::new();
    for file in first.iter().chain(&second) {
        let text = std::fs::read_to_string(file).expect("read batch");
        expected.extend(support::lake::batch_identities(&text));
    }
    let (p, prows, c, crows) = lake_state(&data);
    assert_eq!(p, expected, "Parquet");
    assert_eq!(prows, expected.len(), "Parquet rows");
    assert_eq!(c.len(), expected.len(), "CSV");
    assert_eq!(crows, expected.len(), "CSV rows");
}
