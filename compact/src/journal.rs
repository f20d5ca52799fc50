//! What a job records under its partition's lease before it deletes anything, so that whoever
//! takes the lease next (a rerun after a crash, another compactor after the lease expired)
//! finishes or undoes it: the heart of "killed at any point, a rerun converges".
//!
//! A job records [`Journal::writing`] (its inputs and the prefix of its outputs' names) before
//! it writes an output, then [`Journal::written`] (the outputs, all durable) before it deletes
//! an input. Left behind:
//! - while writing, the inputs are all still there: the outputs written so far are removed;
//! - once written, every input's rows are in an output: the inputs still there are removed.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The keys the job merges.
    pub inputs: Vec<String>,
    /// Its outputs are named `<outputs_prefix>-<n>`.
    pub outputs_prefix: String,
    /// Set once every output is durable.
    pub outputs: Option<Vec<String>>,
}

impl Journal {
    pub fn writing(inputs: Vec<String>, outputs_prefix: String) -> Self {
        Self {
            inputs,
            outputs_prefix,
            outputs: None,
        }
    }

    pub fn written(mut self, outputs: Vec<String>) -> Self {
        self.outputs = Some(outputs);
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` for an empty or unreadable record (nothing left to do: a lease taken and released
    /// without a job, or a record cut short, which can only be one written before any output).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_nothing() {
        let j = Journal::writing(vec!["a".into()], "c-1".into()).written(vec!["c-1-0".into()]);
        assert_eq!(Journal::from_bytes(&j.to_bytes()), Some(j));
        assert_eq!(Journal::from_bytes(b""), None);
        assert_eq!(Journal::from_bytes(b"{\"inputs\":"), None);
    }
}
