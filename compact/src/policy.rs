//! When a partition is compacted and what one job merges: pure functions of a partition's
//! listing, the settings and the time, unit-tested here.

use std::time::Duration;

use sparklake_core::ports::ObjectInfo;

/// The prefix of every object name the compactor writes (`c-<hash>-<n>`); the writer's names are
/// bare hex digests, so the two never meet.
pub const COMPACTED_PREFIX: &str = "c-";

/// Every variable [`Policy::from_lookup`] reads (the README's configuration table is tested
/// against these lists).
pub const VARIABLES: &[&str] = &[
    "SPARKLAKE_COMPACT_MIN_OBJECTS",
    "SPARKLAKE_COMPACT_SETTLE_SECS",
    "SPARKLAKE_COMPACT_TARGET_BYTES",
    "SPARKLAKE_COMPACT_MAX_INPUTS",
    "SPARKLAKE_COMPACT_MAX_INPUT_BYTES",
    "SPARKLAKE_COMPACT_LEASE_SECS",
];

/// The compaction policy (defaults in the README's configuration table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// A partition holding at least this many small objects is compacted at once
    /// (`SPARKLAKE_COMPACT_MIN_OBJECTS`).
    pub min_objects: usize,
    /// ...and one whose oldest small object is at least this old, whatever their number
    /// (`SPARKLAKE_COMPACT_SETTLE_SECS`).
    pub settle: Duration,
    /// Objects at least this large are left as they are; outputs are closed once they reach it
    /// (`SPARKLAKE_COMPACT_TARGET_BYTES`).
    pub target_bytes: u64,
    /// Objects one job merges at the most: it bounds the files open and the rows in memory at
    /// once (`SPARKLAKE_COMPACT_MAX_INPUTS`). A partition with more is merged over several
    /// jobs.
    pub max_inputs: usize,
    /// Bytes one job reads at the most (beyond its first two objects), so that a job fits in a
    /// Lambda invocation (`SPARKLAKE_COMPACT_MAX_INPUT_BYTES`).
    pub max_input_bytes: u64,
    /// How long a partition's lease lasts without renewal: a compactor that died holding it
    /// blocks that partition this long on S3 (`SPARKLAKE_COMPACT_LEASE_SECS`; locally the lock
    /// dies with its process).
    pub lease: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_objects: 10,
            settle: Duration::from_secs(15 * 60),
            target_bytes: 128 * 1024 * 1024,
            max_inputs: 64,
            max_input_bytes: 1024 * 1024 * 1024,
            lease: Duration::from_secs(15 * 60),
        }
    }
}

impl Policy {
    /// Reads the variables above through `lookup` (unset or blank: the default).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let d = Self::default();
        let number = |name: &str, default: u64, min: u64| -> Result<u64, String> {
            match lookup(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => Err(format!(
                        "{name}: `{v}` is not a whole number of at least {min}"
                    )),
                },
            }
        };
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(Self {
            min_objects: to_usize(number(VARIABLES[0], d.min_objects as u64, 2)?),
            settle: Duration::from_secs(number(VARIABLES[1], d.settle.as_secs(), 0)?),
            target_bytes: number(VARIABLES[2], d.target_bytes, 1024)?,
            max_inputs: to_usize(number(VARIABLES[3], d.max_inputs as u64, 2)?),
            max_input_bytes: number(VARIABLES[4], d.max_input_bytes, 1)?,
            lease: Duration::from_secs(number(VARIABLES[5], d.lease.as_secs(), 10)?),
        })
    }

    /// Whether an object is merged: one below the target size, or one the writer wrote (a
    /// writer call large enough to reach the target may still hold rows other objects hold).
    /// Only the compactor's own outputs at target size are settled, and left as they are.
    pub fn is_pending(&self, object: &ObjectInfo) -> bool {
        object.size < self.target_bytes || !is_compacted(&object.key)
    }

    /// The next job for a partition holding `objects`, at `now_millis`; `None` when there is
    /// nothing to do. With `all`, the thresholds (count, settle time) do not apply.
    pub fn plan(&self, objects: &[ObjectInfo], now_millis: i64, all: bool) -> Option<Job> {
        let (mut pending, settled): (Vec<&ObjectInfo>, Vec<&ObjectInfo>) =
            objects.iter().partition(|o| self.is_pending(o));
        // One small object is only worth rewriting when it was never checked against the
        // partition's large objects: a writer's (a late event, a retry of one compacted last
        // week), or a compacted one older than one of them (left so by a version of this
        // policy that did not take compacted remainders first, below).
        let unchecked = pending.iter().any(|o| {
            !is_compacted(&o.key)
                || settled
                    .iter()
                    .any(|s| s.modified_millis > o.modified_millis)
        });
        let worth = pending.len() >= 2 || (unchecked && !settled.is_empty());
        if !worth {
            return None;
        }
        let settle_millis = i64::try_from(self.settle.as_millis()).unwrap_or(i64::MAX);
        let due = all
            || pending.len() >= self.min_objects
            || pending
                .iter()
                .any(|o| now_millis.saturating_sub(o.modified_millis) >= settle_millis);
        if !due {
            return None;
        }
        // Compacted remainders first, then the writer's objects oldest first. A job's outputs
        // are checked only against its inputs and the objects at target size, so an output that
        // reaches the target while a compacted remainder is left out could hold rows that
        // remainder holds, and neither would be merged again. Taking the remainders in every
        // job keeps one at the most per partition (the last job's), always in the next job.
        pending.sort_by(|a, b| {
            (!is_compacted(&a.key), a.modified_millis, &a.key).cmp(&(
                !is_compacted(&b.key),
                b.modified_millis,
                &b.key,
            ))
        });
        let mut inputs: Vec<ObjectInfo> = Vec::new();
        let mut bytes = 0u64;
        for object in pending {
            let over =
                inputs.len() >= 2 && bytes.saturating_add(object.size) > self.max_input_bytes;
            if inputs.len() >= self.max_inputs || over {
                break;
            }
            bytes = bytes.saturating_add(object.size);
            inputs.push(object.clone());
        }
        inputs.sort_by(|a, b| a.key.cmp(&b.key));
        Some(Job {
            inputs,
            settled: settled.into_iter().cloned().collect(),
        })
    }
}

/// One merge: the small objects it reads and rewrites, and the partition's objects at target
/// size whose identities it must not write again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// In key order.
    pub inputs: Vec<ObjectInfo>,
    pub settled: Vec<ObjectInfo>,
}

impl Job {
    pub fn input_bytes(&self) -> u64 {
        self.inputs.iter().map(|o| o.size).sum()
    }
}

/// Whether the compactor wrote this object (its name starts with [`COMPACTED_PREFIX`]).
pub fn is_compacted(key: &str) -> bool {
    key.rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with(COMPACTED_PREFIX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn object(name: &str, size: u64, modified_millis: i64) -> ObjectInfo {
        ObjectInfo {
            key: format!("parquet/event_type=delivery/dt=2026-12-01/{name}.parquet"),
            size,
            modified_millis,
        }
    }

    fn policy() -> Policy {
        Policy {
            min_objects: 4,
            settle: Duration::from_secs(600),
            target_bytes: 1000,
            max_inputs: 3,
            max_input_bytes: 1500,
            lease: Duration::from_secs(60),
        }
    }

    fn names(objects: &[ObjectInfo]) -> Vec<&str> {
        objects
            .iter()
            .map(|o| o.key.rsplit('/').next().unwrap())
            .collect()
    }

    #[test]
    fn nothing_to_merge_is_left_alone() {
        let p = policy();
        let now = 100 * MIN;
        assert_eq!(p.plan(&[], now, true), None);
        // One object, however old.
        assert_eq!(p.plan(&[object("a", 10, 0)], now, true), None);
        // Objects at target size.
        assert_eq!(
            p.plan(
                &[object("c-1-0", 1000, 0), object("c-2-0", 5000, 0)],
                now,
                true
            ),
            None
        );
        // A compacted remainder beside them was already checked against them.
        assert_eq!(
            p.plan(
                &[object("c-1-0", 1000, 0), object("c-1-1", 10, 0)],
                now,
                true
            ),
            None
        );
    }

    #[test]
    fn thresholds_decide_unless_all() {
        let p = policy();
        let young = [object("a", 10, 99 * MIN), object("b", 10, 99 * MIN)];
        assert_eq!(
            p.plan(&young, 100 * MIN, false),
            None,
            "two young objects wait"
        );
        assert!(
            p.plan(&young, 100 * MIN, true).is_some(),
            "--all merges them"
        );
        assert!(
            p.plan(&young, 109 * MIN, false).is_some(),
            "settled after 10 minutes"
        );
        let many: Vec<ObjectInfo> = (0..4)
            .map(|i| object(&format!("o{i}"), 10, 99 * MIN))
            .collect();
        assert!(
            p.plan(&many, 100 * MIN, false).is_some(),
            "K young objects are merged"
        );
    }

    #[test]
    fn a_late_event_beside_large_objects_is_merged_alone() {
        let p = policy();
        let objects = [object("c-1-0", 2000, 0), object("late", 10, 0)];
        let job = p.plan(&objects, 100 * MIN, false).unwrap();
        assert_eq!(names(&job.inputs), ["late.parquet"]);
        assert_eq!(names(&job.settled), ["c-1-0.parquet"]);
    }

    #[test]
    fn a_job_is_bounded_oldest_first() {
        let p = policy();
        let objects = [
            object("d", 10, 4),
            object("a", 10, 3),
            object("b", 10, 1),
            object("c", 10, 2),
            object("big", 999, 0),
        ];
        // Oldest first: big (0), b (1), c (2); max_inputs 3.
        let job = p.plan(&objects, 100 * MIN, true).unwrap();
        assert_eq!(
            names(&job.inputs),
            ["b.parquet", "big.parquet", "c.parquet"]
        );
        // The byte bound stops after the first two: 999 + 800 > 1500.
        let objects = [
            object("a", 999, 0),
            object("b", 800, 1),
            object("c", 800, 2),
        ];
        let job = p.plan(&objects, 100 * MIN, true).unwrap();
        assert_eq!(names(&job.inputs), ["a.parquet", "b.parquet"]);
    }

    #[test]
    fn a_compacted_remainder_is_in_every_job() {
        let p = policy();
        // The remainder is the newest object, yet it comes before the writer's older ones.
        let objects = [
            object("a", 10, 1),
            object("b", 10, 2),
            object("c", 10, 3),
            object("c-1-1", 10, 9),
        ];
        let job = p.plan(&objects, 100 * MIN, true).unwrap();
        assert_eq!(
            names(&job.inputs),
            ["a.parquet", "b.parquet", "c-1-1.parquet"]
        );
    }

    #[test]
    fn a_compacted_remainder_older_than_a_large_object_is_checked_against_it() {
        let p = policy();
        // c-1-1 was written before c-2-0 reached the target: never checked against it.
        let objects = [object("c-1-1", 10, 5), object("c-2-0", 2000, 6)];
        let job = p.plan(&objects, 100 * MIN, true).unwrap();
        assert_eq!(names(&job.inputs), ["c-1-1.parquet"]);
        assert_eq!(names(&job.settled), ["c-2-0.parquet"]);
        // Written after it (the same job's remainder, or a later one): left alone.
        let objects = [object("c-1-1", 10, 7), object("c-2-0", 2000, 6)];
        assert_eq!(p.plan(&objects, 100 * MIN, true), None);
    }

    #[test]
    fn settings_read_and_refused() {
        let read = |pairs: &'static [(&'static str, &'static str)]| {
            Policy::from_lookup(|n| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        assert_eq!(read(&[]).unwrap(), Policy::default());
        let p = read(&[
            ("SPARKLAKE_COMPACT_MIN_OBJECTS", "3"),
            ("SPARKLAKE_COMPACT_TARGET_BYTES", "2048"),
            ("SPARKLAKE_COMPACT_SETTLE_SECS", "0"),
        ])
        .unwrap();
        assert_eq!(
            (p.min_objects, p.target_bytes, p.settle.as_secs()),
            (3, 2048, 0)
        );
        assert!(read(&[("SPARKLAKE_COMPACT_MIN_OBJECTS", "1")]).is_err());
        assert!(read(&[("SPARKLAKE_COMPACT_TARGET_BYTES", "lots")]).is_err());
    }

    #[test]
    fn variables_lists_every_variable_read() {
        let asked = std::cell::RefCell::new(Vec::new());
        let _ = Policy::from_lookup(|name| {
            asked.borrow_mut().push(name.to_owned());
            None
        });
        assert_eq!(asked.into_inner(), VARIABLES);
    }
}
