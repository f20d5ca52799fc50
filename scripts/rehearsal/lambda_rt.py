"""The Lambda Runtime API (2018-06-01) as a warm function sees it: one process per function,
started with the environment Lambda defines, its invocations handed out by
`/runtime/invocation/next` with the `Lambda-Runtime-*` headers and a deadline of the function's
Timeout, answered by `/response` or `/error` (or `/init/error` before the first one). A process
that runs past its deadline is killed and started again, as Lambda does; its output (stdout and
stderr, which Lambda sends to CloudWatch Logs) is kept line by line.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
INIT_TIMEOUT_SECS = 10


class Invocation:
    def __init__(self, payload: bytes, deadline_ms: int, arn: str):
        self.id = str(uuid.uuid4())
        self.payload = payload
        self.deadline_ms = deadline_ms
        self.arn = arn
        self.done = threading.Event()
        self.response = None
        self.error = None  # dict: errorType, errorMessage


class Result:
    def __init__(self, ok, body=None, error=None, duration_ms=0.0):
        self.ok = ok
        self.body = body
        self.error = error
        self.duration_ms = duration_ms

    def json(self):
        return json.loads(self.body) if self.body else None


class LambdaFunction:
    def __init__(self, logical, name, arn, bootstrap_dir, env, timeout, memory, log):
        self.logical = logical
        self.name = name
        self.arn = arn
        self.dir = bootstrap_dir
        self.env = env
        self.timeout = timeout
        self.memory = memory
        self.log = log  # log(function, stream, line)
        self.pending = queue.Queue()
        self.current = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.init_error = None
        self.proc = None
        self.server = None
        self.starts = 0
        self.reports = []  # (request id, duration ms, error type or None)
        self.max_rss_kb = 0

    # -- the Runtime API --------------------------------------------------------------------
    def _handler(self):
        fn = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status, body=b"", headers=()):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(n) if n else b""

            def do_GET(self):
                if self.path != f"{PREFIX}/invocation/next":
                    return self._answer(404, b'{"errorType":"NotFound"}')
                fn.ready.set()
                while True:
                    try:
                        inv = fn.pending.get(timeout=0.5)
                        break
                    except queue.Empty:
                        if fn.server is None:
                            return
                fn.current[inv.id] = inv
                self._answer(200, inv.payload, [
                    ("Lambda-Runtime-Aws-Request-Id", inv.id),
                    ("Lambda-Runtime-Deadline-Ms", str(inv.deadline_ms)),
                    ("Lambda-Runtime-Invoked-Function-Arn", inv.arn),
                    ("Lambda-Runtime-Trace-Id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"),
                ])

            def do_POST(self):
                body = self._body()
                if self.path == f"{PREFIX}/init/error":
                    fn.init_error = _error(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
                    return self._answer(202, b'{"status":"OK"}')
                parts = self.path[len(f"{PREFIX}/invocation/"):].split("/")
                if not self.path.startswith(f"{PREFIX}/invocation/") or len(parts) != 2 or parts[1] not in ("response", "error"):
                    return self._answer(404, b'{"errorType":"NotFound"}')
                inv = fn.current.pop(parts[0], None)
                if inv is None:
                    return self._answer(400, b'{"errorType":"InvalidRequestID","errorMessage":"unknown or answered request id"}')
                if parts[1] == "response":
                    if len(body) > MAX_SYNC_PAYLOAD:
                        inv.error = {"errorType": "Function.ResponseSizeTooLarge",
                                     "errorMessage": f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload size ({MAX_SYNC_PAYLOAD} bytes)."}
                        self._answer(413, b'{"errorType":"RequestEntityTooLarge"}')
                    else:
                        inv.response = body
                        self._answer(202, b'{"status":"OK"}')
                else:
                    inv.error = _error(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
                    self._answer(202, b'{"status":"OK"}')
                inv.done.set()

        return Handler

    # -- the process ------------------------------------------------------------------------
    def start(self):
        """Starts the process; returns once it asked for its first invocation (init done), or
        raises with its init error."""
        if self.server is None:
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
            self.server.daemon_threads = True
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
        port = self.server.server_address[1]
        self.ready.clear()
        self.init_error = None
        self.starts += 1
        env = dict(self.env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}",
                   AWS_LAMBDA_LOG_STREAM_NAME=time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex)
        started = time.monotonic()
        self.proc = subprocess.Popen([os.path.join(self.dir, "bootstrap")], cwd=self.dir, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for stream, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            threading.Thread(target=self._drain, args=(stream, pipe), daemon=True).start()
        while not self.ready.is_set():
            if self.init_error is not None:
                raise InitError(f"{self.logical}: init error: {self.init_error}")
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise InitError(f"{self.logical}: exited with {self.proc.returncode} during init"
                                + (f": {self.init_error}" if self.init_error else ""))
            if time.monotonic() - started > INIT_TIMEOUT_SECS:
                self.kill()
                raise InitError(f"{self.logical}: init took over {INIT_TIMEOUT_SECS} s")
            time.sleep(0.01)
        self.log(self.logical, "platform", f"INIT_REPORT Init Duration: {(time.monotonic() - started) * 1000:.2f} ms")

    def _drain(self, stream, pipe):
        for raw in iter(pipe.readline, b""):
            self.log(self.logical, stream, raw.decode("utf-8", "replace").rstrip("\n"))

    def sample_rss(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.max_rss_kb = max(self.max_rss_kb, int(line.split()[1]))
        except (OSError, AttributeError):
            pass

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.sample_rss()
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.sample_rss()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        server, self.server = self.server, None
        if server:
            server.shutdown()
            server.server_close()

    # -- invoking ---------------------------------------------------------------------------
    def invoke(self, payload: bytes) -> Result:
        """One synchronous invocation (one at a time, as one warm instance takes them)."""
        if len(payload) > MAX_SYNC_PAYLOAD:
            return Result(False, error={"errorType": "RequestEntityTooLargeException",
                                        "errorMessage": "Request must be smaller than 6291456 bytes for the InvokeFunction operation"})
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            started = time.monotonic()
            inv = Invocation(payload, int(time.time() * 1000) + self.timeout * 1000, self.arn)
            self.pending.put(inv)
            while not inv.done.wait(0.05):
                if time.monotonic() - started > self.timeout:
                    self.kill()
                    inv.error = {"errorType": "Sandbox.Timedout",
                                 "errorMessage": f"Task timed out after {self.timeout:.2f} seconds"}
                    break
                if self.proc.poll() is not None:
                    inv.error = {"errorType": "Runtime.ExitError",
                                 "errorMessage": f"Runtime exited with error: exit status {self.proc.returncode}"}
                    break
            duration = (time.monotonic() - started) * 1000
            self.sample_rss()
            self.reports.append((inv.id, duration, inv.error["errorType"] if inv.error else None))
            self.log(self.logical, "platform",
                     f"REPORT RequestId: {inv.id} Duration: {duration:.2f} ms Memory Size: {self.memory} MB Max Memory Used: {self.max_rss_kb // 1024} MB"
                     + (f" Status: error ({inv.error['errorType']})" if inv.error else ""))
            if inv.error:
                return Result(False, error=inv.error, duration_ms=duration)
            return Result(True, body=inv.response, duration_ms=duration)


class InitError(Exception):
    pass


def _error(body, header_type):
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        doc = {"errorMessage": body.decode("utf-8", "replace")}
    if header_type and "errorType" not in doc:
        doc["errorType"] = header_type
    return doc


def unpack(zip_path, dest):
    """A function's zip as Lambda unpacks it into /var/task: `bootstrap` at its root."""
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        if "bootstrap" not in names:
            raise InitError(f"{zip_path}: no `bootstrap` at the root of the zip ({names[:5]})")
        archive.extractall(dest)
    os.chmod(os.path.join(dest, "bootstrap"), 0o755)
    return dest
