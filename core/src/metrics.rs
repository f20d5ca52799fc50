//! The pipeline's numbers, and their CloudWatch Embedded Metric Format: one JSON line on stdout
//! that CloudWatch turns into metrics with no API call.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The metrics of the totals line, with their units (dimension `Function`).
pub const TOTALS: &[(&str, &str)] = &[
    ("Batches", "Count"),
    ("Bytes", "Bytes"),
    ("EventsIn", "Count"),
    ("Rejected", "Count"),
    ("Failures", "Count"),
    ("Retries", "Count"),
    ("ObjectsWritten", "Count"),
    ("RowsWritten", "Count"),
    ("RowsPerObject", "Count"),
    ("OldestEventAgeSeconds", "Seconds"),
    ("ProjectionTypesAdded", "Count"),
    ("UnprojectedTypes", "Count"),
    ("QuarantineOverBudget", "Count"),
];

/// What one invocation (or one interval of a long-running process) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Events received, per event type.
    pub events_in: BTreeMap<String, u64>,
    /// Batches (webhook posts, or queue messages) handled.
    pub batches: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Batches refused as malformed or unauthenticated (4xx).
    pub rejected: u64,
    /// Infrastructure failures: 5xx answers and messages reported failed.
    pub failures: u64,
    /// Objects written, with their row counts.
    pub rows_per_object: Vec<u64>,
    /// The earliest event time among rows written (unix ms): how far behind real time the lake is.
    pub oldest_event_millis: Option<i64>,
    /// Calls to AWS the SDK retried (attempts after the first: throttling, 5xx, dropped
    /// connections); the ones that still failed are also in `failures` or the logs.
    #[serde(default)]
    pub retries: u64,
    /// Event types the writer added to the tables' projection.
    #[serde(default)]
    pub projection_types_added: u64,
    /// Event types written that the tables cannot see (no projection can hold them): an alarm
    /// fires on any.
    #[serde(default)]
    pub unprojected_types: u64,
    /// Messages moved to a dead-letter queue (locally; on AWS SQS moves them, and the DLQ
    /// alarms watch their depth).
    #[serde(default)]
    pub dead_lettered: u64,
    /// Refused bodies not kept because the quarantine was over its budget (their reasons are,
    /// while the allowance lasts).
    #[serde(default)]
    pub quarantine_over_budget: u64,
}

impl Metrics {
    pub fn objects_written(&self) -> u64 {
        self.rows_per_object.len() as u64
    }

    pub fn rows_written(&self) -> u64 {
        self.rows_per_object.iter().sum()
    }

    pub fn events(&self) -> u64 {
        self.events_in.values().sum()
    }

    pub fn add_events(&mut self, event_type: &str, n: u64) {
        *self.events_in.entry(event_type.to_owned()).or_default() += n;
    }

    pub fn merge(&mut self, other: &Metrics) {
        for (t, n) in &other.events_in {
            self.add_events(t, *n);
        }
        self.batches += other.batches;
        self.bytes += other.bytes;
        self.rejected += other.rejected;
        self.failures += other.failures;
        self.retries += other.retries;
        self.projection_types_added += other.projection_types_added;
        self.unprojected_types += other.unprojected_types;
        self.dead_lettered += other.dead_lettered;
        self.quarantine_over_budget += other.quarantine_over_budget;
        self.rows_per_object
            .extend_from_slice(&other.rows_per_object);
        self.oldest_event_millis = match (self.oldest_event_millis, other.oldest_event_millis) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Seconds between the oldest event written and `now`.
    pub fn oldest_event_age_seconds(&self, now_millis: i64) -> Option<f64> {
        self.oldest_event_millis
            .map(|t| (now_millis.saturating_sub(t)).max(0) as f64 / 1000.0)
    }

    /// EMF lines: the totals with dimension `Function`, and events per `EventType`.
    pub fn to_emf(&self, namespace: &str, function: &str, now_millis: i64) -> Vec<String> {
        let directive = |dimensions: Value, metrics: Value| {
            json!({"Timestamp": now_millis, "CloudWatchMetrics": [{
                "Namespace": namespace, "Dimensions": dimensions, "Metrics": metrics
            }]})
        };
        let mut totals = json!({
            "_aws": directive(json!([["Function"]]), Value::Array(
                TOTALS
                    .iter()
                    .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
                    .collect(),
            )),
            "Function": function,
            "Batches": self.batches,
            "Bytes": self.bytes,
            "EventsIn": self.events(),
            "Rejected": self.rejected,
            "Failures": self.failures,
            "Retries": self.retries,
            "ObjectsWritten": self.objects_written(),
            "RowsWritten": self.rows_written(),
            "ProjectionTypesAdded": self.projection_types_added,
            "UnprojectedTypes": self.unprojected_types,
            "QuarantineOverBudget": self.quarantine_over_budget,
        });
        if !self.rows_per_object.is_empty() {
            totals["RowsPerObject"] = json!(self.rows_per_object);
        }
        if let Some(age) = self.oldest_event_age_seconds(now_millis) {
            totals["OldestEventAgeSeconds"] = json!(age);
        }
        let mut lines = vec![totals.to_string()];
        for (event_type, n) in &self.events_in {
            lines.push(
                json!({
                    "_aws": directive(json!([["Function", "EventType"]]), json!([{"Name": "EventsIn", "Unit": "Count"}])),
                    "Function": function,
                    "EventType": event_type,
                    "EventsIn": n,
                })
                .to_string(),
            );
        }
        lines
    }

    /// One line for people.
    pub fn summary(&self, now_millis: i64) -> String {
        let age = self
            .oldest_event_age_seconds(now_millis)
            .map_or("-".to_owned(), |s| format!("{s:.0}s"));
        format!(
            "batches {} bytes {} events {} rejected {} failures {} objects {} rows {} oldest-event-age {age} retries {} dead-lettered {}",
            self.batches,
            self.bytes,
            self.events(),
            self.rejected,
            self.failures,
            self.objects_written(),
            self.rows_written(),
            self.retries,
            self.dead_lettered,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_carries_every_number_under_its_directive() {
        let mut m = Metrics::default();
        m.add_events("bounce", 2);
        m.add_events("delivery", 5);
        m.batches = 1;
        m.bytes = 1234;
        m.rows_per_object = vec![2, 5];
        m.oldest_event_millis = Some(1_000);
        let lines = m.to_emf("Sparklake", "writer", 61_000);
        assert_eq!(lines.len(), 3);
        let totals: Value = serde_json::from_str(&lines[0]).expect("json");
        assert_eq!(totals["EventsIn"], 7);
        assert_eq!(totals["RowsWritten"], 7);
        assert_eq!(totals["ObjectsWritten"], 2);
        assert_eq!(totals["RowsPerObject"], json!([2, 5]));
        assert_eq!(totals["OldestEventAgeSeconds"], 60.0);
        assert_eq!(totals["_aws"]["Timestamp"], 61_000);
        let names: Vec<&str> = totals["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        for name in names {
            if name != "RowsPerObject" && name != "OldestEventAgeSeconds" {
                assert!(totals.get(name).is_some(), "{name} declared but missing");
            }
        }
        let bounce: Value = serde_json::from_str(&lines[1]).expect("json");
        assert_eq!(
            (bounce["EventType"].as_str(), bounce["EventsIn"].as_u64()),
            (Some("bounce"), Some(2))
        );
    }

    #[test]
    fn merge_adds_and_keeps_the_oldest() {
        let mut a = Metrics {
            batches: 1,
            oldest_event_millis: Some(50),
            ..Metrics::default()
        };
        a.add_events("open", 1);
        let mut b = Metrics {
            batches: 2,
            oldest_event_millis: Some(20),
            rows_per_object: vec![3],
            ..Metrics::default()
        };
        b.add_events("open", 2);
        a.merge(&b);
        assert_eq!(
            (
                a.batches,
                a.events(),
                a.rows_written(),
                a.oldest_event_millis
            ),
            (3, 3, 3, Some(20))
        );
    }
}
