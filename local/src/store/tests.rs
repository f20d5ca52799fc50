//! The folder store and archive over real files in a temporary folder.
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

/// put_all: one result per object in order; a key refused or a write that fails is that
/// object's error alone; the rest are written whole, replacing what was there, with no
/// temporary file left; nothing at all is created for a call of bad keys only.
#[tokio::test]
async fn put_all_writes_each_object_or_fails_it_alone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("data");
    let store = FsStore::new(&root);
    let object = |key: &str, body: &'static [u8]| PutObject {
        key: key.to_owned(),
        body: Bytes::from_static(body),
        content_type: "text/plain",
    };
    let refused = store
        .put_all(vec![object("../out", b"x"), object("", b"x")])
        .await;
    assert!(refused.iter().all(Result::is_err));
    assert!(!root.exists());

    store
        .put(
            "a/old",
            Bytes::from_static(b"a much longer old body"),
            "text/plain",
        )
        .await?;
    fs::create_dir_all(root.join("k/dir/inner"))?;
    let results = store
        .put_all(vec![
            object("a/old", b"new"),
            object("../escape", b"x"),
            object("p/event_type=x/dt=2026-01-01/one.csv", b"1"),
            // The destination is a non-empty directory: its rename fails.
            object("k/dir", b"x"),
            object("p/event_type=x/dt=2026-01-01/two.csv", b"2"),
            object("p/event_type=y/dt=2026-01-02/three.csv", b""),
        ])
        .await;
    let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(ok, [true, false, true, false, true, true]);
    assert_eq!(fs::read(root.join("a/old"))?, b"new");
    assert_eq!(
        fs::read(root.join("p/event_type=x/dt=2026-01-01/two.csv"))?,
        b"2"
    );
    assert_eq!(
        files(&root)?,
        [
            "a/old",
            "p/event_type=x/dt=2026-01-01/one.csv",
            "p/event_type=x/dt=2026-01-01/two.csv",
            "p/event_type=y/dt=2026-01-02/three.csv",
        ]
    );
    Ok(())
}

/// A call's files are written on several threads: the results still come back one per object
/// in order, a file that cannot be staged (its directory is a file) fails alone wherever it
/// is, and every other body lands whole under its own key.
#[tokio::test]
async fn put_all_of_many_objects_keeps_each_result_in_its_place() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("data");
    let store = FsStore::new(&root);
    store
        .put("blocker", Bytes::from_static(b"a file"), "text/plain")
        .await?;
    let objects: Vec<PutObject> = (0..60)
        .map(|n| PutObject {
            key: if n % 7 == 3 {
                format!("blocker/{n}.csv")
            } else {
                format!("p/event_type=t{}/dt=2026-01-01/{n}.csv", n % 5)
            },
            body: Bytes::from(format!("body {n}").repeat(n + 1)),
            content_type: "text/csv",
        })
        .collect();
    let results = store.put_all(objects).await;
    assert_eq!(results.len(), 60);
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.is_ok(), n % 7 != 3, "object {n}");
        if n % 7 != 3 {
            let path = root.join(format!("p/event_type=t{}/dt=2026-01-01/{n}.csv", n % 5));
            assert_eq!(
                fs::read(path)?,
                format!("body {n}").repeat(n + 1).as_bytes()
            );
        }
    }
    assert_eq!(files(&root)?.len(), 1 + 60 - 9);
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
        io::Error::from_raw_os_error(24),  // EMFILE: the process is out of descriptors
        io::Error::from_raw_os_error(23),  // ENFILE: the system is
        io::Error::from_raw_os_error(12),  // ENOMEM
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
