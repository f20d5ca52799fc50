//! Timing of the credential check, for the constant-time claim in SECURITY.md: how long
//! `Auth::check` takes for a bearer token that shares no leading byte with the secret, one that
//! shares all but the last byte, the right one, and tokens of other lengths, for secrets of
//! 16, 64 and 1024 bytes (and the same for the custom header).
//!
//! `cargo bench -p ingest --bench auth` measures: first an interleaved table (every attempt of
//! a secret timed in turn, round after round, so drift from other load on the machine hits all
//! of them alike; the median per attempt), then criterion's per-case statistics.
//! `cargo test -p ingest --benches` runs each criterion case once as a smoke test. The figures
//! are in BENCHMARKS.md ("Credential check timing").

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group};
use http::{HeaderMap, HeaderValue};
use ingest::IngestConfig;

fn config(vars: &[(&str, &str)]) -> IngestConfig {
    IngestConfig::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("a valid configuration")
}

/// A secret of `len` visible-ASCII bytes.
fn secret(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap_or(0)))
        .collect()
}

/// The attempts against `secret`: (name, token).
fn attempts(secret: &str) -> Vec<(&'static str, String)> {
    let n = secret.len();
    let mut first_wrong = secret.to_owned().into_bytes();
    first_wrong[0] = b'Z';
    let mut last_wrong = secret.to_owned().into_bytes();
    last_wrong[n - 1] = b'Z';
    vec![
        (
            "shares 0 leading bytes",
            String::from_utf8(first_wrong).unwrap_or_default(),
        ),
        (
            "shares all but the last byte",
            String::from_utf8(last_wrong).unwrap_or_default(),
        ),
        ("the secret", secret.to_owned()),
        ("half as long (a prefix)", secret[..n / 2].to_owned()),
        ("twice as long (secret repeated)", secret.repeat(2)),
    ]
}

/// The configuration of `mode` ("bearer" or "header") with `secret` as its one credential.
fn mode_config(mode: &str, secret: &str) -> IngestConfig {
    match mode {
        "bearer" => config(&[
            ("SPARKLAKE_AUTH", "bearer"),
            ("SPARKLAKE_BEARER_TOKENS", secret),
        ]),
        _ => config(&[
            ("SPARKLAKE_AUTH", "header"),
            ("SPARKLAKE_HEADER_NAME", "x-webhook-secret"),
            ("SPARKLAKE_HEADER_VALUE", secret),
        ]),
    }
}

/// The request headers presenting `attempt` in `mode`.
fn attempt_headers(mode: &str, attempt: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if mode == "bearer" {
        let value = HeaderValue::from_str(&format!("Bearer {attempt}")).expect("ascii");
        headers.insert(http::header::AUTHORIZATION, value);
    } else {
        let value = HeaderValue::from_str(attempt).expect("ascii");
        headers.insert("x-webhook-secret", value);
    }
    headers
}

fn bench_mode(c: &mut Criterion, mode: &str) {
    let mut group = c.benchmark_group(mode);
    for len in [16usize, 64, 1024] {
        let value = secret(len);
        let config = mode_config(mode, &value);
        for (name, attempt) in attempts(&value) {
            group.bench_with_input(
                BenchmarkId::new(format!("secret {len} B"), name),
                &attempt_headers(mode, &attempt),
                |b, h| {
                    b.iter(|| black_box(config.auth.check(black_box(h)).is_ok()));
                },
            );
        }
    }
    group.finish();
}

fn bench_bearer(c: &mut Criterion) {
    bench_mode(c, "bearer");
}

fn bench_header(c: &mut Criterion) {
    bench_mode(c, "header");
}

/// Median ns per check of each attempt, timed in interleaved rounds; printed as a table.
fn interleaved() {
    const ROUNDS: usize = 201;
    const ITERS: u32 = 2_000;
    println!("| mode | secret | attempt | median ns/check |");
    println!("|---|---|---|---|");
    for mode in ["bearer", "header"] {
        for len in [16usize, 64, 1024] {
            let value = secret(len);
            let config = mode_config(mode, &value);
            let cases: Vec<(&str, HeaderMap)> = attempts(&value)
                .into_iter()
                .map(|(name, attempt)| (name, attempt_headers(mode, &attempt)))
                .collect();
            let mut samples = vec![Vec::with_capacity(ROUNDS); cases.len()];
            for round in 0..ROUNDS {
                for k in 0..cases.len() {
                    let i = (k + round) % cases.len();
                    let headers = &cases[i].1;
                    let start = std::time::Instant::now();
                    for _ in 0..ITERS {
                        black_box(config.auth.check(black_box(headers)).is_ok());
                    }
                    samples[i].push(start.elapsed().as_nanos() as f64 / f64::from(ITERS));
                }
            }
            for (i, (name, _)) in cases.iter().enumerate() {
                let s = &mut samples[i];
                s.sort_by(f64::total_cmp);
                println!("| {mode} | {len} B | {name} | {:.0} |", s[ROUNDS / 2]);
            }
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not (criterion's test mode).
    if std::env::args().any(|a| a == "--bench") {
        interleaved();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_bearer, bench_header
}
