//! The folder store as the compactor's lake: listing, reading files in place, storing a
//! finished temporary file by renaming it (the scratch folder is on the same file system),
//! deleting durably, and a lease per partition that is an exclusive lock on a file: it dies with
//! its process, so a compactor killed with `kill -9` blocks nothing.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use sparklake_core::ports::{LakeStore, Lease, ObjectInfo, PortError};

use super::{FsStore, create_dirs_durably, sync_dir, write_atomic};

/// Where the compactor's temporary files go, under the data folder.
const SCRATCH: &str = "_compaction/tmp";

async fn blocking<T: Send + 'static>(
    operation: &'static str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, PortError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PortError::new(operation, e))?
        .map_err(|e| PortError::new(operation, e))
}

/// Every file under `dir` (recursively) as an object relative to `root`; names starting with
/// `.` (temporary files being written) are not objects.
fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectInfo>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let metadata = match entry.metadata() {
                Ok(m) => m,
                // Deleted since the directory was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let key = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let modified_millis = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            out.push(ObjectInfo {
                key,
                size: metadata.len(),
                modified_millis,
            });
        }
    }
    Ok(())
}

#[async_trait]
impl LakeStore for FsStore {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, PortError> {
        let root = self.root().to_path_buf();
        let dir = root.join(prefix.trim_end_matches('/'));
        blocking("local list", move || {
            let mut out = Vec::new();
            walk(&root, &dir, &mut out)?;
            Ok(out)
        })
        .await
    }

    async fn open(&self, key: &str) -> Result<Option<File>, PortError> {
        let path = self
            .path_of(key)
            .map_err(|e| PortError::new("local open", e))?;
        blocking("local open", move || match File::open(&path) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn put_file(&self, key: &str, path: &Path, _content_type: &str) -> Result<(), PortError> {
        let destination = self
            .path_of(key)
            .map_err(|e| PortError::new("local put", e))?;
        let source = path.to_path_buf();
        let faults = self.faults.clone();
        blocking("local put", move || {
            let stored = (|| {
                File::open(&source)?.sync_all()?;
                let dir = destination.parent().unwrap_or(Path::new("."));
                create_dirs_durably(dir)?;
                fs::rename(&source, &destination)?;
                sync_dir(dir)
            })();
            faults.observe(&stored);
            stored
        })
        .await
    }

    async fn delete(&self, keys: &[String]) -> Result<(), PortError> {
        let paths = keys
            .iter()
            .map(|k| self.path_of(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PortError::new("local delete", e))?;
        blocking("local delete", move || {
            let mut dirs: Vec<PathBuf> = Vec::new();
            for path in &paths {
                match fs::remove_file(path) {
                    Ok(()) => {
                        if let Some(dir) = path.parent()
                            && !dirs.iter().any(|d| d == dir)
                        {
                            dirs.push(dir.to_path_buf());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            for dir in dirs {
                sync_dir(&dir)?;
            }
            Ok(())
        })
        .await
    }

    fn scratch_dir(&self) -> PathBuf {
        self.root().join(SCRATCH)
    }

    async fn lease(&self, name: &str, _ttl: Duration) -> Result<Option<Box<dyn Lease>>, PortError> {
        let lock_path = self
            .path_of(&format!("{name}.lock"))
            .map_err(|e| PortError::new("local lease", e))?;
        let journal = self
            .path_of(&format!("{name}.journal"))
            .map_err(|e| PortError::new("local lease", e))?;
        blocking("local lease", move || {
            if let Some(dir) = lock_path.parent() {
                create_dirs_durably(dir)?;
            }
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
            let left = match fs::read(&journal) {
                Ok(bytes) if !bytes.is_empty() => Some(bytes),
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            Ok(Some(Box::new(FsLease {
                _lock: lock,
                journal,
                left,
            }) as Box<dyn Lease>))
        })
        .await
    }
}

/// A partition's lock, held while the file is open, and its journal beside it.
struct FsLease {
    _lock: File,
    journal: PathBuf,
    left: Option<Vec<u8>>,
}

fn remove_journal(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Lease for FsLease {
    fn left_behind(&self) -> Option<&[u8]> {
        self.left.as_deref()
    }

    async fn record(&mut self, journal: &[u8]) -> Result<(), PortError> {
        let path = self.journal.clone();
        let body = journal.to_vec();
        blocking("local journal", move || {
            if body.is_empty() {
                remove_journal(&path)
            } else {
                write_atomic(&path, &body)
            }
        })
        .await
    }

    async fn release(self: Box<Self>) -> Result<(), PortError> {
        let path = self.journal.clone();
        // The lock goes with the file, after the journal.
        blocking("local lease release", move || {
            let removed = remove_journal(&path);
            drop(self);
            removed
        })
        .await
    }

    async fn abandon(self: Box<Self>) -> Result<(), PortError> {
        Ok(())
    }
}
