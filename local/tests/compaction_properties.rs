//! Property: any interleaving of writer calls (with retries, duplicates and late events) and
//! compactions over the folder store keeps the set of identities written, in both formats;
//! after a final compaction every partition holds each identity once.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use compact::{Compactor, Policy, RunOptions};
use proptest::prelude::*;
use sparklake::store::FsStore;
use sparklake_core::encode::ParquetEncoder;
use support::events::message;
use support::lake::{Identity, csv_identities, parquet_identities};

#[derive(Debug, Clone)]
enum Op {
    /// A writer call: for each (type, first id, count), one message.
    Write(Vec<(usize, u64, u64)>),
    /// A compaction run, with `--all` or with the thresholds.
    Compact { all: bool },
}

const TYPES: [&str; 3] = ["delivery", "bounce", "open"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec((0..TYPES.len(), 0u64..60, 1u64..12), 1..4).prop_map(Op::Write),
        1 => any::<bool>().prop_map(|all| Op::Compact { all }),
    ]
}

fn identities(data: &Path) -> (Vec<Identity>, Vec<Identity>) {
    (parquet_identities(data), csv_identities(data))
}

/// Rows per (partition folder, identity) of one format.
fn copies_per_partition(data: &Path, format: &str) -> BTreeMap<(String, Identity), usize> {
    let mut out = BTreeMap::new();
    for path in support::files::files_ending(&data.join(format), &format!(".{format}")) {
        let folder = path.parent().unwrap().to_string_lossy().into_owned();
        let single = tempfile::tempdir().unwrap();
        let target = single.path().join(format).join("x");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
        let ids = if format == "parquet" {
            parquet_identities(single.path())
        } else {
            csv_identities(single.path())
        };
        for id in ids {
            *out.entry((folder.clone(), id)).or_default() += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn interleaved_writes_and_compactions_keep_every_identity(ops in prop::collection::vec(op(), 1..10)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        let encoder = ParquetEncoder::default();
        let writer = writer::Writer { store: &store, parquet: &encoder, timestamps: Default::default(), catalog: None };
        let policy = Policy { target_bytes: 6 * 1024, max_inputs: 3, min_objects: 3, ..Policy::default() };
        let compactor = Compactor { store: &store, parquet: &encoder, policy };
        let mut written: BTreeSet<Identity> = BTreeSet::new();
        for (n, op) in ops.iter().enumerate() {
            match op {
                Op::Write(parts) => {
                    let messages: Vec<_> = parts
                        .iter()
                        .enumerate()
                        .map(|(i, (t, first, count))| message(&format!("m{n}-{i}"), TYPES[*t], *first, *count))
                        .collect();
                    let outcome = runtime.block_on(writer.handle(&messages, 0));
                    prop_assert!(outcome.failed.is_empty());
                    for (t, first, count) in parts {
                        for k in *first..first + count {
                            written.insert(Identity::Id(TYPES[*t].to_owned(), format!("{}-{k}", TYPES[*t])));
                        }
                    }
                }
                Op::Compact { all } => {
                    let options = RunOptions { all: *all, ..RunOptions::default() };
                    let report = runtime.block_on(compactor.run(&options, 0)).unwrap();
                    prop_assert_eq!(report.failed, 0);
                }
            }
            let (parquet, csv) = identities(dir.path());
            let parquet: BTreeSet<Identity> = parquet.into_iter().collect();
            let csv: BTreeSet<Identity> = csv.into_iter().collect();
            prop_assert_eq!(&parquet, &written, "Parquet after op {} ({:?})", n, op);
            prop_assert_eq!(&csv, &written, "CSV after op {} ({:?})", n, op);
        }
        let options = RunOptions { all: true, ..RunOptions::default() };
        runtime.block_on(compactor.run(&options, 0)).unwrap();
        for format in ["parquet", "csv"] {
            for ((folder, id), copies) in copies_per_partition(dir.path(), format) {
                prop_assert_eq!(copies, 1, "{} {:?} in {}", format, id, folder);
            }
        }
        let (parquet, csv) = identities(dir.path());
        prop_assert_eq!(parquet.len(), written.len());
        prop_assert_eq!(csv.len(), written.len());
    }
}
