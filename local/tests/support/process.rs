//! The real `sparklake` binary: start `serve` on a free 127.0.0.1 port and read its address,
//! signal it, wait for it (bounded, so a hang fails instead of stalling CI).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: `$SPARKLAKE_BIN` when set (as the Python tests and scripts take it,
/// e.g. a copy made right after the build where several checkouts share one target folder),
/// else the one cargo built.
pub fn binary() -> PathBuf {
    std::env::var_os("SPARKLAKE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_sparklake")),
        PathBuf::from,
    )
}

pub fn sparklake() -> Command {
    Command::new(binary())
}

/// `command` with `serve`'s arguments on a free port over `data`, then `extra`.
pub fn serve(mut command: Command, data: &Path, extra: &[&str]) -> Command {
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra);
    command
}

/// A running `sparklake serve` and its address.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// Starts `command` (holding `serve`'s arguments and environment), reads the address from
    /// its first line of output, then keeps draining stdout (dropped) so it never blocks.
    pub fn start(command: Command) -> Self {
        Self::spawn(command, None)
    }

    /// [`Server::start`], keeping everything on stdout (the listening line included) in
    /// the file `stdout`.
    pub fn start_capturing(command: Command, stdout: &Path) -> Self {
        Self::spawn(command, Some(stdout))
    }

    fn spawn(mut command: Command, capture: Option<&Path>) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sparklake serve");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("read the listening line");
        let addr =
            listening_addr(&line).unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let mut sink: Box<dyn std::io::Write + Send> = match capture {
            Some(path) => {
                let mut file = std::fs::File::create(path).expect("stdout capture");
                file.write_all(line.as_bytes()).expect("write capture");
                Box::new(file)
            }
            None => Box::new(std::io::sink()),
        };
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut reader, &mut sink);
        });
        Self { child, addr }
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, then a bounded wait for exit 0 (a hung drain fails).
    pub fn terminate(self) {
        terminate(self.child);
    }

    /// SIGTERM, then a bounded wait for any exit; its status.
    pub fn stop(mut self, limit: Duration) -> ExitStatus {
        signal(self.child.id(), "TERM");
        wait_exit(&mut self.child, limit, "serve (after SIGTERM)")
    }
}

/// The address in `serve`'s first line of output (`sparklake listening on http://ADDR/`).
pub fn listening_addr(line: &str) -> Option<String> {
    line.trim()
        .strip_prefix("sparklake listening on http://")
        .and_then(|a| a.strip_suffix('/'))
        .map(str::to_owned)
}

/// SIGTERM, then a bounded wait for exit 0 (a hung drain fails instead of hanging CI).
pub fn terminate(mut child: Child) {
    signal(child.id(), "TERM");
    wait_success(&mut child, "serve (after SIGTERM)");
}

/// Sends `kill -<name> <pid>` (no libc in the tests).
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Waits for `child` to exit, at most `limit` (a bound on a wedge, not a timing assertion);
/// kills it and fails past that.
pub fn wait_exit(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most two minutes) for `child` to exit 0.
pub fn wait_success(child: &mut Child, what: &str) {
    let status = wait_exit(child, Duration::from_secs(120), what);
    assert!(status.success(), "{what} exited with {status}");
}

/// Whether the child is still running.
pub fn alive(child: &mut Child) -> bool {
    child.try_wait().expect("try_wait").is_none()
}

/// The peak resident memory (`VmHWM`, kB) of a running process, from /proc.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmHWM:")
}

/// The resident memory now (`VmRSS`, kB) of a running process, from /proc.
pub fn rss_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmRSS:")
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    })
}
