//! `sparklake gen`: synthetic SparkPost webhook batches for benchmarks and load tests.
//!
//! Deterministic: the same seed, event count and batch size give byte-identical files. Each
//! element is shaped like SparkPost's own samples (`fixtures/sparkpost/batch.json`): the right
//! class per type, the fields that type carries, keys in a shuffled order, numbers mostly as
//! strings, timestamps over a 30-day window in the forms SparkPost has sent (mostly unix-seconds
//! strings, some JSON integers, some ISO-8601, a few "late" events older than their batch).
//! Addresses and ids are synthetic (`user123@example.com`).

use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};

/// The end of the generated window: 2026-01-01T00:00:00Z (fixed, so output is reproducible).
const WINDOW_END: i64 = 1_767_225_600;
/// The window's length by default: 30 days.
pub const DEFAULT_DAYS: u32 = 30;

/// Event types, their class and relative weight (per 100 000 events).
pub const TYPES: &[(&str, &str, u32)] = &[
    ("injection", "message_event", 30_000),
    ("delivery", "message_event", 28_000),
    ("open", "track_event", 10_000),
    ("initial_open", "track_event", 5_000),
    ("click", "track_event", 6_000),
    ("amp_open", "track_event", 300),
    ("amp_initial_open", "track_event", 200),
    ("amp_click", "track_event", 100),
    ("bounce", "message_event", 3_000),
    ("delay", "message_event", 2_000),
    ("spam_complaint", "message_event", 100),
    ("out_of_band", "message_event", 300),
    ("policy_rejection", "message_event", 500),
    ("list_unsubscribe", "unsubscribe_event", 250),
    ("link_unsubscribe", "unsubscribe_event", 250),
    ("generation_failure", "gen_event", 100),
    ("generation_rejection", "gen_event", 100),
    ("relay_injection", "relay_event", 200),
    ("relay_rejection", "relay_event", 200),
    ("relay_delivery", "relay_event", 200),
    ("relay_tempfail", "relay_event", 200),
    ("relay_permfail", "relay_event", 200),
    ("sms_status", "message_event", 500),
];

/// splitmix64: tiny, fast and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Hashes a number to 64 well-mixed bits (one splitmix64 step).
pub(super) fn mix(x: u64) -> u64 {
    Rng::new(x).next_u64()
}

/// Generates events in order; `batch` packs the next ones into a JSON array as SparkPost posts it.
mod event;
mod values;

#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    seed: u64,
    total: u64,
    index: u64,
    /// The window's length (`--days`).
    window_secs: i64,
    /// The types drawn from (`--types`; all of [`TYPES`] by default).
    types: Vec<(&'static str, &'static str, u32)>,
    total_weight: u64,
}

impl Generator {
    /// A generator of `total` events (`total` spreads their timestamps over the window).
    pub fn new(seed: u64, total: u64) -> Self {
        Self {
            rng: Rng::new(seed ^ 0x5EED_5EED_5EED_5EED),
            seed,
            total: total.max(1),
            index: 0,
            window_secs: i64::from(DEFAULT_DAYS) * 86_400,
            types: TYPES.to_vec(),
            total_weight: TYPES.iter().map(|t| u64::from(t.2)).sum(),
        }
    }

    /// The same over a window of `days` days ending where the default one ends, drawing only
    /// `types` (names of [`TYPES`], in their usual proportions; empty: all of them). For
    /// benchmarks that need one large partition (`--days 1 --types delivery`).
    pub fn shaped(seed: u64, total: u64, days: u32, types: &[String]) -> anyhow::Result<Self> {
        anyhow::ensure!(days > 0, "--days must be at least 1");
        let mut generator = Self::new(seed, total);
        generator.window_secs = i64::from(days) * 86_400;
        if !types.is_empty() {
            for name in types {
                anyhow::ensure!(
                    TYPES.iter().any(|t| t.0 == name),
                    "--types: `{name}` is not a generated type ({})",
                    TYPES.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
                );
            }
            generator.types = TYPES
                .iter()
                .copied()
                .filter(|t| types.iter().any(|name| name == t.0))
                .collect();
            generator.total_weight = generator.types.iter().map(|t| u64::from(t.2)).sum();
        }
        Ok(generator)
    }

    /// The next `n` events as one compact JSON array.
    pub fn batch(&mut self, n: usize) -> String {
        // The batch's nominal time: events are spread evenly over the window in order.
        let window = self.window_secs;
        let batch_time = WINDOW_END - window + (window as u64 * self.index / self.total) as i64;
        let mut out = String::with_capacity(n * 1100 + 2);
        out.push('[');
        for i in 0..n {
            if i > 0 {
                out.push(',');
            }
            self.event(batch_time, &mut out);
        }
        out.push(']');
        out
    }

    fn pick_type(&mut self) -> (&'static str, &'static str) {
        let mut r = self.rng.below(self.total_weight);
        for &(event_type, class, weight) in &self.types {
            if r < u64::from(weight) {
                return (event_type, class);
            }
            r -= u64::from(weight);
        }
        ("injection", "message_event")
    }

    /// A number as SparkPost usually sends it (a string), sometimes as a JSON number.
    fn num(&mut self, n: u64) -> Value {
        if self.rng.chance(100) {
            json!(n)
        } else {
            Value::String(n.to_string())
        }
    }

    fn timestamp(&mut self, batch_time: i64) -> Value {
        let mut t = batch_time + self.rng.below(240) as i64 - 120;
        if self.rng.chance(30) {
            // Late: an hour to three days older than the rest of its batch.
            t -= 3_600 + self.rng.below(3 * 86_400) as i64;
        }
        let t = t.max(WINDOW_END - self.window_secs);
        match self.rng.below(100) {
            0..=84 => Value::String(t.to_string()),
            85..=94 => json!(t),
            _ => {
                let millis = self.rng.below(1000);
                let text = chrono::DateTime::from_timestamp(t, 0)
                    .map(|d| d.format("%Y-%m-%dT%H:%M:%S").to_string())
                    .unwrap_or_default();
                Value::String(format!("{text}.{millis:03}+00:00"))
            }
        }
    }
}

/// Shuffles the fields and appends the element, compact.
pub(super) fn write_element(
    class: &str,
    fields: &mut [(&'static str, Value)],
    rng: &mut Rng,
    out: &mut String,
) {
    for i in (1..fields.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        fields.swap(i, j);
    }
    out.push_str("{\"msys\":{\"");
    out.push_str(class);
    out.push_str("\":{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(key);
        out.push_str("\":");
        push_json(value, out);
    }
    out.push_str("}}}");
}

/// A value's compact JSON with every object's keys in sorted order: the same bytes whether or
/// not serde_json's `preserve_order` feature is on in a build (a workspace build turns it on
/// through another crate's dependency, `cargo build -p sparklake` alone does not).
fn push_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                push_json(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// What `generate` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub events: u64,
    pub bytes: u64,
}

/// Writes `events` events as `DIR/batch-000000.json`, … of `batch_size` elements each (the last
/// may hold fewer).
pub fn generate(events: u64, batch_size: usize, seed: u64, out: &Path) -> anyhow::Result<Summary> {
    generate_from(Generator::new(seed, events), events, batch_size, out)
}

/// [`generate`] from a given generator (see [`Generator::shaped`]).
pub fn generate_from(
    mut generator: Generator,
    events: u64,
    batch_size: usize,
    out: &Path,
) -> anyhow::Result<Summary> {
    anyhow::ensure!(batch_size > 0, "--batch-size must be at least 1");
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut summary = Summary {
        files: 0,
        events: 0,
        bytes: 0,
    };
    while summary.events < events {
        let n = (events - summary.events).min(batch_size as u64) as usize;
        let body = generator.batch(n);
        let path = out.join(format!("batch-{:06}.json", summary.files));
        let mut file =
            fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(body.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        summary.files += 1;
        summary.events += n as u64;
        summary.bytes += body.len() as u64;
    }
    Ok(summary)
}

/// `sparklake gen`: writes the files and prints what it wrote.
pub fn run(generator: Generator, events: u64, batch_size: usize, out: &Path) -> anyhow::Result<()> {
    let s = generate_from(generator, events, batch_size, out)?;
    crate::out!(
        "wrote {} files, {} events, {} bytes ({:.0} bytes/event) to {}",
        s.files,
        s.events,
        s.bytes,
        s.bytes as f64 / s.events.max(1) as f64,
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests;
