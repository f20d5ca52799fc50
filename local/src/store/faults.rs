//! Which write failures are the machine's (a full or read-only disk, no permission, an I/O
//! error, no file descriptor or memory left) rather than the data's, and when the data folder
//! last had one: the local queues read it, so an outage does not count against the messages it
//! kept from being written (they are delivered again, never dead-lettered for it).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether `error` is the machine refusing rather than anything about what was written: the
/// disk or a quota is full, the file system is read-only, the folder is not writable, the device
/// reports an I/O error, or the process or system is out of file descriptors or memory (which
/// anyone holding connections open can cause).
pub fn is_storage_fault(error: &io::Error) -> bool {
    use io::ErrorKind::{
        OutOfMemory, PermissionDenied, QuotaExceeded, ReadOnlyFilesystem, StorageFull,
    };
    const EIO: i32 = 5;
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(
        error.kind(),
        StorageFull | QuotaExceeded | ReadOnlyFilesystem | PermissionDenied | OutOfMemory
    ) || matches!(error.raw_os_error(), Some(EIO | ENOMEM | ENFILE | EMFILE))
}

/// When a write to the data folder last failed for a storage fault ([`is_storage_fault`]).
/// Shared (cheap to clone) by the store, the archive and the local queues of one data folder.
#[derive(Debug, Clone, Default)]
pub struct StorageFaults {
    /// Unix milliseconds of the latest fault; 0 if none.
    last: Arc<AtomicI64>,
}

impl StorageFaults {
    /// Notes the outcome of a write: a storage fault is remembered with the current time.
    pub fn observe<T>(&self, result: &io::Result<T>) {
        if let Err(error) = result
            && is_storage_fault(error)
        {
            self.note();
        }
    }

    /// Notes a storage fault now.
    pub fn note(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(1)
            .max(1);
        self.last.fetch_max(now, Ordering::SeqCst);
    }

    /// The time of the latest storage fault (unix milliseconds), if any.
    pub fn last_millis(&self) -> Option<i64> {
        Some(self.last.load(Ordering::SeqCst)).filter(|&t| t > 0)
    }
}
