//! Micro-benchmarks of the pipeline's CPU stages over generated SparkPost batches
//! (`sparklake::generate`, the generator behind `sparklake gen`).
//!
//! `cargo bench -p sparklake --bench pipeline` measures; `cargo test -p sparklake --benches`
//! runs each benchmark once as a smoke test.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fanout::Fanout;
use sparklake::generate::Generator;
use sparklake_core::encode::{Backing, ParquetEncoder, encode_csv, to_record_batch};
use sparklake_core::envelope;
use sparklake_core::event::Event;
use sparklake_core::memory::{MemoryQueue, MemoryStore};
use sparklake_core::message::{Attributes, InboundMessage};
use sparklake_core::schema::{Row, TimestampPolicy};
use writer::Writer;

/// One SparkPost post: SparkPost sends up to about 350 events per batch.
const BATCH_EVENTS: usize = 350;
/// What one writer call typically encodes.
const ROWS: usize = 5_000;
const RECEIVED_AT: i64 = 1_767_225_600_000;

fn body(events: usize) -> String {
    Generator::new(42, events as u64).batch(events)
}

fn rows(body: &str) -> Vec<Row<'_>> {
    let batch = envelope::validate(body.as_bytes()).expect("generated batch validates");
    batch
        .elements
        .into_iter()
        .filter_map(|e| {
            e.head.map(|head| {
                Row::new(
                    Event::with_head(e.raw, head),
                    None,
                    RECEIVED_AT,
                    &TimestampPolicy::default(),
                )
            })
        })
        .collect()
}

fn ingest(c: &mut Criterion) {
    let small = body(BATCH_EVENTS);
    let large = body(ROWS);
    let mut group = c.benchmark_group("ingest");
    for (name, body) in [("validate/350", &small), ("validate/5000", &large)] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                envelope::validate(black_box(body.as_bytes())).map(|batch| batch.elements.len())
            })
        });
    }
    let batch = envelope::validate(large.as_bytes()).expect("validates");
    let elements: Vec<&str> = batch.elements.iter().map(|e| e.raw).collect();
    group.throughput(Throughput::Bytes(large.len() as u64));
    for (label, max) in [("1MiB", 1_048_576usize), ("256KiB", 262_144)] {
        group.bench_with_input(BenchmarkId::new("split/5000", label), &max, |b, &max| {
            b.iter(|| envelope::split(black_box(&elements), max).map(|parts| parts.len()))
        });
    }
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let body = Bytes::from(body(BATCH_EVENTS));
    let messages: Vec<InboundMessage> = (0..10)
        .map(|i| InboundMessage {
            id: format!("m{i}"),
            body: body.clone(),
            attributes: Attributes::new(),
            receive_count: 1,
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // The shared in-memory queue, emptied after each call (what it keeps is a move of the
    // messages fanout built, not work of fanout's).
    let queue = MemoryQueue::new(262_144);
    let handler = Fanout {
        events: &queue,
        routes: &[],
        archive: None,
    };
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Bytes((body.len() * messages.len()) as u64));
    group.bench_function("handle/10x350", |b| {
        b.iter(|| {
            let events = runtime
                .block_on(handler.handle(black_box(&messages)))
                .events;
            black_box(queue.take());
            events
        })
    });
    group.finish();
}

fn writer(c: &mut Criterion) {
    let body = body(ROWS);
    let rows = rows(&body);
    let mut group = c.benchmark_group("writer");
    group.sample_size(20);
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("parse_rows/5000", |b| b.iter(|| rows_len(black_box(&body))));
    group.bench_function("record_batch/5000", |b| {
        b.iter(|| to_record_batch(black_box(&rows)).map(|batch| batch.num_rows()))
    });
    let parquet = ParquetEncoder::default();
    group.bench_function("parquet/5000", |b| {
        b.iter(|| parquet.encode(black_box(&rows)).map(|out| out.len()))
    });
    // As the writer encodes: the rows' long texts handed over as views of the body.
    let shared = Bytes::from(body.clone().into_bytes());
    let shared_rows = self::rows(std::str::from_utf8(&shared).expect("generated text is UTF-8"));
    let backing = Backing::new([shared.clone()]);
    group.bench_function("parquet_backed/5000", |b| {
        b.iter(|| {
            parquet
                .encode_backed(black_box(&shared_rows), &backing)
                .map(|out| out.len())
        })
    });
    group.bench_function("csv/5000", |b| {
        b.iter(|| encode_csv(black_box(&rows)).map(|out| out.len()))
    });
    group.finish();
}

/// A whole writer call (read, de-duplicate, group, encode both formats, store) over the
/// per-type messages fanout makes of `events` events: the Lambda-shaped writer batch.
fn writer_call(c: &mut Criterion) {
    const EVENTS: usize = 10_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let queue = MemoryQueue::new(262_144);
    let fanout = Fanout {
        events: &queue,
        routes: &[],
        archive: None,
    };
    // A slice of a month of 200,000 events (about a day and a half), as a writer batch sees a
    // steady stream: the whole month in one batch would make 450 tiny files.
    let generator_body = Generator::new(42, 200_000).batch(EVENTS);
    let input = InboundMessage {
        id: "in".into(),
        body: Bytes::from(generator_body),
        attributes: Attributes::new(),
        receive_count: 1,
    };
    let outcome = runtime.block_on(fanout.handle(std::slice::from_ref(&input)));
    assert!(outcome.failed.is_empty());
    let messages: Vec<InboundMessage> = queue
        .into_sent()
        .into_iter()
        .enumerate()
        .map(|(i, m)| m.delivered(format!("m{i}")))
        .collect();
    let parquet = ParquetEncoder::default();
    let store = MemoryStore::default();
    let writer = Writer {
        store: &store,
        parquet: &parquet,
        timestamps: Default::default(),
        catalog: None,
    };
    let mut group = c.benchmark_group("writer");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("handle/10000", |b| {
        b.iter(|| {
            let rows = runtime
                .block_on(writer.handle(black_box(&messages), RECEIVED_AT))
                .rows;
            black_box(store.take());
            rows
        })
    });
    group.finish();
}

/// Parquet bytes per zstd level for one 5,000-row file (printed once; not a benchmark).
fn parquet_sizes(c: &mut Criterion) {
    let body = body(ROWS);
    let rows = rows(&body);
    for level in [1, 3, 6, 9] {
        if let Ok(out) = ParquetEncoder::with_zstd_level(level).encode(&rows) {
            eprintln!("parquet/5000 at zstd level {level}: {} bytes", out.len());
        }
    }
    let _ = c;
}

fn rows_len(body: &str) -> usize {
    rows(body).len()
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = ingest, fanout, writer, writer_call, parquet_sizes
}
criterion_main!(benches);
