//! Every group's two objects (Parquet, CSV) encoded at once on the machine's cores (a Lambda
//! function gets more than one vCPU from 1,769 MB; locally, every core).

use std::sync::atomic::{AtomicUsize, Ordering};

use sparklake_core::encode::{Backing, EncodeError, ParquetEncoder, encode_csv};
use sparklake_core::partition::Partition;

use crate::handler::Group;

/// One group's objects, encoded: (Parquet, CSV).
pub(crate) type Encoded = Result<(Vec<u8>, Vec<u8>), EncodeError>;

/// Encodes every group as (Parquet, CSV), the 2 × groups encodings spread over the machine's
/// cores (a Lambda function gets more than one vCPU from 1,769 MB; locally, every core).
/// `backing` holds the buffers the rows' text lies in (the messages' bodies).
pub(crate) fn encode_all(
    parquet: &ParquetEncoder,
    groups: &[(Partition<'_>, Group<'_>)],
    backing: &Backing,
) -> Vec<Encoded> {
    let done = on_all_cores(groups.len() * 2, |job| {
        let rows = &groups[job / 2].1.rows;
        if job.is_multiple_of(2) {
            parquet.encode_backed(rows, backing)
        } else {
            encode_csv(rows)
        }
    });
    let mut bodies = done.into_iter();
    let mut pairs = Vec::with_capacity(groups.len());
    while let (Some(parquet), Some(csv)) = (bodies.next(), bodies.next()) {
        pairs.push(parquet.and_then(|p| csv.map(|c| (p, c))));
    }
    pairs
}

/// `work(0..jobs)` on every core the process may use, the results in job order; on one core, in
/// the calling thread.
pub(crate) fn on_all_cores<T: Send>(jobs: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs);
    if workers <= 1 {
        return (0..jobs).map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let job = next.fetch_add(1, Ordering::Relaxed);
                        if job >= jobs {
                            return mine;
                        }
                        mine.push((job, work(job)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_unstable_by_key(|(job, _)| *job);
    done.into_iter().map(|(_, result)| result).collect()
}
