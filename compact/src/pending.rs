//! What waits for compaction, without changing anything: the due partitions and their objects
//! (`--dry-run`, `sparklake status`, the Lambda's `PartitionsWaiting`).

use std::collections::BTreeMap;
use std::fs::File;

use sparklake_core::partition::Format;
use sparklake_core::ports::{ObjectInfo, PortError};

use crate::listing::{PartitionPath, by_partition};
use crate::report::Planned;
use crate::rows::ReadError;
use crate::run::{CompactError, Compactor, blocking};

/// Partitions and objects waiting for compaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// With something to merge, whatever the thresholds.
    pub partitions: usize,
    pub objects: usize,
    /// Due now (the thresholds met).
    pub due_partitions: usize,
    pub due_objects: usize,
}

impl Compactor<'_> {
    /// Every lake object of both formats, by partition.
    pub async fn partitions(&self) -> Result<BTreeMap<PartitionPath, Vec<ObjectInfo>>, PortError> {
        let mut objects = Vec::new();
        for format in Format::ALL {
            objects.extend(self.store.list(&format!("{}/", format.name())).await?);
        }
        Ok(by_partition(objects))
    }

    /// What a run would merge now, without merging: each due partition and its pending objects.
    pub async fn plan(&self, all: bool, now_millis: i64) -> Result<Vec<Planned>, PortError> {
        let mut planned = Vec::new();
        for (partition, objects) in self.partitions().await? {
            if self.policy.plan(&objects, now_millis, all).is_some() {
                // Every pending object: what the run merges, in one job or more.
                let inputs: Vec<ObjectInfo> = objects
                    .iter()
                    .filter(|o| self.policy.is_pending(o))
                    .cloned()
                    .collect();
                planned.push(Planned {
                    partition,
                    objects: inputs.len(),
                    bytes: inputs.iter().map(|o| o.size).sum(),
                    rows: None,
                    inputs,
                });
            }
        }
        Ok(planned)
    }

    /// The rows of each planned job's inputs (reads every input: for `--dry-run`).
    pub async fn count_rows(&self, planned: &mut [Planned]) -> Result<(), CompactError> {
        for plan in planned {
            let mut rows = 0u64;
            for input in &plan.inputs {
                if let Some(file) = self.store.open(&input.key).await? {
                    let format = plan.partition.format;
                    rows +=
                        blocking(move || count_rows(file, format))
                            .await?
                            .map_err(|source| CompactError::Read {
                                key: input.key.clone(),
                                source,
                            })?;
                }
            }
            plan.rows = Some(rows);
        }
        Ok(())
    }

    /// What waits now, from one listing.
    pub async fn waiting(&self, now_millis: i64) -> Result<Waiting, PortError> {
        let mut waiting = Waiting::default();
        for objects in self.partitions().await?.values() {
            let pending = objects.iter().filter(|o| self.policy.is_pending(o)).count();
            if self.policy.plan(objects, now_millis, true).is_some() {
                waiting.partitions += 1;
                waiting.objects += pending;
            }
            if self.policy.plan(objects, now_millis, false).is_some() {
                waiting.due_partitions += 1;
                waiting.due_objects += pending;
            }
        }
        Ok(waiting)
    }
}

/// Rows of an object: a Parquet footer's count, a CSV file's records.
fn count_rows(file: File, format: Format) -> Result<u64, ReadError> {
    match format {
        Format::Parquet => {
            let metadata =
                parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&file)?;
            Ok(metadata.file_metadata().num_rows().max(0) as u64)
        }
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(file);
            let mut record = csv::ByteRecord::new();
            let mut n = 0;
            while reader.read_byte_record(&mut record)? {
                n += 1;
            }
            Ok(n)
        }
    }
}
