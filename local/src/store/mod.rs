//! A folder of files as the object store ([`FsStore`]) and the raw-event archive ([`FsArchive`]).
//!
//! Every file is written atomically and durably: to a temporary file in the destination's
//! directory, fsynced, renamed over the destination, then the directory fsynced. A reader sees the
//! old file or the whole new one, never a part, and a completed write survives a power loss. The
//! writer's objects and fanout's archive files of one call are written together
//! ([`write_all_atomic`]): every temporary file, one `syncfs`, every rename, one `syncfs`, the
//! same guarantees for two syncs a call instead of two fsyncs a file (a file system's sync also
//! waits for other programs' dirty data on it; elsewhere than Linux each file is fsynced).
//!
//! A write the storage itself refuses (no space, a read-only file system, no permission, an I/O
//! error) is noted in [`StorageFaults`], which the local queues read so that an outage of the
//! disk does not count against the messages that could not be written meanwhile.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

mod faults;
mod lake;
use bytes::Bytes;
use chrono::{DateTime, Utc};
pub use faults::{StorageFaults, is_storage_fault};
use sha2::{Digest, Sha256};
use sparklake_core::parallel::on_cores;
use sparklake_core::ports::{ArchiveAppend, ObjectPut, PortError, PutObject};

/// Why a key was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid object key {key:?}: {reason}")]
pub struct InvalidKey {
    pub key: String,
    pub reason: &'static str,
}

/// Checks that `key` is a relative `/`-separated path that stays inside the root: not empty, no
/// leading `/`, no empty, `.` or `..` segment, no backslash, no NUL.
pub fn validate_key(key: &str) -> Result<(), InvalidKey> {
    let invalid = |reason| {
        Err(InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("empty");
    }
    if key.starts_with('/') {
        return invalid("absolute");
    }
    if key.contains('\\') {
        return invalid("contains a backslash");
    }
    if key.contains('\0') {
        return invalid("contains NUL");
    }
    for segment in key.split('/') {
        match segment {
            "" => return invalid("has an empty segment"),
            "." | ".." => return invalid("has a `.` or `..` segment"),
            _ => {}
        }
    }
    Ok(())
}

/// A folder as an object store: the object `a/b/c.csv` is the file `<root>/a/b/c.csv`.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    faults: StorageFaults,
    max_partition_value_bytes: Option<usize>,
}

impl FsStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            faults: StorageFaults::default(),
            max_partition_value_bytes: None,
        }
    }

    /// Notes storage faults of this store's writes in `faults`.
    pub fn with_faults(mut self, faults: StorageFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Shortens partition values longer than this in the writer's keys
    /// ([`ObjectPut::max_partition_value_bytes`]).
    pub fn with_max_partition_value_bytes(mut self, max: Option<usize>) -> Self {
        self.max_partition_value_bytes = max;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file an object key maps to, if the key is valid.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, InvalidKey> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl ObjectPut for FsStore {
    async fn put(&self, key: &str, body: Bytes, _content_type: &str) -> Result<(), PortError> {
        let path = self
            .path_of(key)
            .map_err(|e| PortError::new("local object put", e))?;
        let written = write_atomic_blocking(path, body).await;
        self.faults.observe(&written);
        written.map_err(|e| PortError::new("local object put", e))
    }

    /// Every object written as [`write_atomic`] writes one, but made durable together: all
    /// written to their temporary files, one sync, all renamed, one sync (Linux's `syncfs`; two
    /// syncs a call instead of two fsyncs an object). Elsewhere each file is fsynced and each
    /// directory once.
    async fn put_all(&self, objects: Vec<PutObject>) -> Vec<Result<(), PortError>> {
        let mut results: Vec<Option<io::Result<()>>> = Vec::with_capacity(objects.len());
        let mut files = Vec::with_capacity(objects.len());
        for object in objects {
            match self.path_of(&object.key) {
                Ok(path) => {
                    results.push(None);
                    files.push((path, object.body));
                }
                Err(e) => results.push(Some(Err(io::Error::new(io::ErrorKind::InvalidInput, e)))),
            }
        }
        let root = self.root.clone();
        let mut written = tokio::task::spawn_blocking(move || write_all_atomic(&root, files))
            .await
            .unwrap_or_else(|e| vec![Err(io::Error::other(e))])
            .into_iter();
        results
            .into_iter()
            .map(|result| {
                let result = result.unwrap_or_else(|| {
                    written
                        .next()
                        .unwrap_or_else(|| Err(io::Error::other("the write was not done")))
                });
                self.faults.observe(&result);
                result.map_err(|e| PortError::new("local object put", e))
            })
            .collect()
    }

    fn max_partition_value_bytes(&self) -> Option<usize> {
        self.max_partition_value_bytes
    }
}

/// A folder as the raw-event archive: each append is one file
/// `<root>/archive/dt=<YYYY-MM-DD, UTC>/<first 32 hex digits of the content's SHA-256>.ndjson`.
/// Appending the same records again on the same day rewrites the same file.
#[derive(Debug, Clone)]
pub struct FsArchive {
    root: PathBuf,
    faults: StorageFaults,
}

impl FsArchive {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            faults: StorageFaults::default(),
        }
    }

    /// Notes storage faults of this archive's writes in `faults`.
    pub fn with_faults(mut self, faults: StorageFaults) -> Self {
        self.faults = faults;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Records as NDJSON: each followed by `\n`.
fn ndjson(records: &[Bytes]) -> Vec<u8> {
    let mut content = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
    for record in records {
        content.extend_from_slice(record);
        content.push(b'\n');
    }
    content
}

/// `archive/dt=<date>/<hash>.ndjson` for `content` written at `unix_secs`.
fn archive_key(content: &[u8], unix_secs: i64) -> String {
    let date = DateTime::<Utc>::from_timestamp(unix_secs, 0)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .date_naive();
    let digest = Sha256::digest(content);
    let name = hex::encode(&digest[..16]);
    format!("archive/dt={}/{name}.ndjson", date.format("%Y-%m-%d"))
}

#[async_trait]
impl ArchiveAppend for FsArchive {
    async fn append(&self, records: Vec<Bytes>) -> Result<(), PortError> {
        self.append_all(vec![records]).await
    }

    /// A file per batch (see [`FsArchive`]), the syncs shared as in the store's `put_all`.
    async fn append_all(&self, batches: Vec<Vec<Bytes>>) -> Result<(), PortError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
            .unwrap_or(0);
        let files: Vec<(PathBuf, Bytes)> = batches
            .iter()
            .filter(|records| !records.is_empty())
            .map(|records| {
                let content = ndjson(records);
                (
                    self.root.join(archive_key(&content, now)),
                    Bytes::from(content),
                )
            })
            .collect();
        let root = self.root.clone();
        let written = tokio::task::spawn_blocking(move || write_all_atomic(&root, files))
            .await
            .map_err(io::Error::other)
            .and_then(|results| results.into_iter().collect::<io::Result<Vec<()>>>());
        self.faults.observe(&written);
        written
            .map(|_| ())
            .map_err(|e| PortError::new("local archive append", e))
    }
}

async fn write_atomic_blocking(path: PathBuf, body: Bytes) -> io::Result<()> {
    tokio::task::spawn_blocking(move || write_atomic(&path, &body))
        .await
        .map_err(io::Error::other)?
}

/// Writes `body` to `path` atomically and durably, creating missing parent directories.
pub fn write_atomic(path: &Path, body: &[u8]) -> io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dirs_durably(dir)?;

    let (tmp, mut file) = create_temp(dir, &file_name.to_string_lossy())?;
    let written = file
        .write_all(body)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp, path)
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Writes each `(path, body)` as [`write_atomic`] does, the syncs shared (see
/// [`FsStore`]'s `put_all`); one result per file, in order.
pub fn write_all_atomic(root: &Path, files: Vec<(PathBuf, Bytes)>) -> Vec<io::Result<()>> {
    if files.is_empty() {
        return Vec::new();
    }
    // Opened before anything is written: syncfs reports the write-back errors that happened
    // since its descriptor was opened.
    let anchor = fs::create_dir_all(root).and_then(|()| File::open(root));
    let mut results: Vec<io::Result<()>> = Vec::with_capacity(files.len());
    // (index, temporary file, destination) of every file written so far.
    let mut staged: Vec<(usize, PathBuf, PathBuf)> = Vec::with_capacity(files.len());
    // Without one sync for all, each file is made durable as it is written.
    let durable_each = anchor.is_err() || !cfg!(target_os = "linux");
    let temps = stage_all(&files, durable_each);
    for (at, ((path, _body), tmp)) in files.into_iter().zip(temps).enumerate() {
        results.push(Ok(()));
        match tmp {
            Ok(tmp) => staged.push((at, tmp, path)),
            Err(e) => results[at] = Err(e),
        }
    }
    let fail_all =
        |staged: &[(usize, PathBuf, PathBuf)], results: &mut Vec<io::Result<()>>, e: &io::Error| {
            for (at, tmp, _) in staged {
                let _ = fs::remove_file(tmp);
                results[*at] = Err(io::Error::new(e.kind(), e.to_string()));
            }
        };
    // The bodies on disk before any name points at them.
    if let Err(e) = sync_all_of(anchor.as_ref().ok(), &[]) {
        fail_all(&staged, &mut results, &e);
        return results;
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut renamed = Vec::with_capacity(staged.len());
    for (at, tmp, path) in staged {
        match fs::rename(&tmp, &path) {
            Ok(()) => {
                let dir = parent_of(&path).to_path_buf();
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
                renamed.push((at, tmp, path));
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                results[at] = Err(e);
            }
        }
    }
    // The names on disk before the writes are reported done.
    if let Err(e) = sync_all_of(anchor.as_ref().ok(), &dirs) {
        for (at, _, _) in renamed {
            results[at] = Err(io::Error::new(e.kind(), e.to_string()));
        }
    }
    results
}

/// The file system holding `anchor` synced (Linux), or else each of `dirs` fsynced.
fn sync_all_of(anchor: Option<&File>, dirs: &[PathBuf]) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if let Some(anchor) = anchor {
        return rustix::fs::syncfs(anchor).map_err(io::Error::from);
    }
    let _ = anchor;
    dirs.iter().try_for_each(|dir| sync_dir(dir))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Every `(path, body)` of `files` staged as [`stage`] does it, on up to [`STAGING_THREADS`]
/// threads (writing the bytes is most of a call's store time, and the encoders have finished:
/// one thread left the other cores idle); the results in order.
fn stage_all(files: &[(PathBuf, Bytes)], durable: bool) -> Vec<io::Result<PathBuf>> {
    on_cores(files.len(), STAGING_THREADS, |n| {
        stage(&files[n].0, &files[n].1, durable)
    })
}

/// Threads that write a call's files at most: the machine's cores, up to this.
const STAGING_THREADS: usize = 4;

/// `body` in a new temporary file beside `path`, its missing directories created; the
/// temporary file's path. If `durable`, the file is fsynced and each directory created is
/// made durable at once; otherwise the caller's sync does both.
fn stage(path: &Path, body: &[u8], durable: bool) -> io::Result<PathBuf> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let dir = parent_of(path);
    if durable {
        create_dirs_durably(dir)?;
    } else if !dir.is_dir() {
        fs::create_dir_all(dir)?;
    }
    let (tmp, mut file) = create_temp(dir, &file_name.to_string_lossy())?;
    let written = file
        .write_all(body)
        .and_then(|()| if durable { file.sync_all() } else { Ok(()) });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Creates a new temporary file `.{name}.{pid}.{counter}.tmp` in `dir`.
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let mut attempts = 0;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{pid}.{n}.tmp"));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            // A leftover of a crashed process that had the same pid.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// The pid in a temporary file's name `.{name}.{pid}.{counter}.tmp`, if it is one.
fn temp_file_pid(file_name: &str) -> Option<u32> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let _counter: u64 = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next().filter(|name| !name.is_empty())?;
    Some(pid)
}

/// Removes the temporary files that writes killed mid-way (kill -9, power loss) left under
/// `root`: those whose writing process is gone. A file whose process may still run is kept, and
/// without `/proc` nothing is removed. Returns how many were removed.
pub fn remove_orphan_temp_files(root: &Path) -> usize {
    fn walk(dir: &Path, removed: &mut usize) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path, removed);
                continue;
            }
            let Some(pid) = temp_file_pid(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let alive =
                pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists();
            if !alive && fs::remove_file(&path).is_ok() {
                *removed += 1;
            }
        }
    }
    if !Path::new("/proc/self").exists() {
        return 0;
    }
    let mut removed = 0;
    walk(root, &mut removed);
    removed
}

/// Creates `dir` and its missing ancestors, fsyncing the parent of each directory created so the
/// new entries survive a power loss.
pub(crate) fn create_dirs_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut existing = Some(dir);
    while let Some(d) = existing {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d);
        existing = d.parent();
    }
    fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
