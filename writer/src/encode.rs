//! Every group's two objects (Parquet, CSV) encoded at once on the machine's cores (a Lambda
//! function gets more than one vCPU from 1,769 MB; locally, every core).

use std::sync::atomic::{AtomicUsize, Ordering};

use sparklake_core::encode::{EncodeError, ParquetEncoder, encode_csv};
use sparklake_core::partition::Partition;

use crate::handler::Group;

/// One group's objects, encoded: (Parquet, CSV).
pub(crate) type Encoded = Result<(Vec<u8>, Vec<u8>), EncodeError>;

/// Encodes every group as (Parquet, CSV), the 2 × groups encodings spread over the machine's
/// cores (a Lambda function gets more than one vCPU from 1,769 MB; locally, every core).
pub(crate) fn encode_all(
    parquet: &ParquetEncoder,
    groups: &[(Partition<'_>, Group<'_>)],
) -> Vec<Encoded> {
    let jobs = groups.len() * 2;
    let encode = |job: usize| {
        let rows = &groups[job / 2].1.rows;
        if job.is_multiple_of(2) {
            parquet.encode(rows)
        } else {
            encode_csv(rows)
        }
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs);
    let mut done: Vec<(usize, Result<Vec<u8>, EncodeError>)> = if workers <= 1 {
        (0..jobs).map(|job| (job, encode(job))).collect()
    } else {
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let job = next.fetch_add(1, Ordering::Relaxed);
                            if job >= jobs {
                                return mine;
                            }
                            mine.push((job, encode(job)));
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    done.sort_unstable_by_key(|(job, _)| *job);
    let mut bodies = done.into_iter().map(|(_, body)| body);
    let mut pairs = Vec::with_capacity(groups.len());
    while let (Some(parquet), Some(csv)) = (bodies.next(), bodies.next()) {
        pairs.push(parquet.and_then(|p| csv.map(|c| (p, c))));
    }
    pairs
}
