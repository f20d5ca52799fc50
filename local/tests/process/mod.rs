//! Shared helpers of the tests that drive the real `sparklake` binary: start `serve` on a free
//! 127.0.0.1 port, talk raw HTTP/1.1 to it (so a test controls every byte of a request), stop
//! it with SIGTERM, and read back what it wrote.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The binary under test: cargo's, or `$SPARKLAKE_BIN` when set (as the Python tests take it),
/// e.g. a copy made right after the build where several checkouts share one target folder.
pub fn sparklake() -> Command {
    match std::env::var_os("SPARKLAKE_BIN") {
        Some(bin) => Command::new(bin),
        None => Command::new(env!("CARGO_BIN_EXE_sparklake")),
    }
}

/// Starts `serve` with `command`'s environment on a free port over `data`; returns the child
/// and its address. stdout is read for the listening line, then drained (and dropped).
pub fn start_with(command: Command, data: &Path, extra: &[&str]) -> (Child, String) {
    start_inner(command, data, extra, None)
}

/// [`start_with`], keeping everything `serve` prints on stdout (the listening line included)
/// in the file `stdout`.
pub fn start_capturing(
    command: Command,
    data: &Path,
    extra: &[&str],
    stdout: &Path,
) -> (Child, String) {
    start_inner(command, data, extra, Some(stdout.to_owned()))
}

fn start_inner(
    mut command: Command,
    data: &Path,
    extra: &[&str],
    capture: Option<PathBuf>,
) -> (Child, String) {
    use std::io::Write as _;
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sparklake serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = listening_addr(&line).unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let mut sink: Box<dyn std::io::Write + Send> = match capture {
        Some(path) => {
            let mut file = std::fs::File::create(path).expect("stdout capture");
            file.write_all(line.as_bytes()).expect("write capture");
            Box::new(file)
        }
        None => Box::new(std::io::sink()),
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut sink);
    });
    (child, addr)
}

/// The address in `serve`'s first line of output (`sparklake listening on http://ADDR/`).
pub fn listening_addr(line: &str) -> Option<String> {
    line.trim()
        .strip_prefix("sparklake listening on http://")
        .and_then(|a| a.strip_suffix('/'))
        .map(str::to_owned)
}

/// SIGTERM, then a bounded wait for a clean exit (a hung drain fails instead of hanging CI).
pub fn terminate(mut child: Child) {
    signal(child.id(), "TERM");
    wait_success(&mut child, "serve (after SIGTERM)");
}

/// Sends `kill -<name> <pid>`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Waits for `child` to exit 0; fails after two minutes.
pub fn wait_success(child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{what} exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the child is still running.
pub fn alive(child: &mut Child) -> bool {
    child.try_wait().expect("try_wait").is_none()
}

/// A parsed HTTP response: status, header block (lower-cased names) and body.
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `head` (the request line and headers, each ending in CRLF, without the blank line)
/// then the blank line and `body`, with `Connection: close`; reads the whole answer.
pub async fn raw_request(addr: &str, head: &[u8], body: &[u8]) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let mut request = head.to_vec();
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(body);
    // Written while the answer is read: the server may answer and close before it read
    // everything (an early 4xx), so a failed write is not the test's failure, the answer is.
    let write = tokio::spawn(async move {
        // No half-close after it: hyper drops a connection whose client shut its write side.
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut response = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Read until EOF or a reset, keeping what arrived before it.
    while let Ok(n) = reader.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    drop(write.await);
    parse_answer(&response)
}

/// `POST /` with extra header lines (each ending in CRLF) and a body with its length.
pub async fn post_with(addr: &str, headers: &[u8], body: &[u8]) -> Answer {
    let mut head = format!("POST / HTTP/1.1\r\nHost: {addr}\r\n").into_bytes();
    head.extend_from_slice(headers);
    head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    raw_request(addr, &head, body).await
}

pub fn parse_answer(response: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// The `event_id` of every row in every Parquet file under `data/parquet`.
pub fn written_event_ids(data: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for entry in walk(&data.join("parquet"), "parquet") {
        let file = std::fs::File::open(&entry).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let column = batch.column_by_name("event_id").expect("event_id column");
            let strings = column
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .expect("utf8");
            ids.extend(strings.iter().map(|s| s.unwrap_or_default().to_owned()));
        }
    }
    ids
}

/// Files under `dir` with extension `ext`, recursively.
pub fn walk(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            if e.path().is_dir() {
                walk(&e.path(), ext)
            } else {
                vec![e.path()]
            }
        })
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect()
}

/// The peak resident memory (`VmHWM`, kB) of a running process, from /proc.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmHWM:")
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    })
}
