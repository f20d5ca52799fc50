//! Writer-shaped queue messages made up in the test: events of one type with ids `<type>-<k>`,
//! so that the same `k` in two messages is the same event (a retry, a late duplicate).

use std::collections::BTreeMap;

use bytes::Bytes;
use sparklake_core::message::{InboundMessage, attr};

pub const DAY: i64 = 86_400_000;
/// 2026-11-20T00:00:00Z.
pub const START: i64 = 1_795_564_800_000;

/// A writer message of `n` events of `event_type` from `first`: ids `<type>-<k>`, a minute
/// apart, spread over two days.
pub fn message(id: &str, event_type: &str, first: u64, n: u64) -> InboundMessage {
    let events: Vec<String> = (first..first + n)
        .map(|k| {
            let t = (START + (k as i64 % 2) * DAY + k as i64 * 60_000) / 1000;
            format!(
                r#"{{"msys":{{"message_event":{{"type":"{event_type}","event_id":"{event_type}-{k}","timestamp":"{t}","rcpt_to":"r{k}@example.com","campaign_id":"c{}","raw_reason":"{}"}}}}}}"#,
                k % 3,
                "x".repeat(200)
            )
        })
        .collect();
    let mut attributes = BTreeMap::new();
    attributes.insert(attr::RECEIVED_AT.to_owned(), (START + 2 * DAY).to_string());
    InboundMessage {
        id: id.to_owned(),
        body: Bytes::from(format!("[{}]", events.join(","))),
        attributes,
        receive_count: 1,
    }
}
