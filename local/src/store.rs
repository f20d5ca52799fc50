//! A folder of files as the object store ([`FsStore`]) and the raw-event archive ([`FsArchive`]).
//!
//! Every file is written atomically and durably: to a temporary file in the destination's
//! directory, fsynced, renamed over the destination, then the directory fsynced. A reader sees the
//! old file or the whole new one, never a part, and a completed write survives a power loss.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A folder as an object store: the object `a/b/c.csv` is the file `<root>/a/b/c.csv`.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    max_partition_value_bytes: Option<usize>,
}

impl FsStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            max_partition_value_bytes: None,
        }
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
        write_atomic_blocking(path, body)
            .await
            .map_err(|e| PortError::new("local object put", e))
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
}

impl FsArchive {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
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
        write_atomic_blocking(path, Bytes::from(content))
            .await
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
