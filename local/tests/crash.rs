//! Crash rounds: the real `sparklake serve` (bearer auth on) takes batches from several concurrent
//! clients and is killed with SIGKILL at seeded random points, several times, each time restarted
//! on the same data folder; a last start takes the retried batches and drains on SIGTERM. Every
//! event of every batch answered 200 must then be in the lake, in Parquet and in CSV; duplicates
//! stay within what the design allows, and the repository's de-duplicating view
//! (`queries/events_dedup_view.sql`, in DuckDB) counts exactly the accepted events.
//!
//! `SPARKLAKE_CRASH_ROUNDS` (default 4) sets the number of kills, `SPARKLAKE_CRASH_SEED` the seed.
//! The figures are printed (`cargo test -p sparklake --test crash -- --nocapture`) and recorded in
//! RELIABILITY.md.

mod support;

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sparklake::generate::{Generator, Rng};
use sparklake::queue::{LocalQueues, QueueConfig};
use support::lake::Identity;
use support::process::Server;
use support::{files, http, lake, process};

/// Concurrent clients posting.
const CLIENTS: usize = 4;
/// Batches first posted in each round.
const BATCHES_PER_ROUND: usize = 30;
/// Generated events per batch; each batch also carries `RAW_ONLY` events without an `event_id`.
const EVENTS_PER_BATCH: usize = 25;
const RAW_ONLY: usize = 2;
/// Messages per fanout call and per writer call, as passed to `serve`.
const FANOUT_BATCH: usize = 5;
const WRITER_BATCH: usize = 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// `count` batches: the generator's realistic events (unique `event_id`s, a few `sms_status`
/// without one) plus `RAW_ONLY` events without an `event_id`, unique by their text, so both kinds
/// of identity are exercised.
fn batches(seed: u64, count: usize) -> Vec<String> {
    // A total far above what is drawn keeps every timestamp within a day or two of the window's
    // start: few partitions, as a live stream has.
    let mut generator = Generator::new(seed, (count * EVENTS_PER_BATCH * 30) as u64);
    (0..count)
        .map(|b| {
            let mut batch = generator.batch(EVENTS_PER_BATCH);
            batch.pop(); // the closing `]`
            for i in 0..RAW_ONLY {
                batch.push_str(&format!(
                    r#",{{"msys":{{"message_event":{{"type":"sms_status","timestamp":"1764547200","sms_src":"crash-{seed}-{b}-{i}","sms_text":"no event_id here"}}}}}}"#
                ));
            }
            batch.push(']');
            batch
        })
        .collect()
}

/// What happened to each batch, shared by the clients.
#[derive(Default)]
struct Ledger {
    /// Batches waiting to be posted (new, or retried after a post without an answer).
    todo: VecDeque<usize>,
    /// Batches answered 200.
    accepted: BTreeSet<usize>,
    /// Posts in all, and posts that got no answer (the server was killed under them).
    posts: usize,
    cut_off: usize,
}

/// Clients post batches from the ledger until it is empty or `stop` is set. A post without an
/// answer goes back to be retried after the restart, as SparkPost retries, and its client stops;
/// any answer but 200 is a failure (nothing here should be refused or unavailable).
async fn run_clients(
    addr: &str,
    batches: &Arc<Vec<String>>,
    ledger: &Arc<Mutex<Ledger>>,
    answered: &Arc<AtomicUsize>,
    stop: &Arc<AtomicBool>,
) {
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (addr, batches, ledger, answered, stop) = (
            addr.to_owned(),
            batches.clone(),
            ledger.clone(),
            answered.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let Some(index) = ledger.lock().expect("ledger").todo.pop_front() else {
                    break;
                };
                let result = http::try_post(&addr, batches[index].as_bytes()).await;
                let mut ledger = ledger.lock().expect("ledger");
                ledger.posts += 1;
                match result {
                    Ok(answer) => {
                        assert_eq!(answer.status, 200, "batch {index}: {}", answer.body);
                        ledger.accepted.insert(index);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => {
                        // The server is gone: retry after the restart.
                        ledger.cut_off += 1;
                        ledger.todo.push_back(index);
                        break;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
}

/// `serve`'s default: receives before a message is dead-lettered.
const MAX_RECEIVES: usize = 5;

/// Messages in the dead-letter queues of the data folder.
async fn dead_letters(data: &Path) -> u64 {
    let queues = LocalQueues::open(&data.join("queue.sqlite3")).expect("queue database");
    let mut dead = 0;
    for name in ["ingest", "events"] {
        let counts = queues
            .queue(name, QueueConfig::default())
            .counts()
            .await
            .expect("counts");
        assert_eq!((counts.visible, counts.in_flight), (0, 0), "{name} drained");
        dead += counts.dead;
    }
    dead
}

fn serve(data: &Path, log: &Path) -> Server {
    Server::start(lake::serve_command(
        data,
        log,
        &[
            "--writer-window-ms",
            "200",
            "--writer-batch-size",
            &WRITER_BATCH.to_string(),
            "--fanout-batch-size",
            &FANOUT_BATCH.to_string(),
        ],
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_rounds_lose_no_event_answered_200() {
    let rounds = env_u64("SPARKLAKE_CRASH_ROUNDS", 4) as usize;
    let seed = env_u64("SPARKLAKE_CRASH_SEED", 20_261_127);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let batches = Arc::new(batches(seed, rounds.max(1) * BATCHES_PER_ROUND));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = Rng::new(seed);
    let mut kills_while_posting = 0;

    for round in 0..rounds {
        {
            let mut ledger = ledger.lock().expect("ledger");
            let first = round * BATCHES_PER_ROUND;
            ledger.todo.extend(first..first + BATCHES_PER_ROUND);
        }
        let server = serve(&data, &log);
        let answered = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let clients = tokio::spawn({
            let (addr, batches, ledger, answered, stop) = (
                server.addr.clone(),
                batches.clone(),
                ledger.clone(),
                answered.clone(),
                stop.clone(),
            );
            async move { run_clients(&addr, &batches, &ledger, &answered, &stop).await }
        });
        // Half the kills land while the clients post (after a random number of answers; fanout
        // and the writer are busy too), half after the last answer, a random moment into the
        // fanout and writer work that follows.
        if rng.chance(500) {
            kills_while_posting += 1;
            let after = 1 + rng.below(BATCHES_PER_ROUND as u64 - 1) as usize;
            while answered.load(Ordering::SeqCst) < after && !clients.is_finished() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            while !clients.is_finished() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.below(600))).await;
        }
        // No new post starts after this; those under way are cut off by the kill.
        stop.store(true, Ordering::SeqCst);
        server.kill();
        clients.await.expect("clients");
    }

    // The last start: the batches whose posts were cut off are posted again until answered, then
    // SIGTERM drains everything accepted.
    let server = serve(&data, &log);
    let no_stop = Arc::new(AtomicBool::new(false));
    run_clients(
        &server.addr,
        &batches,
        &ledger,
        &Arc::new(AtomicUsize::new(0)),
        &no_stop,
    )
    .await;
    server.terminate();

    // A message in flight at a kill has used one of its receives: the local queue, like SQS,
    // dead-letters a message received MAX_RECEIVES times without being done, which is how a
    // message that crashes its consumer every time is put aside. So a message caught in flight
    // at MAX_RECEIVES kills in a row is dead-lettered, not lost: the operator's `sparklake
    // redrive` brings it back and the next start writes it. With fewer rounds than
    // MAX_RECEIVES no message can get there.
    let dead_lettered = dead_letters(&data).await;
    if rounds < MAX_RECEIVES {
        assert_eq!(
            dead_lettered, 0,
            "dead-lettered with fewer kills than receives"
        );
    }
    if dead_lettered > 0 {
        let status = process::sparklake()
            .args(["redrive", "--data"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .stderr(lake::log_file(&log))
            .status()
            .expect("sparklake redrive");
        assert!(status.success());
        serve(&data, &log).terminate();
        assert_eq!(dead_letters(&data).await, 0);
    }
    // Temporary files of writes a kill interrupted are removed at the next start.
    let temp_files_removed: u64 =
        lake::log_events(&log, "removed temporary files of interrupted writes")
            .iter()
            .filter_map(|f| f["files"].as_u64())
            .sum();
    assert_eq!(
        files::files_ending(&data, ".tmp"),
        Vec::<std::path::PathBuf>::new()
    );

    let ledger = ledger.lock().expect("ledger");
    assert!(ledger.todo.is_empty());
    let accepted: BTreeSet<Identity> = ledger
        .accepted
        .iter()
        .flat_map(|&b| lake::batch_identities(&batches[b]))
        .collect();
    let posted: BTreeSet<Identity> = batches
        .iter()
        .flat_map(|b| lake::batch_identities(b))
        .collect();
    let events_posted = batches.len() * (EVENTS_PER_BATCH + RAW_ONLY);
    assert_eq!(
        posted.len(),
        events_posted,
        "every generated event is distinct"
    );
    assert!(
        posted
            .iter()
            .filter(|i| matches!(i, Identity::Raw(_)))
            .count()
            >= batches.len() * RAW_ONLY,
        "raw-hash identities are exercised"
    );

    let parquet = lake::parquet_identities(&data);
    let (parquet_tally, parquet_set) = lake::tally(&parquet);
    let csv = lake::csv_identities(&data);
    let (csv_tally, csv_set) = lake::tally(&csv);
    let recovered: u64 = lake::log_events(&log, "recovered in-flight messages from an earlier run")
        .iter()
        .filter_map(|f| f["messages"].as_u64())
        .sum();

    println!(
        "crash rounds: seed {seed}, {rounds} SIGKILLs ({kills_while_posting} while posting, {} after the last answer), {CLIENTS} clients",
        rounds - kills_while_posting
    );
    println!(
        "  batches {} ({} events each), posts {}, answered 200 {}, posts cut off by a kill {}",
        batches.len(),
        EVENTS_PER_BATCH + RAW_ONLY,
        ledger.posts,
        ledger.accepted.len(),
        ledger.cut_off
    );
    println!(
        "  events in (distinct, answered 200) {}; in-flight messages recovered at restarts {recovered}; temporary files of interrupted writes removed at restarts {temp_files_removed}; messages dead-lettered (then redriven) {dead_lettered}",
        accepted.len()
    );
    println!(
        "  parquet: rows {}, distinct {}, duplicates {}, most copies of one event {}",
        parquet_tally.rows,
        parquet_tally.distinct,
        parquet_tally.duplicates(),
        parquet_tally.max_copies
    );
    println!(
        "  csv:     rows {}, distinct {}, duplicates {}, most copies of one event {}",
        csv_tally.rows,
        csv_tally.distinct,
        csv_tally.duplicates(),
        csv_tally.max_copies
    );

    // Nothing answered 200 is missing, in either format; nothing appears that was not posted.
    let missing = accepted.difference(&parquet_set).count();
    assert_eq!(missing, 0, "accepted events missing from Parquet");
    assert_eq!(
        accepted.difference(&csv_set).count(),
        0,
        "accepted events missing from CSV"
    );
    assert!(
        parquet_set.is_subset(&posted),
        "Parquet holds unposted events"
    );
    assert_eq!(parquet_set, csv_set, "Parquet and CSV hold the same events");
    assert_eq!(
        parquet_tally, csv_tally,
        "each object is written in both formats"
    );
    // Every batch was retried until answered, so the lake holds exactly the posted events.
    assert_eq!(accepted, posted);

    // The bound on duplicates. A copy beyond the first comes only from work a kill interrupted:
    // - a post whose batch was enqueued but whose 200 never reached the client, which posts it
    //   again: at most one batch per client per kill;
    // - a fanout call that sent its events on but was killed before deleting its input: the
    //   input is fanned out again, at most FANOUT_BATCH ingest messages (one batch each);
    // - a writer call that wrote objects but was killed before deleting its messages: they are
    //   written again, possibly grouped with others under a new object name, at most
    //   WRITER_BATCH events messages (each a part of one batch).
    // Redelivery after a visibility timeout cannot happen here (the heartbeat extends it, and a
    // restart releases in-flight messages at once), and a writer call de-duplicates within itself.
    let per_batch = EVENTS_PER_BATCH + RAW_ONLY;
    let bound = rounds * (CLIENTS + FANOUT_BATCH + WRITER_BATCH) * per_batch;
    assert!(
        parquet_tally.duplicates() <= bound,
        "{} duplicates, more than the {bound} the design allows",
        parquet_tally.duplicates()
    );
    // Each mechanism adds at most one copy of an event per kill.
    assert!(parquet_tally.max_copies <= 1 + 3 * rounds);
    println!("  duplicate bound: {bound}");

    // The de-duplicated view, as operators query it, counts each accepted event exactly once.
    if let Some(deduplicated) = lake::duckdb_scalar(&data, "SELECT count(*) FROM events_dedup") {
        let rows = lake::duckdb_scalar(&data, "SELECT count(*) FROM events").unwrap_or(0);
        println!("  duckdb: events {rows}, events_dedup {deduplicated}");
        assert_eq!(rows, parquet_tally.rows as u64);
        assert_eq!(deduplicated, accepted.len() as u64);
    }

    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(!logged.contains(http::TOKEN), "the log holds the token");
}
