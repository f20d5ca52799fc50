//! Injected AWS faults, end to end: `sparklake serve --backend aws` talks to the emulator through
//! `scripts/faultproxy.py`, which fails a share of every service's calls (500s, throttling in
//! each service's wire format, connections reset before or after the call took effect).
//! Concurrent clients post SparkPost batches and retry every non-200 answer, as SparkPost does;
//! once the queues are empty the dead-letter queues are re-driven if anything landed there, the
//! server is stopped with SIGTERM, and every event answered 200 must be in S3's Parquet.
//!
//! `SPARKLAKE_FAULTS_EVENTS` (default 5 000), `SPARKLAKE_FAULTS_RATE` (default 0.1, per service),
//! `SPARKLAKE_FAULTS_SEED` (default 1), `SPARKLAKE_FAULTS_BACKLOG` (default 400: clients hold off
//! while more messages wait, as the emulator's SQS slows down with depth);
//! `SPARKLAKE_FAULTS_REPORT=FILE` writes the figures as JSON. The long run (figures in docs/reliability-aws.md):
//! `SPARKLAKE_FAULTS_EVENTS=100000 scripts/test.sh` or, with moto already started,
//! `SPARKLAKE_FAULTS_EVENTS=100000 cargo test -p sparklake --test aws_faults -- --nocapture`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array as _, StringArray};
use aws_sdk_sqs::types::QueueAttributeName;
use support::aws::*;
use support::lake::{Identity, batch_identities};
use support::process::{Server, signal, sparklake, wait_exit};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The fault-injecting proxy, stopped (and its counts written) on drop.
struct FaultProxy {
    child: Child,
    url: String,
    stats_file: PathBuf,
}

impl FaultProxy {
    fn start(upstream: &str, rate: f64, seed: u64, stats_file: PathBuf) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/faultproxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--upstream", upstream, "--listen", "127.0.0.1:0"])
            .args(["--rate", &rate.to_string(), "--seed", &seed.to_string()])
            .arg("--stats-file")
            .arg(&stats_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs scripts/faultproxy.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .trim_start_matches("faultproxy listening on ")
            .trim_end_matches('/')
            .to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        Self {
            child,
            url,
            stats_file,
        }
    }

    /// Stops the proxy and returns what it counted.
    fn stop(&mut self) -> serde_json::Value {
        signal(self.child.id(), "TERM");
        wait_exit(&mut self.child, Duration::from_secs(30), "faultproxy");
        serde_json::from_slice(&std::fs::read(&self.stats_file).unwrap()).unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every row's identity in the Parquet objects under `prefix` (duplicates kept).
async fn lake_identities(aws: &Aws, bucket: &str, prefix: &str) -> (Vec<Identity>, usize) {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let keys: Vec<String> = keys(aws, bucket, prefix)
        .await
        .into_iter()
        .filter(|k| k.ends_with(".parquet"))
        .collect();
    let objects = keys.len();
    let keys = Arc::new(keys);
    let next = Arc::new(AtomicUsize::new(0));
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (keys, next, s3, bucket) = (
            keys.clone(),
            next.clone(),
            aws.s3.clone(),
            bucket.to_owned(),
        );
        readers.spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(key) = keys.get(i) else { break };
                let object = s3.get_object().bucket(&bucket).key(key).send().await;
                let body = object.unwrap().body.collect().await.unwrap().into_bytes();
                let reader = ParquetRecordBatchReaderBuilder::try_new(body)
                    .unwrap()
                    .build()
                    .unwrap();
                for batch in reader {
                    let batch = batch.unwrap();
                    let column = |name: &str| {
                        batch
                            .column_by_name(name)
                            .unwrap()
                            .as_any()
                            .downcast_ref::<StringArray>()
                            .unwrap()
                            .clone()
                    };
                    let (t, id, raw) = (column("type"), column("event_id"), column("raw"));
                    for row in 0..batch.num_rows() {
                        let event_id = (!id.is_null(row)).then(|| id.value(row));
                        ids.push(Identity::of(t.value(row), event_id, raw.value(row)));
                    }
                }
            }
            ids
        });
    }
    let mut all = Vec::new();
    while let Some(ids) = readers.join_next().await {
        all.extend(ids.unwrap());
    }
    (all, objects)
}

/// (visible, in flight) of a queue, asked of the emulator directly (no faults).
async fn depth(aws: &Aws, url: &str) -> (u64, u64) {
    depth_of(&aws.sqs, url).await
}

async fn depth_of(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let a = attributes.attributes().unwrap();
    let n = |k: &QueueAttributeName| a.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        n(&QueueAttributeName::ApproximateNumberOfMessages),
        n(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Waits until the work queues hold nothing, visible or in flight, on three polls in a row.
async fn wait_until_empty(aws: &Aws, queues: &[&str], limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut quiet = 0;
    while quiet < 3 {
        let mut total = 0;
        for url in queues {
            let (visible, in_flight) = depth(aws, url).await;
            total += visible + in_flight;
        }
        quiet = if total == 0 { quiet + 1 } else { 0 };
        assert!(
            Instant::now() < deadline,
            "the pipeline wedged: {total} messages still queued after {limit:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One JSON log line's message and fields.
fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_event_answered_200_is_lost_under_injected_aws_faults() {
    let events: u64 = env_or("SPARKLAKE_FAULTS_EVENTS", 5_000);
    let rate: f64 = env_or("SPARKLAKE_FAULTS_RATE", 0.1);
    let seed: u64 = env_or("SPARKLAKE_FAULTS_SEED", 1);
    let clients = 8;
    // The emulator's SQS scans a whole queue on every receive and delete, so a backlog of
    // thousands of messages slows it to a crawl (real SQS does not): clients hold off while more
    // than this many messages wait in the work queues.
    let backlog_limit: u64 = env_or("SPARKLAKE_FAULTS_BACKLOG", 400);
    // Bounds that catch a wedged pipeline; generous, and never asserted as timings.
    let patience = Duration::from_secs(120 + events / 100);

    let aws = aws().await;
    let (ingest_url, ingest_dlq) = queue_with_dlq(&aws, &unique("faults-in"), 5, 30).await;
    let (events_url, events_dlq) = queue_with_dlq(&aws, &unique("faults-events"), 5, 30).await;
    let lake = unique("faults-lake");
    bucket(&aws, &lake).await;
    let stream = unique("faults-archive");
    firehose_to(&aws, &stream, &lake).await;

    let work = tempfile::tempdir().unwrap();
    let mut proxy = FaultProxy::start(&aws.endpoint, rate, seed, work.path().join("faults.json"));
    let env = |command: &mut Command, endpoint: &str| {
        command
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("SPARKLAKE_S3_FORCE_PATH_STYLE", "true")
            .env("SPARKLAKE_BACKEND", "aws")
            .env("SPARKLAKE_INGEST_QUEUE_URL", &ingest_url)
            .env("SPARKLAKE_WRITER_QUEUE_URL", &events_url)
            .env("SPARKLAKE_BUCKET", &lake)
            .env("SPARKLAKE_PREFIX", "lake")
            .env("SPARKLAKE_ARCHIVE_STREAM", &stream)
            .env("SPARKLAKE_AUTH", "none")
            .env("SPARKLAKE_LOG", "info")
            .env("SPARKLAKE_LOG_FORMAT", "json")
            .env("SPARKLAKE_METRICS_INTERVAL_SECS", "2")
            // One post per fanout call, as a fanout Lambda with batch size 1 runs: fanout sends
            // a call's archive records in one Firehose request, and at the default of 10 the 50
            // posts make ~6 requests, too few to meet the injected faults.
            .env("SPARKLAKE_FANOUT_BATCH_SIZE", "1");
    };
    let log_path = work.path().join("serve.log");
    let mut serve = sparklake();
    env(&mut serve, &proxy.url);
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--poll-wait-secs", "1"])
        .args([
            "--visibility-timeout-secs",
            "6",
            "--writer-window-ms",
            "500",
        ])
        .stderr(std::fs::File::create(&log_path).unwrap());
    let serve = Server::start(serve);
    let addr = serve.addr.clone();

    // SparkPost-like batches: 1 to 200 events, the full type mix.
    let mut generator = sparklake::generate::Generator::new(seed, events);
    let mut batches = Vec::new();
    let mut produced = 0u64;
    while produced < events {
        let n = (1 + (batches.len() as u64 * 7_919) % 200).min(events - produced);
        batches.push(generator.batch(n as usize));
        produced += n;
    }
    let posted: HashSet<Identity> = batches.iter().flat_map(|b| batch_identities(b)).collect();
    assert_eq!(
        posted.len() as u64,
        events,
        "the generator's identities are unique"
    );

    let backlog = Arc::new(AtomicU64::new(0));
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = tokio::spawn({
        let (backlog, watching, sqs) = (backlog.clone(), watching.clone(), aws.sqs.clone());
        let urls = [ingest_url.clone(), events_url.clone()];
        async move {
            while watching.load(Ordering::Relaxed) {
                let mut total = 0;
                for url in &urls {
                    let (visible, in_flight) = depth_of(&sqs, url).await;
                    total += visible + in_flight;
                }
                backlog.store(total, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });

    // Concurrent clients, each retrying a batch until it is answered 200 (SparkPost retries
    // any other answer for 8 hours; here a bounded number of times).
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let not_ok = Arc::new(AtomicU64::new(0));
    let mut posting = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (batches, next, not_ok, addr, backlog) = (
            batches.clone(),
            next.clone(),
            not_ok.clone(),
            addr.clone(),
            backlog.clone(),
        );
        posting.spawn(async move {
            let mut accepted = Vec::new();
            loop {
                let held = Instant::now();
                while backlog.load(Ordering::Relaxed) > backlog_limit {
                    assert!(
                        held.elapsed() < patience,
                        "the pipeline wedged: its queues stayed over {backlog_limit} messages"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = batches.get(i) else { break };
                for attempt in 1..=100u64 {
                    match sparklake::http_client::post(&addr, body.as_bytes()).await {
                        Ok((200, _)) => {
                            accepted.push(i);
                            break;
                        }
                        _ => {
                            not_ok.fetch_add(1, Ordering::Relaxed);
                            let pause = (100 * attempt).min(2_000);
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                        }
                    }
                }
            }
            accepted
        });
    }
    let mut accepted_batches = Vec::new();
    while let Some(done) = posting.join_next().await {
        accepted_batches.extend(done.unwrap());
    }
    watching.store(false, Ordering::Relaxed);
    watcher.await.unwrap();
    let accepted: HashSet<Identity> = accepted_batches
        .iter()
        .flat_map(|&i| batch_identities(&batches[i]))
        .collect();

    // Let the workers finish; re-drive whatever the dead-letter queues caught, until nothing
    // is left anywhere.
    let mut dead_lettered = BTreeMap::new();
    let mut redrives = 0;
    loop {
        wait_until_empty(&aws, &[&ingest_url, &events_url], patience).await;
        let dead = [("ingest", &ingest_dlq), ("events", &events_dlq)];
        let mut any = false;
        for (name, url) in dead {
            let (visible, in_flight) = depth(&aws, url).await;
            if visible + in_flight > 0 {
                *dead_lettered.entry(name).or_insert(0) += visible + in_flight;
                any = true;
            }
        }
        if !any {
            break;
        }
        redrives += 1;
        assert!(
            redrives <= 5,
            "dead letters keep coming back: {dead_lettered:?}"
        );
        // Through the proxy: the re-drive itself meets faults (and is run again if one outlasts
        // the SDK's retries: moving is send-then-delete, so a repeat duplicates, never loses).
        for _ in 0..3 {
            let mut redrive = sparklake();
            env(&mut redrive, &proxy.url);
            let output = redrive
                .args(["redrive", "--queue", "all"])
                .output()
                .unwrap();
            eprintln!(
                "redrive: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            if output.status.success() {
                break;
            }
        }
    }

    let exit = serve.stop(patience);
    assert!(exit.success(), "serve exited {exit}");
    let faults = proxy.stop();

    // `status`, straight to the emulator: every queue and dead-letter queue is empty.
    let mut status = sparklake();
    env(&mut status, &aws.endpoint);
    let status = status.arg("status").output().unwrap();
    assert!(status.status.success(), "{status:?}");
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    for url in [&ingest_url, &events_url, &ingest_dlq, &events_dlq] {
        assert_eq!(depth(&aws, url).await, (0, 0), "{url} is empty at the end");
    }

    // The promise: every event answered 200 is in the lake.
    let (rows, objects) = lake_identities(&aws, &lake, "lake/parquet/").await;
    let distinct: HashSet<&Identity> = rows.iter().collect();
    let missing: Vec<&Identity> = accepted.iter().filter(|i| !distinct.contains(i)).collect();
    let invented = distinct.iter().filter(|i| !posted.contains(**i)).count();

    // What the logs and metrics say about the faults.
    let logs = log_lines(&log_path);
    let message = |l: &serde_json::Value| l["fields"]["message"].as_str().unwrap_or("").to_owned();
    let mut failed_attempts: BTreeMap<String, u64> = BTreeMap::new();
    let mut log_counts: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut metric_retries, mut metric_failures) = (0, 0);
    for l in &logs {
        let m = message(l);
        if m.starts_with("AWS call attempt failed") {
            let key = format!(
                "{}.{}",
                l["fields"]["service"]
                    .as_str()
                    .unwrap_or("?")
                    .to_ascii_lowercase(),
                l["fields"]["operation"].as_str().unwrap_or("?")
            );
            *failed_attempts.entry(key).or_default() += 1;
        } else if m.starts_with("metrics: ") {
            metric_retries += l["fields"]["retries"].as_u64().unwrap_or(0);
            metric_failures += l["fields"]["failures"].as_u64().unwrap_or(0);
        }
        for (label, needle) in [
            ("ingest 503 (enqueue failed)", "enqueue failed"),
            ("fanout message failed", "fanout failed"),
            ("writer group failed", "write failed"),
            ("receive failed", "poll failed"),
            ("visibility not extended", "could not extend"),
            ("partial batch retried", "failed; retrying"),
        ] {
            if m.contains(needle) {
                *log_counts.entry(label).or_default() += 1;
            }
        }
    }
    let log_text = std::fs::read_to_string(&log_path).unwrap();

    let report = serde_json::json!({
        "events_posted": events,
        "batches": batches.len(),
        "clients": clients,
        "backlog_limit": backlog_limit,
        "rate": rate,
        "seed": seed,
        "non_200_answers": not_ok.load(Ordering::Relaxed),
        "batches_accepted": accepted_batches.len(),
        "events_accepted": accepted.len(),
        "rows_in_lake": rows.len(),
        "distinct_in_lake": distinct.len(),
        "duplicates": rows.len() - distinct.len(),
        "missing": missing.len(),
        "parquet_objects": objects,
        "dead_lettered": dead_lettered,
        "redrive_runs": redrives,
        "sdk_failed_attempts_logged": failed_attempts,
        "metrics_retries": metric_retries,
        "metrics_failures": metric_failures,
        "pipeline_log_counts": log_counts,
        "faults": faults["summary"],
    });
    let pretty = serde_json::to_string_pretty(&report).unwrap();
    eprintln!("aws_faults report:\n{pretty}\nstatus:\n{status}");
    if let Ok(path) = std::env::var("SPARKLAKE_FAULTS_REPORT") {
        std::fs::write(&path, &pretty).unwrap();
        std::fs::copy(&log_path, format!("{path}.serve.log")).unwrap();
    }

    assert!(
        missing.is_empty(),
        "{} accepted events are not in the lake",
        missing.len()
    );
    assert_eq!(invented, 0, "the lake holds only events that were posted");
    assert_eq!(
        accepted_batches.len(),
        batches.len(),
        "every batch was eventually answered 200"
    );
    if rate > 0.0 {
        // Every service met faults, and every kind was injected (a service with few calls, like
        // Firehose here, may not have met every kind).
        for service in ["sqs", "s3", "firehose"] {
            let s = &faults["summary"][service];
            assert!(
                s["injected"].as_u64().unwrap_or(0) > 0,
                "no fault for {service}: {s}"
            );
        }
        for kind in ["error", "throttle", "close-before", "close-after"] {
            let n: u64 = ["sqs", "s3", "firehose"]
                .iter()
                .map(|s| faults["summary"][s][kind].as_u64().unwrap_or(0))
                .sum();
            assert!(n > 0, "no {kind} injected: {}", faults["summary"]);
        }
        assert!(
            failed_attempts.keys().any(|k| k.starts_with("sqs."))
                && failed_attempts.keys().any(|k| k.starts_with("s3."))
                && failed_attempts.keys().any(|k| k.starts_with("firehose.")),
            "failed attempts are logged per service: {failed_attempts:?}"
        );
        assert!(metric_retries > 0, "the metrics count the SDK's retries");
    }
    assert!(
        status.contains("ingest") && status.contains("events"),
        "{status}"
    );
    assert!(
        !log_text.contains("@example.com"),
        "no recipient address in the logs"
    );
}
