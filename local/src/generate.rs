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
/// The window's length: 30 days.
const WINDOW_SECS: i64 = 30 * 86_400;

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
fn mix(x: u64) -> u64 {
    Rng::new(x).next_u64()
}

/// Generates events in order; `batch` packs the next ones into a JSON array as SparkPost posts it.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    seed: u64,
    total: u64,
    index: u64,
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
            total_weight: TYPES.iter().map(|t| u64::from(t.2)).sum(),
        }
    }

    /// The next `n` events as one compact JSON array.
    pub fn batch(&mut self, n: usize) -> String {
        // The batch's nominal time: events are spread evenly over the window in order.
        let batch_time =
            WINDOW_END - WINDOW_SECS + (WINDOW_SECS as u64 * self.index / self.total) as i64;
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
        for &(event_type, class, weight) in TYPES {
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
        let t = t.max(WINDOW_END - WINDOW_SECS);
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

    /// Appends one element (`{"msys":{"<class>":{...}}}`) to `out`.
    fn event(&mut self, batch_time: i64, out: &mut String) {
        let (event_type, class) = self.pick_type();
        let index = self.index;
        self.index += 1;
        let rng_seed = self.seed;
        // The message this event is about: several events share one, as a message's life does.
        let message_no = self.rng.below(self.total / 3 + 1) ^ (rng_seed << 20);
        let message_hash = mix(message_no);
        let user = message_hash % 5_000_000;
        let domain = *self.rng.pick(&[
            "example.com",
            "example.org",
            "example.net",
            "mail.example.com",
        ]);
        let rcpt = format!("user{user}@{domain}");
        let campaign = *self.rng.pick(&[
            "Summer Sale 2025",
            "Weekly Newsletter",
            "Password Reset",
            "Order Confirmation",
            "Abandoned Cart Reminder",
            "Product Launch: Aurora",
            "Re-engagement Q4",
        ]);
        let subject = *self.rng.pick(&[
            "Summer deals are here!",
            "Your weekly digest from Example Co.",
            "Reset your password",
            "Your order #%s has shipped",
            "You left something in your cart",
            "Meet Aurora — our newest product",
            "We miss you: 20% off your next order",
        ]);
        let customer = 1 + message_hash % 7;
        let subaccount = message_hash % 4 * 100 + 1;
        let sending_ip = format!("192.0.2.{}", 10 + message_hash % 40);
        let ip_pool = *self
            .rng
            .pick(&["default", "transactional", "marketing", "shared"]);
        let message_id = format!("{:020x}", u128::from(message_hash) << 16 | 0x4a5b);
        let transmission_id = (message_hash >> 8).to_string();
        let template = format!("templ-{}", message_hash % 50);
        let sender = format!("news@{}", *self.rng.pick(&["example.com", "example.org"]));

        let mut f: Vec<(&'static str, Value)> = Vec::with_capacity(40);
        f.push(("type", Value::String(event_type.into())));
        let ts = self.timestamp(batch_time);
        f.push(("timestamp", ts));
        if event_type != "sms_status" {
            // Unique per event: a linear function of the index, offset by the seed.
            let id = 100_000_000_000_000_000 + index * 104_729 + rng_seed % 104_729;
            f.push(("event_id", Value::String(id.to_string())));
        }
        let c = self.num(customer);
        f.push(("customer_id", c));
        let s = self.num(subaccount);
        f.push(("subaccount_id", s));

        let is_relay = class == "relay_event";
        let is_gen = class == "gen_event";
        let is_track = class == "track_event";
        if event_type == "sms_status" {
            self.sms_status(&mut f, &sending_ip);
            return write_element(class, &mut f, &mut self.rng, out);
        }
        if is_relay {
            self.relay(event_type, &mut f, &rcpt, &sending_ip, message_hash);
            return write_element(class, &mut f, &mut self.rng, out);
        }

        // Fields every message-level event carries.
        f.push(("campaign_id", Value::String(campaign.into())));
        f.push(("friendly_from", Value::String(sender.clone())));
        f.push((
            "msg_from",
            Value::String(format!("msprvs1=abc{user}={sender}")),
        ));
        f.push(("ip_pool", Value::String(ip_pool.into())));
        f.push(("rcpt_to", Value::String(rcpt.clone())));
        f.push(("raw_rcpt_to", Value::String(rcpt.clone())));
        f.push(("routing_domain", Value::String(domain.into())));
        f.push(("sending_ip", Value::String(sending_ip.clone())));
        f.push(("template_id", Value::String(template)));
        let tv = self.num(1 + message_hash % 3);
        f.push(("template_version", tv));
        f.push(("transmission_id", Value::String(transmission_id)));
        f.push(("rcpt_meta", self.rcpt_meta(user)));
        f.push(("rcpt_tags", self.rcpt_tags()));
        if !is_gen {
            f.push(("message_id", Value::String(message_id)));
            if self.rng.chance(30) {
                f.push(("rcpt_type", Value::String("cc".into())));
            }
        }
        if !is_gen || event_type == "generation_rejection" {
            f.push(("subject", Value::String(subject.into())));
        }
        if event_type != "policy_rejection" && !is_gen {
            let size = 2_000 + self.rng.below(60_000);
            let size = self.num(size);
            f.push(("msg_size", size));
            f.push(("sending_domain", Value::String("mail.example.com".into())));
        }
        let delivered_ish = !matches!(
            event_type,
            "injection" | "policy_rejection" | "generation_failure" | "generation_rejection"
        );
        if delivered_ish {
            f.push(("delv_method", Value::String("esmtp".into())));
            let retries = if self.rng.chance(900) {
                0
            } else {
                1 + self.rng.below(5)
            };
            let retries = self.num(retries);
            f.push(("num_retries", retries));
            if event_type != "bounce" {
                let qt = self.rng.below(90_000);
                let qt = self.num(qt);
                f.push(("queue_time", qt));
            }
            f.push((
                "mailbox_provider",
                Value::String(
                    (*self
                        .rng
                        .pick(&["Gmail", "Yahoo", "Hotmail / Outlook", "Apple", "Other"]))
                    .into(),
                ),
            ));
        }
        if delivered_ish && !is_track {
            f.push((
                "ip_address",
                Value::String(format!("198.51.100.{}", user % 250)),
            ));
        }
        match event_type {
            "injection" => {
                f.push(("recv_method", Value::String("rest".into())));
                f.push(("click_tracking", Value::Bool(true)));
                f.push(("open_tracking", Value::Bool(true)));
                f.push(("initial_pixel", Value::Bool(true)));
            }
            "delivery" => {
                f.push(("outbound_tls", Value::String("1".into())));
                f.push(("recv_method", Value::String("rest".into())));
            }
            "bounce" | "delay" | "out_of_band" | "policy_rejection" | "generation_rejection" => {
                self.failure(event_type, &mut f);
                if event_type == "policy_rejection" {
                    f.push(("remote_addr", Value::String("203.0.113.7".into())));
                }
            }
            "generation_failure" => {
                let code = self.num(554);
                f.push(("error_code", code));
                f.push((
                    "reason",
                    Value::String("554 - Substitution error: missing data for 'first_name'".into()),
                ));
                f.push((
                    "raw_reason",
                    Value::String("554 - Substitution error: missing data for 'first_name'".into()),
                ));
            }
            "spam_complaint" => {
                f.push(("fbtype", Value::String("abuse".into())));
                f.push(("report_by", Value::String(format!("fbl@{domain}"))));
                f.push(("report_to", Value::String("abuse@example.com".into())));
                f.push(("user_str", Value::String("Feedback-Type: abuse".into())));
            }
            "list_unsubscribe" | "link_unsubscribe" => {
                f.push(("mailfrom", Value::String(format!("unsubscribe@{domain}"))));
                if event_type == "link_unsubscribe" {
                    f.push(("user_agent", Value::String(self.user_agent().into())));
                }
            }
            _ => {}
        }
        if is_gen {
            f.push(("rcpt_subs", json!({"first_name": null, "plan": "basic"})));
        }
        if is_track {
            f.push((
                "ip_address",
                Value::String(format!("203.0.113.{}", user % 250)),
            ));
            f.push(("user_agent", Value::String(self.user_agent().into())));
            f.push(("geo_ip", self.geo_ip()));
            if event_type.ends_with("click") {
                f.push(("target_link_name", Value::String("Shop now".into())));
                f.push((
                    "target_link_url",
                    Value::String(format!(
                        "https://www.example.com/shop/item-{}?utm_source=email&utm_campaign=c{}",
                        self.rng.below(5_000),
                        message_hash % 100
                    )),
                ));
            }
        }
        write_element(class, &mut f, &mut self.rng, out)
    }

    /// bounce_class, error_code, reason and raw_reason of a failed or delayed delivery.
    fn failure(&mut self, event_type: &str, f: &mut Vec<(&'static str, Value)>) {
        let (class, code, reason) = match event_type {
            "delay" => (22, 421, "421 4.7.0 Try again later, closing connection."),
            "policy_rejection" => (25, 554, "554 5.7.1 Message generation rejected"),
            "generation_rejection" => (25, 554, "554 5.7.1 recipient address suppressed"),
            _ => *self.rng.pick(&[
                (
                    10,
                    550,
                    "550 5.1.1 The email account that you tried to reach does not exist.",
                ),
                (
                    10,
                    550,
                    "550 5.1.1 <user@example.com>: Recipient address rejected",
                ),
                (30, 550, "550 5.0.0 No such user (mailbox unavailable)"),
                (
                    21,
                    552,
                    "552 5.2.2 The email account that you tried to reach is over quota.",
                ),
                (
                    50,
                    554,
                    "554 5.7.1 Message rejected due to content restrictions",
                ),
                (
                    51,
                    554,
                    "554 5.7.1 Service unavailable; Client host blocked using Spamhaus",
                ),
            ]),
        };
        let bc = self.num(class);
        f.push(("bounce_class", bc));
        let ec = self.num(code);
        f.push(("error_code", ec));
        f.push(("reason", Value::String(reason.into())));
        f.push((
            "raw_reason",
            Value::String(format!("{reason} - gsmtp mx.example.net [192.0.2.1]")),
        ));
    }

    fn sms_status(&mut self, f: &mut Vec<(&'static str, Value)>, sending_ip: &str) {
        let dst = format!("1555{:07}", self.rng.below(10_000_000));
        f.push(("delv_method", Value::String("sms".into())));
        f.push(("dr_latency", Value::String("1.35".into())));
        f.push(("ip_address", Value::String("198.51.100.9".into())));
        f.push(("ip_pool", Value::String("sms".into())));
        f.push(("raw_reason", Value::String("000".into())));
        f.push(("reason", Value::String("000".into())));
        f.push(("routing_domain", Value::String("sms-gateway".into())));
        f.push(("sending_ip", Value::String(sending_ip.into())));
        f.push(("sms_dst", Value::String(dst)));
        f.push(("sms_dst_npi", Value::String("E164".into())));
        f.push(("sms_dst_ton", Value::String("International".into())));
        f.push(("sms_remoteids", json!(["0000", "0001"])));
        f.push(("sms_src", Value::String("1234".into())));
        f.push(("sms_src_npi", Value::String("E164".into())));
        f.push(("sms_src_ton", Value::String("Unknown".into())));
        f.push((
            "sms_text",
            Value::String("Your verification code is 123456".into()),
        ));
        f.push(("stat_state", Value::String("DELIVRD".into())));
        f.push(("stat_type", Value::String("SMSC Delivery".into())));
    }

    fn relay(
        &mut self,
        event_type: &str,
        f: &mut Vec<(&'static str, Value)>,
        rcpt: &str,
        sending_ip: &str,
        message_hash: u64,
    ) {
        f.push((
            "relay_id",
            Value::String(format!("relay-{}", message_hash % 20)),
        ));
        f.push((
            "msg_from",
            Value::String(format!("sender{}@example.org", message_hash % 900)),
        ));
        if event_type != "relay_rejection" {
            f.push(("ip_pool", Value::String("relay".into())));
            f.push((
                "routing_domain",
                Value::String("inbound.example.com".into()),
            ));
            f.push(("sending_ip", Value::String(sending_ip.into())));
        }
        if matches!(event_type, "relay_injection" | "relay_rejection") {
            f.push(("rcpt_to", Value::String(rcpt.into())));
            f.push(("raw_rcpt_to", Value::String(rcpt.into())));
        }
        if event_type == "relay_injection" {
            let size = 1_000 + self.rng.below(40_000);
            let size = self.num(size);
            f.push(("msg_size", size));
        }
        if matches!(
            event_type,
            "relay_delivery" | "relay_tempfail" | "relay_permfail"
        ) {
            f.push(("delv_method", Value::String("esmtp".into())));
            let r = self.rng.below(3);
            let r = self.num(r);
            f.push(("num_retries", r));
            let q = self.rng.below(5_000);
            let q = self.num(q);
            f.push(("queue_time", q));
        }
        if matches!(
            event_type,
            "relay_rejection" | "relay_tempfail" | "relay_permfail"
        ) {
            let code = self.num(if event_type == "relay_tempfail" {
                421
            } else {
                550
            });
            f.push(("error_code", code));
            let reason = "550 5.1.1 relay webhook endpoint refused the message";
            f.push(("reason", Value::String(reason.into())));
            f.push(("raw_reason", Value::String(reason.into())));
        }
        if event_type == "relay_rejection" {
            let bc = self.num(1);
            f.push(("bounce_class", bc));
            f.push(("remote_addr", Value::String("203.0.113.50".into())));
        }
    }

    fn rcpt_meta(&mut self, user: u64) -> Value {
        let mut meta = serde_json::Map::new();
        meta.insert("user_id".into(), Value::String(user.to_string()));
        if self.rng.chance(600) {
            let tier = *self.rng.pick(&["free", "basic", "pro", "enterprise"]);
            meta.insert("plan".into(), Value::String(tier.into()));
        }
        if self.rng.chance(300) {
            meta.insert(
                "signup".into(),
                json!({"source": *self.rng.pick(&["web", "ios", "android"]), "year": 2019 + self.rng.below(7)}),
            );
        }
        Value::Object(meta)
    }

    fn rcpt_tags(&mut self) -> Value {
        let all = [
            "newsletter",
            "promo",
            "vip",
            "US",
            "EU",
            "beta",
            "transactional",
        ];
        let n = self.rng.below(4) as usize;
        Value::Array(
            (0..n)
                .map(|_| Value::String((*self.rng.pick(&all)).into()))
                .collect(),
        )
    }

    fn user_agent(&mut self) -> &'static str {
        const AGENTS: &[&str] = &[
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Mozilla/5.0 (compatible; GoogleImageProxy)",
        ];
        AGENTS[self.rng.below(AGENTS.len() as u64) as usize]
    }

    fn geo_ip(&mut self) -> Value {
        let (country, region, city, lat, lon) = *self.rng.pick(&[
            ("US", "MD", "Columbia", 39.1749, -76.8375),
            ("US", "CA", "San Francisco", 37.7749, -122.4194),
            ("GB", "ENG", "London", 51.5072, -0.1276),
            ("DE", "BE", "Berlin", 52.52, 13.405),
            ("BR", "SP", "São Paulo", -23.5505, -46.6333),
            ("JP", "13", "Tokyo", 35.6762, 139.6503),
        ]);
        json!({
            "country": country,
            "region": region,
            "city": city,
            "latitude": lat,
            "longitude": lon,
            "zip": 21_046,
            "postal_code": "21046",
        })
    }
}

/// Shuffles the fields and appends the element, compact.
fn write_element(
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
        out.push_str(&value.to_string());
    }
    out.push_str("}}}");
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
    anyhow::ensure!(batch_size > 0, "--batch-size must be at least 1");
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut generator = Generator::new(seed, events);
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
pub fn run(events: u64, batch_size: usize, seed: u64, out: &Path) -> anyhow::Result<()> {
    let s = generate(events, batch_size, seed, out)?;
    println!(
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
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use sparklake_core::envelope::validate;
    use sparklake_core::event::Event;

    use super::*;

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| {
                let path = e.expect("entry").path();
                let name = path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned();
                (name, fs::read(&path).expect("read"))
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn same_seed_same_bytes_and_different_seed_different_bytes() {
        let (a, b, c) = (
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
        );
        generate(1_000, 300, 7, a.path()).expect("gen");
        generate(1_000, 300, 7, b.path()).expect("gen");
        generate(1_000, 300, 8, c.path()).expect("gen");
        assert_eq!(files(a.path()), files(b.path()));
        assert_ne!(files(a.path()), files(c.path()));
    }

    #[test]
    fn ten_thousand_events_validate_parse_and_cover_every_type() {
        let dir = tempfile::tempdir().expect("tmp");
        let summary = generate(10_000, 350, 42, dir.path()).expect("gen");
        assert_eq!(summary.events, 10_000);
        assert_eq!(summary.files, 29);
        let per_event = summary.bytes / summary.events;
        assert!(
            (700..=1_500).contains(&per_event),
            "{per_event} bytes/event"
        );

        let files = files(dir.path());
        assert_eq!(files.len(), 29);
        assert_eq!(files[0].0, "batch-000000.json");
        let mut counts = BTreeMap::<String, usize>::new();
        let mut ids = HashSet::new();
        let mut message_ids = HashSet::new();
        let mut total = 0;
        let (mut iso, mut int, mut string) = (0, 0, 0);
        for (i, (name, body)) in files.iter().enumerate() {
            let batch = validate(body).unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = if i == 28 { 10_000 - 28 * 350 } else { 350 };
            assert_eq!(batch.elements.len(), expected, "{name}");
            for (element, head) in batch.events() {
                total += 1;
                let event = Event::parse(element.raw)
                    .expect("parses")
                    .expect("not a ping");
                assert_eq!(event.head, *head);
                let class = TYPES
                    .iter()
                    .find(|t| t.0 == head.event_type)
                    .map(|t| t.1)
                    .expect("known type");
                assert_eq!(head.class, class);
                assert!(event.timestamp_millis().is_some(), "{}", element.raw);
                match event.fields.event_id.as_deref() {
                    Some(id) => {
                        assert_ne!(head.event_type, "sms_status");
                        assert!(id.bytes().all(|b| b.is_ascii_digit()));
                        assert!(ids.insert(id.to_owned()), "duplicate event_id {id}");
                    }
                    None => assert_eq!(head.event_type, "sms_status", "{}", element.raw),
                }
                if let Some(m) = event.fields.message_id.as_deref() {
                    message_ids.insert(m.to_owned());
                }
                let value: serde_json::Value = serde_json::from_str(element.raw).expect("json");
                match &value["msys"][class]["timestamp"] {
                    serde_json::Value::Number(_) => int += 1,
                    serde_json::Value::String(s) if s.contains('T') => iso += 1,
                    _ => string += 1,
                }
                *counts.entry(head.event_type.to_string()).or_default() += 1;
            }
        }
        assert_eq!(total, 10_000);
        for (event_type, _, _) in TYPES {
            assert!(
                counts.contains_key(*event_type),
                "no {event_type}: {counts:?}"
            );
        }
        assert!(
            message_ids.len() > 1_000,
            "{} message ids",
            message_ids.len()
        );
        assert!(
            string > 8_000 && int > 500 && iso > 200,
            "{string} {int} {iso}"
        );
    }
}
