//! The `sparklake` commands, wired from the pieces of this crate.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use ingest::{ConfigError, IngestConfig};
use sparklake_core::metrics::Metrics;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::pipeline::{Pipeline, Settings, now_millis};
use crate::{report, server};

/// The sample batch `demo` posts: SparkPost's own published sample, one event of 19 types.
const SAMPLE_BATCH: &[u8] = include_bytes!("../../fixtures/sparkpost/batch.json");
/// What SparkPost posts when a webhook is created or validated.
const PING: &[u8] = br#"[{"msys":{}}]"#;

/// Logs to stderr: `text` or `json`, filtered by `SPARKLAKE_LOG` (else `default_level`).
pub fn init_logging(format: &str, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPARKLAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // A log line that cannot be written (stderr on a full disk, a closed pipe) is dropped. With
    // the default, tracing reports it with `eprintln!`, which panics on the same error and takes
    // down the worker that logged: serve then answers webhooks while nothing drains the queues.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    if format.eq_ignore_ascii_case("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The ingest configuration for `serve`: from the environment, open (loudly) when
/// `SPARKLAKE_AUTH` is not set at all.
fn serve_config() -> anyhow::Result<IngestConfig> {
    let env = |name: &str| std::env::var(name).ok();
    match IngestConfig::from_lookup(env) {
        Ok(config) => Ok(config),
        Err(ConfigError::AuthUnset) => {
            eprintln!(
                "\n  WARNING: SPARKLAKE_AUTH is not set: anyone who can reach this port can post events.\n  \
                 Set SPARKLAKE_AUTH=basic|bearer|header (see README) before exposing it.\n"
            );
            warn!("no authentication configured: the webhook endpoint is open");
            let with_none = |name: &str| match name {
                "SPARKLAKE_AUTH" => Some("none".to_owned()),
                _ => env(name),
            };
            Ok(IngestConfig::from_lookup(with_none)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// `sparklake serve`.
pub async fn serve(listen: &str, pipeline: Pipeline) -> anyhow::Result<ExitCode> {
    let config = serve_config()?;
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    info!(%addr, auth = ?config.auth.modes(), local = pipeline.local.is_some(), "sparklake serving");
    // On stdout, so scripts (and tests) that listen on port 0 learn the port.
    println!("sparklake listening on http://{addr}/");
    run(pipeline, listener, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the whole pipeline until `shutdown`: then stops accepting, drains fanout, then the
/// writer, and returns once everything accepted and visible has been written.
pub async fn run(
    pipeline: Pipeline,
    listener: TcpListener,
    config: IngestConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let recovered = pipeline.recover().await?;
    if recovered > 0 {
        info!(
            messages = recovered,
            "recovered in-flight messages from an earlier run"
        );
    }
    let (stop_fanout, fanout_rx) = watch::channel(false);
    let (stop_writer, writer_rx) = watch::channel(false);
    let fanout = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.run_fanout(fanout_rx).await }
    });
    let writer = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.run_writer(writer_rx).await }
    });
    let (stop_reporter, reporter_rx) = watch::channel(false);
    let reporter = tokio::spawn(report_metrics(
        pipeline.clone(),
        metrics_interval(),
        reporter_rx,
    ));
    let served = server::run(listener, pipeline.clone(), config, shutdown).await;
    info!("stopped accepting; draining");
    let _ = stop_fanout.send(true);
    fanout.await.context("fanout worker")?;
    let _ = stop_writer.send(true);
    writer.await.context("writer worker")?;
    let _ = stop_reporter.send(true);
    reporter.await.context("metrics reporter")?;
    served.context("http server")?;
    let (ingest, events) = (
        pipeline.ingest_queue.counts().await?,
        pipeline.events_queue.counts().await?,
    );
    info!(
        waiting = ingest.in_flight + events.in_flight,
        dead = ingest.dead + events.dead,
        "drained; messages still waiting for a retry are kept for the next start"
    );
    Ok(())
}

/// `SPARKLAKE_METRICS_INTERVAL_SECS`, default 60.
fn metrics_interval() -> Duration {
    let secs = std::env::var("SPARKLAKE_METRICS_INTERVAL_SECS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(60u64);
    Duration::from_secs(secs.max(1))
}

/// Every `interval` (and once at stop): logs the interval's numbers and, locally, keeps them
/// with the totals in `<data>/metrics.json` for `sparklake status`.
async fn report_metrics(pipeline: Pipeline, interval: Duration, mut stop: watch::Receiver<bool>) {
    let started = now_millis();
    let mut totals = Metrics::default();
    loop {
        let stopping = *stop.borrow();
        if !stopping {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
        }
        let window = pipeline.take_metrics();
        totals.merge(&window);
        let now = now_millis();
        info!(
            batches = window.batches,
            bytes = window.bytes,
            events = window.events(),
            rejected = window.rejected,
            failures = window.failures,
            retries = window.retries,
            objects = window.objects_written(),
            rows = window.rows_written(),
            oldest_event_age_secs = window.oldest_event_age_seconds(now).unwrap_or(0.0),
            "metrics: {}",
            window.summary(now)
        );
        if let Some(local) = &pipeline.local {
            let snapshot = serde_json::json!({
                "since_millis": started,
                "at_millis": now,
                "interval": window,
                "totals": totals,
            });
            if let Err(e) = crate::store::write_atomic(
                &local.data.join("metrics.json"),
                snapshot.to_string().as_bytes(),
            ) {
                warn!(error = %e, "could not write metrics.json");
            }
        }
        if stopping || *stop.borrow() {
            break;
        }
    }
}

/// A future resolving on SIGINT or SIGTERM. The handlers are installed when this is called, not
/// when first polled, so a signal that arrives right after start-up is not missed.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => info!("SIGINT received"),
            _ = terminate.recv() => info!("SIGTERM received"),
        }
    })
}

/// `sparklake demo`.
pub async fn demo(data: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let data = match data {
        Some(data) => data,
        None => std::env::temp_dir().join(format!(
            "sparklake-demo-{}-{}",
            std::process::id(),
            now_millis()
        )),
    };
    let pipeline = Pipeline::open(&data, Settings::default())?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(run(
        pipeline,
        listener,
        IngestConfig::open(ingest::config::DEFAULT_MAX_BODY_BYTES),
        async {
            let _ = stopped.await;
        },
    ));
    println!(
        "sparklake demo: pipeline listening on http://{addr}/, data in {}",
        data.display()
    );
    for (what, body) in [("ping", PING), ("sample batch (19 events)", SAMPLE_BATCH)] {
        let (status, answer) = post(&addr.to_string(), body).await?;
        println!("POST {what}: {status} {answer}");
        anyhow::ensure!(status == 200, "the pipeline refused the {what}");
    }
    let _ = stop.send(());
    running.await??;
    let partitions = report::partitions(&data)?;
    println!("\n{}", report::table(&data, &partitions));
    println!(
        "Query it: duckdb -c \"SELECT event_type, count(*) FROM read_parquet('{}/parquet/*/*/*.parquet', hive_partitioning=true) GROUP BY 1\"",
        data.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Posts a webhook body over plain HTTP/1.1; returns the status code and the response body.
pub async fn post(addr: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP response")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// How many bytes of input `import` enqueues before it drains the queues: the writer then sees
/// many files' events at once and writes fewer, larger objects, while the queue stays bounded.
const IMPORT_DRAIN_BYTES: usize = 256 << 20;

/// `sparklake import`: each file through the ingest handler (validation, quarantine, splitting,
/// enqueue), then fanout and writer until the queues are drained (every
/// [`IMPORT_DRAIN_BYTES`] of input, and at the end).
pub async fn import(pipeline: &Pipeline, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    pipeline.recover().await?;
    // A backfill file can be far larger than one webhook post; the handler splits it.
    let config = IngestConfig::open(usize::MAX);
    let mut refused = 0;
    let mut pending = 0usize;
    for file in files {
        let body = tokio::fs::read(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        let mut request =
            http::Request::post("/").header(http::header::CONTENT_TYPE, "application/json");
        if file.extension().is_some_and(|e| e == "gz") {
            request = request.header(http::header::CONTENT_ENCODING, "gzip");
        }
        let body_len = body.len();
        let response = pipeline
            .ingest(&config)
            .handle(request.body(Bytes::from(body))?, now_millis())
            .await;
        let status = response.status();
        println!(
            "{}: {} {}",
            file.display(),
            status.as_u16(),
            String::from_utf8_lossy(response.body())
        );
        if !status.is_success() {
            refused += 1;
        }
        pending += body_len;
        if pending >= IMPORT_DRAIN_BYTES {
            pipeline.drain().await?;
            pending = 0;
        }
    }
    pipeline.drain().await?;
    if let Some(local) = &pipeline.local {
        print_partitions(&local.data)?;
    }
    if refused > 0 {
        eprintln!("{refused} file(s) refused; they are kept under quarantine/");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `sparklake redrive`.
pub async fn redrive(pipeline: &Pipeline, which: &str) -> anyhow::Result<ExitCode> {
    let queues = match which {
        "ingest" => vec![&pipeline.ingest_queue],
        "events" => vec![&pipeline.events_queue],
        "all" => vec![&pipeline.ingest_queue, &pipeline.events_queue],
        other => anyhow::bail!("--queue `{other}`: expected ingest, events or all"),
    };
    for queue in queues {
        queue.redrive(&|line| println!("{line}")).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `sparklake schema`: the columns every Parquet and CSV object has, typed for Athena, in file
/// order; the deploy template's Glue tables are tested against this.
pub fn schema(format: &str) -> anyhow::Result<ExitCode> {
    use sparklake_core::schema::{COLUMNS, athena_type};
    use std::io::Write as _;
    // writeln!, not println!: a closed pipe (`| head`) is an error to report, not a panic.
    let mut out = std::io::stdout().lock();
    match format {
        "json" => {
            let columns: Vec<serde_json::Value> = COLUMNS
                .iter()
                .map(|c| serde_json::json!({"Name": c.name, "Type": athena_type(c.kind)}))
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(columns))?;
        }
        "ddl" => {
            let lines: Vec<String> = COLUMNS
                .iter()
                .map(|c| format!("  `{}` {}", c.name, athena_type(c.kind)))
                .collect();
            writeln!(out, "{}", lines.join(",\n"))?;
        }
        other => anyhow::bail!("--format `{other}`: expected json or ddl"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `sparklake status`.
pub async fn status(pipeline: &Pipeline) -> anyhow::Result<ExitCode> {
    println!(
        "{:<20} {:>8} {:>9} {:>6}",
        "queue", "visible", "in_flight", "dead"
    );
    for queue in [&pipeline.ingest_queue, &pipeline.events_queue] {
        let c = queue.counts().await?;
        println!(
            "{:<20} {:>8} {:>9} {:>6}",
            queue.name(),
            c.visible,
            c.in_flight,
            c.dead
        );
    }
    if let Some(local) = &pipeline.local {
        let quarantined = walk_count(
            &local.data.join(ingest::handler::QUARANTINE_PREFIX),
            ".body",
        );
        println!("quarantined bodies: {quarantined}");
        print_metrics(&local.data);
        print_partitions(&local.data)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The numbers the last `serve` on this folder recorded.
fn print_metrics(data: &Path) {
    let Ok(text) = std::fs::read_to_string(data.join("metrics.json")) else {
        println!(
            "metrics: none recorded yet (serve writes them every SPARKLAKE_METRICS_INTERVAL_SECS)"
        );
        return;
    };
    let Ok(snapshot) = serde_json::from_str::<serde_json::Value>(&text) else {
        println!("metrics: metrics.json is unreadable");
        return;
    };
    let at = snapshot["at_millis"].as_i64().unwrap_or(0);
    for (label, key) in [("last interval", "interval"), ("since start", "totals")] {
        if let Ok(m) = serde_json::from_value::<Metrics>(snapshot[key].clone()) {
            println!("metrics, {label}: {}", m.summary(at));
        }
    }
}

fn print_partitions(data: &Path) -> anyhow::Result<()> {
    let partitions = report::partitions(data)?;
    println!("\n{}", report::table(data, &partitions));
    Ok(())
}

fn walk_count(dir: &Path, suffix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_count(&path, suffix)
            } else {
                usize::from(path.to_string_lossy().ends_with(suffix))
            }
        })
        .sum()
}
