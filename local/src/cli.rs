//! The command line: every flag and the environment variable behind it (flags win), and the
//! typed configuration each command is built from, once.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sparklake_aws::adapters::Adapters;
use sparklake_aws::config::AwsSettings;
use sparklake_core::encode::TimestampType;
use sparklake_core::output::OutputSettings;
use sparklake_core::schema::TimestampPolicy;

use crate::config::Settings;
use crate::pipeline::Pipeline;
use crate::queue::QueueConfig;

#[derive(Parser)]
#[command(
    name = "sparklake",
    version,
    about = "Own your SparkPost event stream: webhooks in, partitioned Parquet and CSV out."
)]
pub struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        env = "SPARKLAKE_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the pipeline: an HTTP server for SparkPost webhooks, the fanout and writer workers.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "SPARKLAKE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Run the pipeline on a temporary port, post the bundled sample batch and a ping, wait for
    /// the writer and print what it wrote.
    Demo {
        /// Data folder (default: a new folder under the system's temporary directory).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Run webhook-batch files (JSON arrays, as SparkPost posts them) through the pipeline
    /// without HTTP, into the same layout as `serve`.
    Import {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Files to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Benchmark hook: split webhook-batch files by type in memory as fanout does, then time
    /// only the writer over them (batches of at least --batch-events events) into --data.
    /// Prints one JSON line. Used by scripts/bench.
    #[command(hide = true)]
    BenchWriter {
        /// Data folder the objects are written to.
        #[arg(long)]
        data: PathBuf,
        /// Events per writer call (the messages holding them; a call takes whole messages).
        #[arg(long, default_value_t = 10_000)]
        batch_events: usize,
        /// Webhook-batch files (JSON arrays).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Move dead-lettered messages back to their source queues.
    Redrive {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Queue to redrive: ingest, events or all.
        #[arg(long, default_value = "all")]
        queue: String,
    },
    /// Print the output's column schema (the Glue/Athena table columns), as JSON or DDL.
    Schema {
        /// `json` ([{"Name","Type"}], as Glue takes them) or `ddl` (column list for CREATE TABLE).
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Write synthetic SparkPost webhook batches (`DIR/batch-000000.json`, …): a realistic mix
    /// of event types and field shapes, deterministic for a seed. For benchmarks and load tests.
    Gen {
        /// Number of events in all.
        #[arg(long)]
        events: u64,
        /// Events per file (SparkPost posts 1 to 350+); the last file may hold fewer.
        #[arg(long, default_value_t = 350)]
        batch_size: usize,
        /// Folder to write the files to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Seed: the same seed, count and batch size give byte-identical files.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Days the timestamps spread over (ending 2026-01-01).
        #[arg(long, default_value_t = crate::generate::DEFAULT_DAYS)]
        days: u32,
        /// Only these event types (comma-separated), in their usual proportions; default all.
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
    },
    /// Rewrite each partition's many small objects as few large ones, each event identity
    /// once (README, "Compaction"). The policy's settings are `SPARKLAKE_COMPACT_*`.
    Compact {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Print what would be merged (partitions, objects, bytes, rows), change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Compact every partition with more than one small object, whatever the thresholds
        /// (backfills, operators, tests).
        #[arg(long)]
        all: bool,
    },
    /// Show queue depths, dead letters, quarantined bodies and rows per partition.
    Status {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
}

#[derive(Args)]
pub struct PipelineArgs {
    /// Where the queues and files are: `local` (SQLite and a folder under --data) or `aws`
    /// (SQS, S3 and Firehose; the AWS settings below, credentials and region from the standard
    /// AWS environment, `AWS_ENDPOINT_URL` included).
    #[arg(long, env = "SPARKLAKE_BACKEND", default_value = "local")]
    backend: String,
    /// Data folder: queue database, output files, quarantine and archive.
    #[arg(long, env = "SPARKLAKE_DATA", default_value = "./data")]
    data: PathBuf,
    /// aws: the queue ingest sends to and fanout reads.
    #[arg(long, env = "SPARKLAKE_INGEST_QUEUE_URL")]
    ingest_queue: Option<String>,
    /// aws: the queue fanout sends to and the writer reads.
    #[arg(long, env = "SPARKLAKE_WRITER_QUEUE_URL")]
    writer_queue: Option<String>,
    /// aws: the bucket for output and quarantine.
    #[arg(long, env = "SPARKLAKE_BUCKET")]
    bucket: Option<String>,
    /// aws: key prefix in the bucket.
    #[arg(long, env = "SPARKLAKE_PREFIX")]
    prefix: Option<String>,
    /// aws: Firehose delivery stream for the raw archive.
    #[arg(long, env = "SPARKLAKE_ARCHIVE_STREAM")]
    archive_stream: Option<String>,
    /// aws: the Glue database whose tables (`SPARKLAKE_GLUE_TABLES`, default
    /// `events,events_csv`) project `event_type`; the writer adds each new type it writes.
    #[arg(long, env = "SPARKLAKE_GLUE_DATABASE")]
    glue_database: Option<String>,
    /// aws: seconds a receive long-polls (at most 20; a stop waits for a poll under way).
    #[arg(long, env = "SPARKLAKE_POLL_WAIT_SECS", default_value_t = 10)]
    poll_wait_secs: u64,
    /// Seconds a received message stays invisible before it is redelivered.
    #[arg(long, env = "SPARKLAKE_VISIBILITY_TIMEOUT_SECS", default_value_t = 30)]
    visibility_timeout_secs: u64,
    /// local: receives before a message moves to the dead-letter queue (on SQS, the queue's
    /// redrive policy decides).
    #[arg(long, env = "SPARKLAKE_MAX_RECEIVES", default_value_t = 5)]
    max_receives: u32,
    /// Largest queue message body, in bytes (SQS: 1 MiB).
    #[arg(long, env = "SPARKLAKE_MAX_MESSAGE_BYTES", default_value_t = 1_048_576)]
    max_message_bytes: usize,
    /// local: ingest answers 503 (with Retry-After) while the queue database holds this many
    /// bytes, so a stalled writer or a slow disk cannot fill the disk; unset: no limit.
    #[arg(long, env = "SPARKLAKE_QUEUE_MAX_BYTES")]
    queue_max_bytes: Option<u64>,
    /// Messages fanout handles per call.
    #[arg(long, env = "SPARKLAKE_FANOUT_BATCH_SIZE", default_value_t = 10)]
    fanout_batch_size: usize,
    /// Messages the writer handles per call.
    #[arg(long, env = "SPARKLAKE_WRITER_BATCH_SIZE", default_value_t = 1000)]
    writer_batch_size: usize,
    /// Milliseconds the writer waits to fill a batch.
    #[arg(long, env = "SPARKLAKE_WRITER_WINDOW_MS", default_value_t = 1000)]
    writer_window_ms: u64,
    /// Do not append raw events to the archive.
    #[arg(long, env = "SPARKLAKE_NO_ARCHIVE")]
    no_archive: bool,
    /// Also send events of some types to another queue: `NAME=type,type` (repeatable), e.g.
    /// `suppression=bounce,spam_complaint,list_unsubscribe`. Locally the queue is `route-NAME`;
    /// on aws its URL is `SPARKLAKE_ROUTE_<NAME>_QUEUE_URL`.
    #[arg(long = "route", env = "SPARKLAKE_ROUTES", value_delimiter = ';')]
    routes: Vec<String>,
    /// Shorten event types whose escaped path value is longer than this many bytes to a prefix,
    /// `~` and a hash in object keys (0: keep them whole; a type too long for a path then fails
    /// its writes and is dead-lettered). At least 32.
    #[arg(long, env = "SPARKLAKE_PARTITION_VALUE_MAX_BYTES", default_value_t = 0)]
    partition_value_max_bytes: usize,
    /// How Parquet stores the timestamp columns: `int96` (read by every engine, Hive 2's
    /// SerDe included) or `millis` (INT64 TIMESTAMP(MILLIS, UTC); not Hive before 4.0).
    #[arg(long, env = "SPARKLAKE_PARQUET_TIMESTAMP", default_value = "int96")]
    parquet_timestamp: TimestampType,
    /// Events timestamped before this date (YYYY-MM-DD, UTC), or more than a day after they were
    /// received, are filed under their receive date with `timestamp_implausible = true`.
    #[arg(long, env = "SPARKLAKE_TIMESTAMP_FLOOR", default_value = "2014-01-01")]
    timestamp_floor: String,
}

impl PipelineArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let routes = sparklake_aws::config::parse_routes(&self.routes.join(";"))?;
        Ok(Settings {
            queue: QueueConfig {
                visibility_timeout: Duration::from_secs(self.visibility_timeout_secs),
                max_receives: self.max_receives.max(1),
                max_message_bytes: self.max_message_bytes,
                max_database_bytes: self.queue_max_bytes,
            },
            fanout_batch_size: self.fanout_batch_size.max(1),
            writer_batch_size: self.writer_batch_size.max(1),
            writer_window: Duration::from_millis(self.writer_window_ms),
            archive: !self.no_archive,
            routes,
            partition_value_max_bytes: sparklake_aws::config::parse_partition_value_max_bytes(
                &self.partition_value_max_bytes.to_string(),
            )
            .map_err(|e| anyhow::anyhow!("--partition-value-max-bytes {e}"))?,
            output: OutputSettings {
                parquet_timestamp: self.parquet_timestamp,
                timestamps: TimestampPolicy::with_floor_date(&self.timestamp_floor)
                    .map_err(|e| anyhow::anyhow!("--timestamp-floor {e}"))?,
            },
        })
    }

    /// The AWS settings, read by the same parser as the Lambdas' ([`AwsSettings::from_lookup`])
    /// through a lookup that answers each variable these arguments carry with its value (the flag,
    /// or the variable clap read when the flag is absent: flags win) and asks `env` only for the
    /// variables without a flag (`SPARKLAKE_S3_SSE`, each route's queue URL, …). So a setting is
    /// read once, and every flag applies on both backends.
    pub fn aws_settings(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AwsSettings, sparklake_aws::config::SettingsError> {
        AwsSettings::from_lookup(|name| match name {
            "SPARKLAKE_INGEST_QUEUE_URL" => self.ingest_queue.clone(),
            "SPARKLAKE_WRITER_QUEUE_URL" => self.writer_queue.clone(),
            "SPARKLAKE_BUCKET" => self.bucket.clone(),
            "SPARKLAKE_PREFIX" => self.prefix.clone(),
            "SPARKLAKE_ARCHIVE_STREAM" => self.archive_stream.clone(),
            "SPARKLAKE_GLUE_DATABASE" => self.glue_database.clone(),
            "SPARKLAKE_MAX_MESSAGE_BYTES" => Some(self.max_message_bytes.to_string()),
            "SPARKLAKE_PARTITION_VALUE_MAX_BYTES" => {
                Some(self.partition_value_max_bytes.to_string())
            }
            "SPARKLAKE_ROUTES" => Some(self.routes.join(";")),
            other => env(other),
        })
    }

    /// Locally, before serve or import take the data folder: removes the temporary files of
    /// writes a crash interrupted (not for status or redrive, which may run beside serve).
    pub fn remove_orphan_temp_files(&self) {
        if self.backend == "local" {
            let removed = crate::store::remove_orphan_temp_files(&self.data);
            if removed > 0 {
                tracing::info!(
                    files = removed,
                    "removed temporary files of interrupted writes"
                );
            }
        }
    }

    /// The lake alone (the compactor's store), without the queues: the data folder, or the
    /// bucket and prefix.
    pub async fn lake(
        &self,
    ) -> anyhow::Result<std::sync::Arc<dyn sparklake_core::ports::LakeStore>> {
        let settings = self.settings()?;
        match self.backend.as_str() {
            "local" => Ok(std::sync::Arc::new(
                crate::store::FsStore::new(&self.data)
                    .with_max_partition_value_bytes(settings.partition_value_max_bytes),
            )),
            "aws" => {
                let aws = self.aws_settings(|name| std::env::var(name).ok())?;
                let sdk = sparklake_aws::load_config().await;
                Ok(std::sync::Arc::new(Adapters::new(&sdk, aws).store()?))
            }
            other => anyhow::bail!("--backend `{other}`: expected local or aws"),
        }
    }

    /// How the lake is written (the compactor writes as the writer does).
    pub fn output(&self) -> anyhow::Result<OutputSettings> {
        Ok(self.settings()?.output)
    }

    /// Opens the pipeline on the chosen backend.
    pub async fn open(&self) -> anyhow::Result<Pipeline> {
        let settings = self.settings()?;
        match self.backend.as_str() {
            "local" => Ok(Pipeline::open(&self.data, settings)?),
            "aws" => {
                let aws = self.aws_settings(|name| std::env::var(name).ok())?;
                let sdk = sparklake_aws::load_config().await;
                let wait = Duration::from_secs(self.poll_wait_secs);
                Ok(Pipeline::aws(settings, &Adapters::new(&sdk, aws), wait)?)
            }
            other => anyhow::bail!("--backend `{other}`: expected local or aws"),
        }
    }
}
