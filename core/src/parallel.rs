//! Independent jobs spread over the machine's cores, their results in job order.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `work(0) .. work(jobs - 1)` on up to `max_threads` scoped threads (never more than the
/// machine's cores or the jobs), each thread taking the next job until none is left; the results
/// in job order. One thread, or one job, runs on the caller's thread. A panicking job panics the
/// caller once every thread has stopped.
pub fn on_cores<T: Send>(
    jobs: usize,
    max_threads: usize,
    work: impl Fn(usize) -> T + Sync,
) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(max_threads)
        .min(jobs);
    if threads <= 1 {
        return (0..jobs).map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
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

#[cfg(test)]
mod tests {
    use super::on_cores;

    #[test]
    fn every_job_runs_once_and_results_come_back_in_job_order() {
        for max_threads in [1, 2, 4, usize::MAX] {
            let ran = std::sync::atomic::AtomicUsize::new(0);
            let out = on_cores(100, max_threads, |job| {
                ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                job * 3
            });
            assert_eq!(out, (0..100).map(|j| j * 3).collect::<Vec<_>>());
            assert_eq!(ran.into_inner(), 100);
        }
        assert!(on_cores(0, 4, |job| job).is_empty());
    }
}
