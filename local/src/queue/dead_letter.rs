//! When the local queue moves a message to its dead-letter queue: SQS's redrive policy
//! (`maxReceiveCount`), with one exception of its own. A pure function of the message's receive
//! count and the data folder's recent storage faults; the SQL only carries the decision out.

use std::time::Duration;

/// How long after a storage fault a message that has used its receives is still delivered
/// rather than dead-lettered, beyond twice its visibility timeout: its last delivery, which may
/// have failed for that fault, began at most about one visibility timeout (plus the time it was
/// worked on) before it became visible again.
pub const STORAGE_FAULT_GRACE: Duration = Duration::from_secs(60);

/// What a receive does with a visible message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Hand it out.
    Deliver,
    /// It has been received `max_receives` times without being deleted: move it to the
    /// dead-letter queue instead.
    DeadLetter,
    /// It has used its receives, but the data folder refused writes recently (full, read-only):
    /// its failures may have been the storage's, not the message's, so it is delivered again.
    Spare,
}

/// The policy of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterPolicy {
    /// Receives a message gets; `0` is taken as `1`.
    pub max_receives: u32,
    /// The queue's visibility timeout.
    pub visibility_timeout: Duration,
}

impl DeadLetterPolicy {
    /// Whether the last storage fault (unix ms) is recent enough at `now` (unix ms) that a
    /// message's failures may have been caused by it.
    pub fn in_storage_outage(&self, last_fault_millis: Option<i64>, now_millis: i64) -> bool {
        let grace = millis(self.visibility_timeout)
            .saturating_mul(2)
            .saturating_add(millis(STORAGE_FAULT_GRACE));
        last_fault_millis.is_some_and(|t| now_millis.saturating_sub(t) <= grace)
    }

    /// What to do with a visible message received `receive_count` times so far.
    pub fn disposition(&self, receive_count: i64, storage_outage: bool) -> Disposition {
        if receive_count < i64::from(self.max_receives.max(1)) {
            Disposition::Deliver
        } else if storage_outage {
            Disposition::Spare
        } else {
            Disposition::DeadLetter
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: DeadLetterPolicy = DeadLetterPolicy {
        max_receives: 3,
        visibility_timeout: Duration::from_secs(30),
    };

    #[test]
    fn a_message_is_dead_lettered_once_it_has_used_its_receives() {
        assert_eq!(POLICY.disposition(0, false), Disposition::Deliver);
        assert_eq!(POLICY.disposition(2, false), Disposition::Deliver);
        assert_eq!(POLICY.disposition(3, false), Disposition::DeadLetter);
        assert_eq!(POLICY.disposition(40, false), Disposition::DeadLetter);
        // Zero receives would dead-letter every message unseen: it means one.
        let zero = DeadLetterPolicy {
            max_receives: 0,
            ..POLICY
        };
        assert_eq!(zero.disposition(0, false), Disposition::Deliver);
        assert_eq!(zero.disposition(1, false), Disposition::DeadLetter);
    }

    #[test]
    fn during_a_storage_outage_it_is_delivered_again_instead() {
        assert_eq!(POLICY.disposition(3, true), Disposition::Spare);
        assert_eq!(POLICY.disposition(2, true), Disposition::Deliver);
    }

    #[test]
    fn an_outage_lasts_twice_the_visibility_timeout_and_a_minute_after_the_last_fault() {
        let now = 1_000_000_000;
        let window = 2 * 30_000 + 60_000;
        assert!(!POLICY.in_storage_outage(None, now));
        assert!(POLICY.in_storage_outage(Some(now), now));
        assert!(POLICY.in_storage_outage(Some(now - window), now));
        assert!(!POLICY.in_storage_outage(Some(now - window - 1), now));
        // A fault "in the future" (a clock step back) still counts as recent.
        assert!(POLICY.in_storage_outage(Some(now + 5_000), now));
    }
}
