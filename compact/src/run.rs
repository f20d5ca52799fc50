//! A compaction run: every partition of both formats listed, the due ones compacted one job at
//! a time under the partition's lease, within a deadline.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::partition::Format;
use sparklake_core::ports::{LakeStore, Lease, ObjectInfo, PortError};
use tracing::{error, info, warn};

use crate::identities::{self, sidecar_key};
use crate::journal::Journal;
use crate::listing::{PartitionPath, partition_of, partition_of_folder};
use crate::merge::{MergeError, Merged, Outputs, merge};
use crate::policy::{Job, Policy};
use crate::report::Report;
use crate::rows::{self, ReadError};
use crate::scratch::ScratchDir;

/// Where the compactor keeps its leases, journals and identity sidecars: outside the
/// `parquet/` and `csv/` trees the tables read, and named with `_` as Hive's hidden files are.
pub const STATE_PREFIX: &str = "_compaction";

/// A partition is compacted at most this many jobs per run (a safety stop; a backfill's
/// partition of 10 000 writer objects takes about 160).
const MAX_JOBS_PER_PARTITION: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("reading {key}: {source}")]
    Read { key: String, source: ReadError },
    #[error("scratch space: {0}")]
    Scratch(std::io::Error),
    #[error("the merge thread failed: {0}")]
    Join(String),
}

/// The compactor over its store.
pub struct Compactor<'a> {
    pub store: &'a dyn LakeStore,
    pub parquet: &'a ParquetEncoder,
    pub policy: Policy,
}

/// How one run goes.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Compact every partition with something to merge, whatever the thresholds.
    pub all: bool,
    /// Start no job after this (a Lambda's deadline less the time one job takes).
    pub deadline: Option<Instant>,
    /// Called before each partition with (partitions done, partitions due).
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
    /// Asked before each job: `true` stops the run there (a shutdown).
    pub stop: Option<&'a (dyn Fn() -> bool + Sync)>,
}

impl RunOptions<'_> {
    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d) || self.stop.is_some_and(|stop| stop())
    }
}

/// The lease of a partition.
pub fn lease_name(partition: &PartitionPath) -> String {
    format!("{STATE_PREFIX}/leases/{}", partition.folder)
}

impl Compactor<'_> {
    /// Compacts every due partition (one job after another until the partition has nothing
    /// left to merge), stopping at the deadline. A partition that fails is logged, counted and
    /// left as it was (or as far as its journal says: the next run finishes it).
    pub async fn run(
        &self,
        options: &RunOptions<'_>,
        now_millis: i64,
    ) -> Result<Report, PortError> {
        let started = Instant::now();
        let mut report = Report::default();
        let partitions = self.partitions().await?;
        report.partitions_seen = partitions.len() as u64;
        // Partitions with something to merge, and those whose lease holds a journal a run that
        // died or failed left behind (finished or undone even when nothing else is due there).
        let mut due: std::collections::BTreeSet<PartitionPath> = self.left_behind().await?;
        due.extend(
            partitions
                .into_iter()
                .filter(|(_, objects)| self.policy.plan(objects, now_millis, options.all).is_some())
                .map(|(p, _)| p),
        );
        let due: Vec<PartitionPath> = due.into_iter().collect();
        for (done, partition) in due.iter().enumerate() {
            if let Some(progress) = options.progress {
                progress(done, due.len());
            }
            if options.out_of_time() {
                report.out_of_time = true;
                break;
            }
            if let Err(e) = self
                .partition(partition, options, now_millis, &mut report)
                .await
            {
                report.failed += 1;
                error!(partition = %partition, error = %e, "compaction of the partition failed; nothing was lost, the next run takes it up again");
            }
        }
        if let Some(progress) = options.progress {
            progress(due.len(), due.len());
        }
        report.seconds = started.elapsed().as_secs_f64();
        report.log();
        Ok(report)
    }

    /// Partitions whose lease state outlived its holder: a journal (`.journal` locally) or a
    /// lease object (`.lease` on S3, deleted when released).
    async fn left_behind(&self) -> Result<std::collections::BTreeSet<PartitionPath>, PortError> {
        let prefix = format!("{STATE_PREFIX}/leases/");
        let mut out = std::collections::BTreeSet::new();
        for object in self.store.list(&prefix).await? {
            let Some(name) = object.key.strip_prefix(&prefix) else {
                continue;
            };
            let Some(folder) = name
                .strip_suffix(".journal")
                .or_else(|| name.strip_suffix(".lease"))
            else {
                continue;
            };
            if let Some(partition) = partition_of_folder(folder) {
                out.insert(partition);
            }
        }
        Ok(out)
    }

    /// Compacts one partition under its lease.
    async fn partition(
        &self,
        partition: &PartitionPath,
        options: &RunOptions<'_>,
        now_millis: i64,
        report: &mut Report,
    ) -> Result<(), CompactError> {
        let Some(mut lease) = self
            .store
            .lease(&lease_name(partition), self.policy.lease)
            .await?
        else {
            info!(partition = %partition, "another compactor holds the partition; skipped");
            report.busy += 1;
            return Ok(());
        };
        let result = self
            .under_lease(partition, lease.as_mut(), options, now_millis, report)
            .await;
        match &result {
            // The journal stays for the next holder to finish or undo.
            Err(_) => lease.abandon().await?,
            Ok(()) => lease.release().await?,
        }
        result
    }

    async fn under_lease(
        &self,
        partition: &PartitionPath,
        lease: &mut dyn Lease,
        options: &RunOptions<'_>,
        now_millis: i64,
        report: &mut Report,
    ) -> Result<(), CompactError> {
        if let Some(journal) = lease.left_behind().and_then(Journal::from_bytes) {
            self.recover(partition, &journal).await?;
            lease.record(b"").await?;
            report.recovered += 1;
        }
        let mut last_inputs: Option<Vec<String>> = None;
        let mut compacted = false;
        for _ in 0..MAX_JOBS_PER_PARTITION {
            if options.out_of_time() {
                report.out_of_time = true;
                break;
            }
            let objects = self.list_partition(partition).await?;
            let Some(job) = self.policy.plan(&objects, now_millis, options.all) else {
                break;
            };
            let keys: Vec<String> = job.inputs.iter().map(|o| o.key.clone()).collect();
            if last_inputs.as_ref() == Some(&keys) {
                warn!(partition = %partition, "the same objects came up again after a job; leaving the partition for the next run");
                break;
            }
            self.job(partition, &job, lease, report).await?;
            compacted = true;
            last_inputs = Some(keys);
        }
        if compacted {
            report.partitions_compacted += 1;
        }
        Ok(())
    }

    /// The lake objects of one partition.
    async fn list_partition(
        &self,
        partition: &PartitionPath,
    ) -> Result<Vec<ObjectInfo>, PortError> {
        let mut objects = self.store.list(&format!("{}/", partition.folder)).await?;
        objects.retain(|o| partition_of(&o.key).as_ref() == Some(partition));
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Finishes or undoes what a journal left behind says (see [`crate::journal`]).
    async fn recover(
        &self,
        partition: &PartitionPath,
        journal: &Journal,
    ) -> Result<(), CompactError> {
        match &journal.outputs {
            Some(outputs) => {
                info!(partition = %partition, inputs = journal.inputs.len(), outputs = outputs.len(), "finishing a compaction cut short after its outputs were durable");
                self.delete_with_sidecars(&journal.inputs).await?;
            }
            None => {
                let prefix = format!("{}-", journal.outputs_prefix);
                let partial: Vec<String> = self
                    .list_partition(partition)
                    .await?
                    .into_iter()
                    .filter(|o| {
                        partition
                            .name_of(&o.key)
                            .is_some_and(|n| n.starts_with(&prefix))
                    })
                    .map(|o| o.key)
                    .collect();
                info!(partition = %partition, removed = partial.len(), "undoing a compaction cut short while writing; its inputs are all there");
                self.delete_with_sidecars(&partial).await?;
            }
        }
        Ok(())
    }

    async fn delete_with_sidecars(&self, keys: &[String]) -> Result<(), PortError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut all: Vec<String> = keys.to_vec();
        all.extend(keys.iter().map(|k| sidecar_key(k)));
        self.store.delete(&all).await
    }

    /// One job: journal, identities of the settled objects, merge, outputs stored, journal,
    /// inputs deleted.
    async fn job(
        &self,
        partition: &PartitionPath,
        job: &Job,
        lease: &mut dyn Lease,
        report: &mut Report,
    ) -> Result<(), CompactError> {
        let prefix = outputs_prefix(&job.inputs);
        let inputs: Vec<String> = job.inputs.iter().map(|o| o.key.clone()).collect();
        let journal = Journal::writing(inputs.clone(), prefix.clone());
        lease.record(&journal.to_bytes()).await?;
        let mut seen = HashSet::new();
        for settled in &job.settled {
            identities::read(self.store, partition.format, settled, &mut seen).await?;
        }
        let mut files = Vec::with_capacity(job.inputs.len());
        for input in &job.inputs {
            match self.store.open(&input.key).await? {
                Some(file) => files.push(file),
                None => {
                    warn!(partition = %partition, key = %input.key, "an input went away before the merge (another compactor?); the job is left for the next run");
                    lease.record(b"").await?;
                    return Ok(());
                }
            }
        }
        let scratch =
            ScratchDir::create(&self.store.scratch_dir()).map_err(CompactError::Scratch)?;
        let merged = self.merge(partition, files, seen, scratch.path()).await?;
        let mut outputs = Vec::with_capacity(merged.outputs.len());
        let content_type = partition.format.content_type();
        for (n, output) in merged.outputs.iter().enumerate() {
            let key = partition.key(&format!("{prefix}-{n}"));
            if output.bytes >= self.policy.target_bytes {
                self.store
                    .put_file(
                        &sidecar_key(&key),
                        &output.identities,
                        "application/octet-stream",
                    )
                    .await?;
            }
            self.store
                .put_file(&key, &output.path, content_type)
                .await?;
            outputs.push(key);
        }
        lease
            .record(&journal.written(outputs.clone()).to_bytes())
            .await?;
        self.delete_with_sidecars(&inputs).await?;
        lease.record(b"").await?;
        report.add_job(job, &merged);
        info!(
            partition = %partition,
            objects_in = job.inputs.len(),
            objects_out = outputs.len(),
            rows_in = merged.rows_in,
            rows_out = merged.outputs.iter().map(|o| o.rows).sum::<u64>(),
            duplicates = merged.duplicates,
            "compacted"
        );
        Ok(())
    }

    async fn merge(
        &self,
        partition: &PartitionPath,
        files: Vec<File>,
        mut seen: HashSet<u128>,
        scratch: &Path,
    ) -> Result<Merged, CompactError> {
        let format = partition.format;
        let parquet = self.parquet.clone();
        let target_bytes = self.policy.target_bytes;
        let scratch = scratch.to_path_buf();
        blocking(move || {
            let inputs = files
                .into_iter()
                .map(|file| match format {
                    Format::Parquet => rows::parquet_rows(file),
                    Format::Csv => rows::csv_rows(file),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let outputs = Outputs {
                format,
                parquet: &parquet,
                target_bytes,
                scratch: &scratch,
            };
            merge(inputs, &mut seen, &outputs)
        })
        .await?
        .map_err(CompactError::from)
    }
}

/// The outputs' name prefix: `c-` and the first 32 hex digits of the SHA-256 of the inputs'
/// keys and sizes, so a retried job writes the same names.
pub fn outputs_prefix(inputs: &[ObjectInfo]) -> String {
    let mut keys: Vec<(&str, u64)> = inputs.iter().map(|o| (o.key.as_str(), o.size)).collect();
    keys.sort_unstable();
    let mut hasher = Sha256::new();
    for (key, size) in keys {
        hasher.update(key.as_bytes());
        hasher.update(b"\n");
        hasher.update(size.to_be_bytes());
    }
    format!(
        "{}{}",
        crate::policy::COMPACTED_PREFIX,
        hex::encode(&hasher.finalize()[..16])
    )
}

/// Runs CPU-bound or blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CompactError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CompactError::Join(e.to_string()))
}
