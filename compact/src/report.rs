//! What a run did (logged, printed by `sparklake compact`, emitted as EMF by the Lambda) and
//! what a dry run would do.

use serde::Serialize;
use serde_json::json;
use sparklake_core::ports::ObjectInfo;
use tracing::info;

use crate::listing::PartitionPath;
use crate::merge::Merged;
use crate::policy::Job;

/// A run's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Partitions (of both formats) listed.
    pub partitions_seen: u64,
    pub partitions_compacted: u64,
    pub jobs: u64,
    pub objects_in: u64,
    pub objects_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    /// Rows dropped because their identity was already in the partition.
    pub duplicates: u64,
    /// Partitions skipped because another compactor held them.
    pub busy: u64,
    /// Partitions whose compaction failed (left for the next run).
    pub failed: u64,
    /// Journals of earlier runs finished or undone.
    pub recovered: u64,
    /// The deadline came before every due partition was done.
    pub out_of_time: bool,
    pub seconds: f64,
}

/// The EMF metrics a run emits, in the Lambda's log (namespace `SPARKLAKE_METRICS_NAMESPACE`,
/// dimension `Function`).
pub const EMF_METRICS: &[(&str, &str)] = &[
    ("PartitionsCompacted", "Count"),
    ("CompactionJobs", "Count"),
    ("ObjectsIn", "Count"),
    ("ObjectsOut", "Count"),
    ("BytesIn", "Bytes"),
    ("BytesOut", "Bytes"),
    ("RowsIn", "Count"),
    ("RowsOut", "Count"),
    ("DuplicatesRemoved", "Count"),
    ("PartitionsBusy", "Count"),
    ("CompactionFailures", "Count"),
    ("CompactionSeconds", "Seconds"),
    ("PartitionsWaiting", "Count"),
    ("RunsOutOfTime", "Count"),
];

impl Report {
    pub(crate) fn add_job(&mut self, job: &Job, merged: &Merged) {
        self.jobs += 1;
        self.objects_in += job.inputs.len() as u64;
        self.bytes_in += job.input_bytes();
        self.objects_out += merged.outputs.len() as u64;
        self.bytes_out += merged.outputs.iter().map(|o| o.bytes).sum::<u64>();
        self.rows_in += merged.rows_in;
        self.rows_out += merged.outputs.iter().map(|o| o.rows).sum::<u64>();
        self.duplicates += merged.duplicates;
    }

    pub(crate) fn log(&self) {
        info!(
            partitions_seen = self.partitions_seen,
            partitions_compacted = self.partitions_compacted,
            jobs = self.jobs,
            objects_in = self.objects_in,
            objects_out = self.objects_out,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            rows_in = self.rows_in,
            rows_out = self.rows_out,
            duplicates = self.duplicates,
            busy = self.busy,
            failed = self.failed,
            out_of_time = self.out_of_time,
            seconds = self.seconds,
            "compaction run done"
        );
    }

    /// One EMF line; `waiting` is the partitions still due after the run.
    pub fn to_emf(&self, namespace: &str, function: &str, waiting: u64, now_millis: i64) -> String {
        json!({
            "_aws": {"Timestamp": now_millis, "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Function"]],
                "Metrics": EMF_METRICS.iter().map(|(n, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }]},
            "Function": function,
            "PartitionsCompacted": self.partitions_compacted,
            "CompactionJobs": self.jobs,
            "ObjectsIn": self.objects_in,
            "ObjectsOut": self.objects_out,
            "BytesIn": self.bytes_in,
            "BytesOut": self.bytes_out,
            "RowsIn": self.rows_in,
            "RowsOut": self.rows_out,
            "DuplicatesRemoved": self.duplicates,
            "PartitionsBusy": self.busy,
            "CompactionFailures": self.failed,
            "CompactionSeconds": self.seconds,
            "PartitionsWaiting": waiting,
            "RunsOutOfTime": u64::from(self.out_of_time),
        })
        .to_string()
    }

    /// For people: one line.
    pub fn summary(&self) -> String {
        format!(
            "compacted {} partition(s) in {} job(s): {} objects ({} bytes, {} rows) -> {} objects ({} bytes, {} rows), {} duplicate(s) removed; {} busy, {} failed{} in {:.1} s",
            self.partitions_compacted,
            self.jobs,
            self.objects_in,
            self.bytes_in,
            self.rows_in,
            self.objects_out,
            self.bytes_out,
            self.rows_out,
            self.duplicates,
            self.busy,
            self.failed,
            if self.out_of_time {
                ", stopped at the deadline"
            } else {
                ""
            },
            self.seconds
        )
    }
}

/// A partition a run would compact, and its first job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub partition: PartitionPath,
    /// Small objects the run would merge (over one job or more).
    pub objects: usize,
    pub bytes: u64,
    /// Their rows, once counted.
    pub rows: Option<u64>,
    pub inputs: Vec<ObjectInfo>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_emf_metric_is_a_number_in_the_line() {
        let report = Report {
            duplicates: 3,
            out_of_time: true,
            ..Report::default()
        };
        let line: serde_json::Value =
            serde_json::from_str(&report.to_emf("Sparklake", "compact", 7, 1)).unwrap();
        let declared = &line["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        assert_eq!(declared.as_array().unwrap().len(), EMF_METRICS.len());
        for (name, _) in EMF_METRICS {
            assert!(line[name].is_number(), "{name} missing from {line}");
        }
        assert_eq!(line["Function"], "compact");
        assert_eq!(line["DuplicatesRemoved"], 3);
        assert_eq!(line["PartitionsWaiting"], 7);
        assert_eq!(line["RunsOutOfTime"], 1);
    }
}
