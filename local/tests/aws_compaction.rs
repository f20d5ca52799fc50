//! Compaction on S3 (the emulator `scripts/test.sh` starts, through the real SDK): writer calls
//! with duplicates become exact partitions in both formats, two compactors at once lose nothing,
//! a live lease is respected, and an expired lease's journal (a compactor that died while
//! writing) is undone by whoever takes it.
#![allow(clippy::unwrap_used)]

mod support;

use compact::{Compactor, Policy, RunOptions};
use sparklake_aws::s3::{Encryption, S3Store};
use sparklake_core::encode::ParquetEncoder;
use support::aws::*;
use support::events::message;

/// Writes `calls` writer calls of two types, each call overlapping the one before by half.
async fn write(store: &S3Store, round: &str, calls: u64) {
    let encoder = ParquetEncoder::default();
    let writer = writer::Writer {
        store,
        parquet: &encoder,
        timestamps: Default::default(),
        catalog: None,
    };
    for call in 0..calls {
        let messages = vec![
            message(&format!("{round}-d{call}"), "delivery", call * 10, 20),
            message(&format!("{round}-b{call}"), "bounce", call * 5, 10),
        ];
        let outcome = writer.handle(&messages, 0).await;
        assert!(outcome.failed.is_empty());
    }
}

/// (rows, distinct ids) of each format under the store's prefix.
async fn tally(aws: &Aws, bucket: &str, prefix: &str) -> ((usize, usize), (usize, usize)) {
    let ids = parquet_event_ids(aws, bucket, &format!("{prefix}parquet/")).await;
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    let mut csv_ids = Vec::new();
    for key in keys(aws, bucket, &format!("{prefix}csv/")).await {
        let body = get(aws, bucket, &key).await;
        let mut reader = csv::Reader::from_reader(&body[..]);
        let at = reader
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "event_id")
            .unwrap();
        for record in reader.records() {
            csv_ids.push(record.unwrap()[at].to_owned());
        }
    }
    let csv_distinct: std::collections::BTreeSet<&String> = csv_ids.iter().collect();
    (
        (ids.len(), distinct.len()),
        (csv_ids.len(), csv_distinct.len()),
    )
}

fn policy() -> Policy {
    Policy {
        target_bytes: 8 * 1024,
        max_inputs: 4,
        ..Policy::default()
    }
}

async fn run_all(compactor: &Compactor<'_>) -> compact::Report {
    let options = RunOptions {
        all: true,
        ..RunOptions::default()
    };
    compactor
        .run(&options, sparklake_aws::now_millis())
        .await
        .unwrap()
}

#[tokio::test]
async fn compaction_on_s3_is_exact_concurrent_safe_and_recovers_an_expired_lease() {
    let aws = aws().await;
    let lake = unique("lake");
    bucket(&aws, &lake).await;
    let bucket = lake.as_str();
    let prefix = "events/";
    let store = S3Store::new(aws.s3.clone(), bucket, prefix, Encryption::S3);
    write(&store, "one", 12).await;
    let ((rows, distinct), (csv_rows, csv_distinct)) = tally(&aws, bucket, prefix).await;
    assert!(
        rows > distinct,
        "duplicates to remove: {rows} rows, {distinct} ids"
    );
    assert_eq!((csv_rows, csv_distinct), (rows, distinct));
    let encoder = ParquetEncoder::default();
    let compactor = Compactor {
        store: &store,
        parquet: &encoder,
        policy: policy(),
    };

    // Two compactors at once, with the writer adding late retries and new events meanwhile.
    let (a, b, ()) = tokio::join!(
        run_all(&compactor),
        run_all(&compactor),
        write(&store, "two", 14)
    );
    assert_eq!(a.failed + b.failed, 0);
    assert!(a.jobs + b.jobs > 0);
    let report = run_all(&compactor).await;
    assert_eq!(report.failed, 0);
    let ((rows, distinct), (csv_rows, csv_distinct)) = tally(&aws, bucket, prefix).await;
    let expected = 14 * 10 + 10 + 14 * 5 + 5; // delivery ids 0..150, bounce ids 0..75
    assert_eq!((rows, distinct), (expected, expected), "parquet exact");
    assert_eq!((csv_rows, csv_distinct), (expected, expected), "csv exact");
    let all_keys = keys(&aws, bucket, prefix).await;
    assert!(
        all_keys
            .iter()
            .any(|k| k.contains("/_compaction/identities/")),
        "objects at target size have identity sidecars: {all_keys:?}"
    );
    assert!(
        !all_keys.iter().any(|k| k.ends_with(".lease")),
        "every lease released: {all_keys:?}"
    );

    // A live lease held elsewhere: its partition is left alone.
    let partition = all_keys
        .iter()
        .find(|k| k.starts_with(&format!("{prefix}parquet/event_type=delivery/")))
        .map(|k| {
            k.rsplit_once('/')
                .unwrap()
                .0
                .trim_start_matches(prefix)
                .to_owned()
        })
        .unwrap();
    let lease_key = format!("{prefix}_compaction/leases/{partition}.lease");
    let held = serde_json::json!({"owner": "elsewhere", "expires_millis": i64::MAX, "journal": ""});
    put(&aws, bucket, &lease_key, held.to_string()).await;
    write(&store, "three", 3).await;
    let report = run_all(&compactor).await;
    assert!(report.busy >= 1, "{report:?}");

    // That holder died while writing: a partial output (a copy of an object, so duplicate rows)
    // and its journal. Once the lease has expired the next run undoes the job.
    let object = all_keys
        .iter()
        .find(|k| k.starts_with(&format!("{prefix}{partition}/")) && k.ends_with(".parquet"))
        .unwrap();
    let partial = format!("{prefix}{partition}/c-dead-0.parquet");
    put(&aws, bucket, &partial, get(&aws, bucket, object).await).await;
    let journal = serde_json::json!({"inputs": [], "outputs_prefix": "c-dead", "outputs": null});
    let expired =
        serde_json::json!({"owner": "dead", "expires_millis": 0, "journal": journal.to_string()});
    put(&aws, bucket, &lease_key, expired.to_string()).await;
    let report = run_all(&compactor).await;
    assert_eq!((report.failed, report.busy), (0, 0), "{report:?}");
    assert!(report.recovered >= 1, "{report:?}");
    let all_keys = keys(&aws, bucket, prefix).await;
    assert!(
        !all_keys.contains(&partial),
        "the dead job's output is undone"
    );
    assert!(!all_keys.iter().any(|k| k.ends_with(".lease")));
    // "three" wrote retries of ids already there: still each once.
    let ((rows, distinct), (csv_rows, _)) = tally(&aws, bucket, prefix).await;
    assert_eq!((rows, distinct, csv_rows), (expected, expected, expected));
}
