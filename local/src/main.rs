//! `sparklake`: the SparkPost events pipeline on one machine. Parses the command line and
//! hands over to [`sparklake::commands`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sparklake::commands;
use sparklake::pipeline::Settings;
use sparklake::queue::QueueConfig;

#[derive(Parser)]
#[command(
    name = "sparklake",
    version,
    about = "Own your SparkPost event stream: webhooks in, partitioned Parquet and CSV out."
)]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        env = "SPARKLAKE_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Move dead-lettered messages back to their source queues.
    Redrive {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Queue to redrive: ingest, events or all.
        #[arg(long, default_value = "all")]
        queue: String,
    },
    /// Show queue depths, dead letters, quarantined bodies and rows per partition.
    Status {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
}

#[derive(Args)]
struct PipelineArgs {
    /// Data folder: queue database, output files, quarantine and archive.
    #[arg(long, env = "SPARKLAKE_DATA", default_value = "./data")]
    data: PathBuf,
    /// Seconds a received message stays invisible before it is redelivered.
    #[arg(long, env = "SPARKLAKE_VISIBILITY_TIMEOUT_SECS", default_value_t = 30)]
    visibility_timeout_secs: u64,
    /// Receives before a message moves to the dead-letter queue.
    #[arg(long, env = "SPARKLAKE_MAX_RECEIVES", default_value_t = 5)]
    max_receives: u32,
    /// Largest queue message body, in bytes (SQS: 1 MiB).
    #[arg(long, env = "SPARKLAKE_MAX_MESSAGE_BYTES", default_value_t = 1_048_576)]
    max_message_bytes: usize,
    /// Messages fanout handles per call.
    #[arg(long, env = "SPARKLAKE_FANOUT_BATCH_SIZE", default_value_t = 10)]
    fanout_batch_size: usize,
    /// Messages the writer handles per call.
    #[arg(long, env = "SPARKLAKE_WRITER_BATCH_SIZE", default_value_t = 100)]
    writer_batch_size: usize,
    /// Milliseconds the writer waits to fill a batch.
    #[arg(long, env = "SPARKLAKE_WRITER_WINDOW_MS", default_value_t = 1000)]
    writer_window_ms: u64,
    /// Do not append raw events to `<data>/archive/`.
    #[arg(long, env = "SPARKLAKE_NO_ARCHIVE")]
    no_archive: bool,
    /// Also send events of some types to the local queue `route-NAME`:
    /// `NAME=type,type` (repeatable), e.g. `suppression=bounce,spam_complaint,list_unsubscribe`.
    #[arg(long = "route", env = "SPARKLAKE_ROUTES", value_delimiter = ';')]
    routes: Vec<String>,
}

impl PipelineArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let routes = self
            .routes
            .iter()
            .map(|r| {
                let (name, types) = r
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--route `{r}`: expected NAME=type,type"))?;
                let types: BTreeSet<String> = types
                    .split(',')
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect();
                anyhow::ensure!(
                    !name.is_empty() && !types.is_empty(),
                    "--route `{r}`: expected NAME=type,type"
                );
                Ok((name.trim().to_owned(), types))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Settings {
            queue: QueueConfig {
                visibility_timeout: Duration::from_secs(self.visibility_timeout_secs),
                max_receives: self.max_receives.max(1),
                max_message_bytes: self.max_message_bytes,
            },
            fanout_batch_size: self.fanout_batch_size.max(1),
            writer_batch_size: self.writer_batch_size.max(1),
            writer_window: Duration::from_millis(self.writer_window_ms),
            archive: !self.no_archive,
            routes,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    commands::init_logging(&cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sparklake: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { listen, pipeline } => {
                commands::serve(&listen, &pipeline.data, pipeline.settings()?).await
            }
            Command::Demo { data } => commands::demo(data).await,
            Command::Import { pipeline, files } => {
                commands::import(&pipeline.data, pipeline.settings()?, &files).await
            }
            Command::Redrive { pipeline, queue } => {
                commands::redrive(&pipeline.data, pipeline.settings()?, &queue).await
            }
            Command::Status { pipeline } => {
                commands::status(&pipeline.data, pipeline.settings()?).await
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sparklake: {e:#}");
            ExitCode::FAILURE
        }
    }
}
