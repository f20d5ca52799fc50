//! A folder of files as the object store ([`FsStore`]) and the raw-event archive ([`FsArchive`]).
//!
//! Every file is written atomically and durably: to a temporary file in the destination's
//! directory, fsynced, renamed over the destination, then the directory fsynced. A reader sees the
//! old file or the whole new one, never a part, and a completed write survives a power loss.
//!
//! A write the storage itself refuses (no space, a read-only file system, no permission, an I/O
//! error) is noted in [`StorageFaults`], which the local queues read so that an outage of the
//! disk does not count against the messages that could not be written meanwhile.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sparklake_core::ports::{ArchiveAppend, ObjectPut, PortError};

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

/// Whether `error` is the storage refusing writes rather than anything about what was written:
/// the disk or a quota is full, the file system is read-only, the folder is not writable, or the
/// device reports an I/O error.
pub fn is_storage_fault(error: &io::Error) -> bool {
    use io::ErrorKind::{PermissionDenied, QuotaExceeded, ReadOnlyFilesystem, StorageFull};
    const EIO: i32 = 5;
    matches!(
        error.kind(),
        StorageFull | QuotaExceeded | ReadOnlyFilesystem | PermissionDenied
    ) || error.raw_os_error() == Some(EIO)
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
        if records.is_empty() {
            return Ok(());
        }
        let content = ndjson(&records);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
            .unwrap_or(0);
        let path = self.root.join(archive_key(&content, now));
        let written = write_atomic_blocking(path, Bytes::from(content)).await;
        self.faults.observe(&written);
        written.map_err(|e| PortError::new("local archive append", e))
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
fn create_dirs_durably(dir: &Path) -> io::Result<()> {
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Every file under `dir`, as paths relative to it, sorted.
    fn files(dir: &Path) -> io::Result<Vec<String>> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
            for entry in fs::read_dir(dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    walk(root, &path, out)?;
                } else if let Ok(relative) = path.strip_prefix(root) {
                    out.push(relative.to_string_lossy().into_owned());
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out)?;
        out.sort();
        Ok(out)
    }

    #[test]
    fn keys_must_be_relative_paths_inside_the_root() {
        for bad in [
            "",
            "/abs",
            "/",
            "../x",
            "a/../../x",
            "a/..",
            "..",
            ".",
            "./a",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "..\\x",
            "a\0b",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} must be rejected");
        }
        for good in [
            "a",
            "a/b/c.csv",
            ".hidden",
            "a/..b/c..",
            "dt=2024-01-01/x.parquet",
        ] {
            assert!(validate_key(good).is_ok(), "{good:?} must be accepted");
        }
    }

    #[tokio::test]
    async fn put_rejects_bad_keys_and_writes_nothing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("store");
        let store = FsStore::new(&root);
        for bad in ["../escape", "/abs", "a//b", "", "a/./b"] {
            let put = store.put(bad, Bytes::from_static(b"x"), "text/plain").await;
            assert!(put.is_err(), "{bad:?} must be rejected");
        }
        assert!(!root.exists());
        assert_eq!(files(dir.path())?, Vec::<String>::new());
        Ok(())
    }

    #[tokio::test]
    async fn put_writes_nested_keys_and_leaves_no_temporary_files() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = FsStore::new(dir.path().join("data"));
        store
            .put(
                "a/b/c/events.csv",
                Bytes::from_static(b"h\n1\n"),
                "text/csv",
            )
            .await?;
        store.put("top", Bytes::new(), "text/plain").await?;
        assert_eq!(
            fs::read(dir.path().join("data/a/b/c/events.csv"))?,
            b"h\n1\n"
        );
        assert_eq!(fs::read(dir.path().join("data/top"))?, b"");
        assert_eq!(files(dir.path())?, ["data/a/b/c/events.csv", "data/top"]);
        Ok(())
    }

    #[tokio::test]
    async fn put_replaces_an_existing_object() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = FsStore::new(dir.path());
        store
            .put(
                "k/v.json",
                Bytes::from_static(b"a much longer old body"),
                "application/json",
            )
            .await?;
        store
            .put("k/v.json", Bytes::from_static(b"new"), "application/json")
            .await?;
        assert_eq!(fs::read(dir.path().join("k/v.json"))?, b"new");
        assert_eq!(files(dir.path())?, ["k/v.json"]);
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_put_leaves_no_temporary_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = FsStore::new(dir.path());
        fs::create_dir_all(dir.path().join("k/dir/inner"))?;
        // The destination is a non-empty directory: the rename fails.
        let put = store
            .put("k/dir", Bytes::from_static(b"x"), "text/plain")
            .await;
        assert!(put.is_err());
        assert_eq!(files(dir.path())?, Vec::<String>::new());
        Ok(())
    }

    #[test]
    fn orphan_temp_files_of_dead_processes_are_removed_and_nothing_else() -> TestResult {
        assert_eq!(temp_file_pid(".x.parquet.123.7.tmp"), Some(123));
        assert_eq!(temp_file_pid(".a.b.c.csv.9.0.tmp"), Some(9));
        for not_temp in [
            "x.parquet",
            ".x.tmp",
            "..1.2.tmp",
            ".x.p.1.tmp",
            "x.1.2.tmp",
        ] {
            assert_eq!(temp_file_pid(not_temp), None, "{not_temp}");
        }
        let dir = tempfile::tempdir()?;
        // A pid above the kernel's maximum (4194304) is never alive.
        let dead = dir.path().join("csv/event_type=open/.a.csv.99999999.3.tmp");
        let ours = dir
            .path()
            .join(format!("parquet/.b.parquet.{}.1.tmp", std::process::id()));
        let kept = [
            ours.clone(),
            dir.path().join("parquet/b.parquet"),
            dir.path().join("queue.sqlite3"),
        ];
        for file in kept.iter().chain([&dead]) {
            fs::create_dir_all(file.parent().ok_or("parent")?)?;
            fs::write(file, b"x")?;
        }
        assert_eq!(remove_orphan_temp_files(dir.path()), 1);
        assert!(!dead.exists());
        assert!(kept.iter().all(|f| f.exists()));
        Ok(())
    }

    #[test]
    fn storage_faults_are_full_read_only_unwritable_or_failing_devices() {
        use io::ErrorKind;
        for fault in [
            io::Error::from_raw_os_error(28),  // ENOSPC
            io::Error::from_raw_os_error(122), // EDQUOT
            io::Error::from_raw_os_error(30),  // EROFS
            io::Error::from_raw_os_error(13),  // EACCES
            io::Error::from_raw_os_error(5),   // EIO
            ErrorKind::StorageFull.into(),
        ] {
            assert!(is_storage_fault(&fault), "{fault}");
        }
        for other in [
            io::Error::from_raw_os_error(21), // EISDIR
            io::Error::from_raw_os_error(39), // ENOTEMPTY
            ErrorKind::InvalidInput.into(),
            ErrorKind::NotFound.into(),
        ] {
            assert!(!is_storage_fault(&other), "{other}");
        }
    }

    #[tokio::test]
    async fn a_put_notes_storage_faults_only() -> TestResult {
        let dir = tempfile::tempdir()?;
        let faults = StorageFaults::default();
        let store = FsStore::new(dir.path()).with_faults(faults.clone());
        store
            .put("ok", Bytes::from_static(b"x"), "text/plain")
            .await?;
        fs::create_dir_all(dir.path().join("k/dir/inner"))?;
        // Refused for what the key is, not for the storage: not a fault.
        let put = store
            .put("k/dir", Bytes::from_static(b"x"), "text/plain")
            .await;
        assert!(put.is_err());
        assert_eq!(faults.last_millis(), None);

        faults.observe::<()>(&Err(io::ErrorKind::ReadOnlyFilesystem.into()));
        let first = faults.last_millis().ok_or("a fault is noted")?;
        assert!(first > 1_700_000_000_000, "unix milliseconds: {first}");
        // Successes do not erase it; it ages out at the receiving end.
        store
            .put("ok", Bytes::from_static(b"y"), "text/plain")
            .await?;
        assert!(faults.last_millis() >= Some(first));
        Ok(())
    }

    #[tokio::test]
    async fn concurrent_puts_to_one_key_leave_one_whole_body() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = FsStore::new(dir.path());
        let bodies: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 64 * 1024]).collect();
        let mut tasks = Vec::new();
        for body in bodies.clone() {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .put("same", Bytes::from(body), "application/octet-stream")
                    .await
            }));
        }
        for task in tasks {
            task.await??;
        }
        let stored = fs::read(dir.path().join("same"))?;
        assert!(bodies.contains(&stored));
        assert_eq!(files(dir.path())?, ["same"]);
        Ok(())
    }

    #[test]
    fn archive_key_is_the_utc_date_and_the_content_hash() {
        // 2024-03-01T23:59:59Z, then one second later.
        let content = b"{\"a\":1}\n";
        let key = archive_key(content, 1_709_337_599);
        let hash = hex::encode(Sha256::digest(content));
        assert_eq!(key, format!("archive/dt=2024-03-01/{}.ndjson", &hash[..32]));
        assert!(archive_key(content, 1_709_337_600).starts_with("archive/dt=2024-03-02/"));
        assert_ne!(archive_key(b"other\n", 1_709_337_599), key);
    }

    #[tokio::test]
    async fn archive_writes_one_file_per_append_idempotently() -> TestResult {
        let dir = tempfile::tempdir()?;
        let archive = FsArchive::new(dir.path());
        let records = vec![
            Bytes::from_static(b"{\"event\":1}"),
            Bytes::from_static(b"{\"event\":2}"),
        ];
        archive.append(records.clone()).await?;
        let written = files(dir.path())?;
        assert_eq!(written.len(), 1, "{written:?}");
        let content = b"{\"event\":1}\n{\"event\":2}\n";
        let name = &written[0];
        let hash = hex::encode(Sha256::digest(content));
        let date = name
            .strip_prefix("archive/dt=")
            .and_then(|rest| rest.split('/').next())
            .ok_or("not under archive/dt=")?;
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")?;
        assert_eq!(date.len(), 10);
        assert!(
            name.ends_with(&format!("/{}.ndjson", &hash[..32])),
            "{name}"
        );
        assert_eq!(fs::read(dir.path().join(name))?, content);

        // The same records again: the same file, rewritten (unless the date just changed).
        archive.append(records).await?;
        let again = files(dir.path())?;
        assert!(
            again.len() == 1
                || again
                    .iter()
                    .all(|f| f.ends_with(&format!("/{}.ndjson", &hash[..32])))
        );

        archive
            .append(vec![Bytes::from_static(b"{\"event\":3}")])
            .await?;
        assert_eq!(files(dir.path())?.len(), again.len() + 1);
        Ok(())
    }

    #[tokio::test]
    async fn archive_ignores_an_empty_append() -> TestResult {
        let dir = tempfile::tempdir()?;
        let archive = FsArchive::new(dir.path().join("root"));
        archive.append(Vec::new()).await?;
        assert!(!dir.path().join("root").exists());
        Ok(())
    }
}
