#!/usr/bin/env python3
"""Measures the init time of the Lambda `bootstrap` binaries on this machine.

    scripts/measure-init.py [--runs N] [--warmup N] [--invoke [--event FILE | --batch RxE]]
                            [--env KEY=VALUE]... [--timeout S] [--json] NAME=PATH...

NAME is ingest, fanout or writer (it picks the environment the function needs); PATH is the
function's `bootstrap.zip` (as scripts/build-lambda.sh leaves it) or an unzipped `bootstrap`.

For each run it starts a tiny emulation of the Lambda Runtime API on 127.0.0.1 (a free port),
launches the bootstrap with AWS_LAMBDA_RUNTIME_API pointing at it and dummy AWS settings, and
takes the wall time from spawn to the first `GET /2018-06-01/runtime/invocation/next`: the
function's init (reading its configuration, loading the AWS config, building the clients; no
network is touched). With --invoke, fanout and writer are then handed one SQS event (empty,
`{"Records":[]}`, the one in --event FILE, or with --batch RxE one of R records of E SparkPost
events each, made from fixtures/sparkpost/batch.json with unique event ids) and the time until they POST its response is
taken too; every AWS endpoint is this emulator (AWS_ENDPOINT_URL), which answers any PUT (an S3
PutObject) with 200, so the writer can run a real batch. Every child is killed at the end of
its run. Prints median and p90 per binary, in milliseconds.
Python 3 standard library only.
"""

import argparse
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

NEXT = "/2018-06-01/runtime/invocation/next"
FUNCTION_ENV = {
    "ingest": {
        "SPARKLAKE_AUTH": "none",
        "SPARKLAKE_INGEST_QUEUE_URL": "http://127.0.0.1:9/queue/ingest",
        "SPARKLAKE_BUCKET": "b",
    },
    "fanout": {"SPARKLAKE_WRITER_QUEUE_URL": "http://127.0.0.1:9/queue/writer"},
    "writer": {"SPARKLAKE_BUCKET": "b"},
}
SQS_FUNCTIONS = {"fanout", "writer"}
REQUEST_ID = "00000000-0000-0000-0000-000000000001"
RESPONSE_PREFIX = "/2018-06-01/runtime/invocation"


def invocation_headers():
    return [
        ("Lambda-Runtime-Aws-Request-Id", REQUEST_ID),
        ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000)),
        (
            "Lambda-Runtime-Invoked-Function-Arn",
            "arn:aws:lambda:us-east-1:000000000000:function:sparklake-measure",
        ),
        ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000"),
    ]


def child_env(name, port):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        # Keep the SDK off the network and off the host's own AWS files: every AWS service
        # endpoint is this emulator, which accepts any PUT (an S3 PutObject) and refuses the rest.
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_LAMBDA_FUNCTION_NAME": f"sparklake-{name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[1]measure",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/sparklake-{name}",
        "LAMBDA_TASK_ROOT": "/var/task",
        "SPARKLAKE_LOG": "warn",
    }
    env.update(FUNCTION_ENV[name])
    return env


def take_request(buf):
    """Removes one complete HTTP/1.1 request from the front of buf: (method, path, body) or None."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    lines = bytes(buf[:head_end]).decode("latin-1").split("\r\n")
    method, path = lines[0].split(" ")[:2]
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    pos = head_end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_end = buf.find(b"\r\n", pos)
            if size_end < 0:
                return None
            size = int(bytes(buf[pos:size_end]).split(b";")[0], 16)
            if len(buf) < size_end + 2 + size + 2:
                return None
            body += buf[size_end + 2 : size_end + 2 + size]
            pos = size_end + 2 + size + 2
            if size == 0:
                break
    else:
        length = int(headers.get("content-length") or 0)
        if len(buf) < pos + length:
            return None
        body = buf[pos : pos + length]
        pos += length
    del buf[:pos]
    return method, path, bytes(body)


def http_response(status, body, headers=()):
    reason = {200: "OK", 202: "Accepted", 404: "Not Found"}[status]
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def one_run(name, bootstrap, event, timeout, extra_env=()):
    """One launch: (init_ms, invoke_ms or None, response body or None, S3 PUTs answered).

    A single-threaded selector loop serves the Runtime API, so the arrival of the first /next is
    seen as soon as the kernel has it (no thread hand-off in the timing).
    """
    puts = 0
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    conns = {}
    stderr = tempfile.TemporaryFile()
    proc = None
    first_next_at = response_at = response_body = None
    nexts = 0
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [bootstrap],
            env={**child_env(name, port), **dict(extra_env)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=os.path.dirname(bootstrap),
        )
        deadline = start + timeout

        def fail(why):
            stderr.seek(0)
            tail = stderr.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"{name}: {why}; stderr:\n{tail}")

        while first_next_at is None or (event is not None and response_at is None):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                fail(
                    "timed out" if first_next_at else "timed out before its first /next"
                )
            if proc.poll() is not None:
                fail(f"exited with {proc.returncode}")
            for key, _ in sel.select(timeout=min(0.05, remaining)):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ)
                    conns[conn] = bytearray()
                    continue
                conn = key.fileobj
                data = conn.recv(65536)
                at = time.perf_counter()
                if not data:
                    sel.unregister(conn)
                    conns.pop(conn, None)
                    conn.close()
                    continue
                buf = conns[conn]
                buf += data
                while (request := take_request(buf)) is not None:
                    method, path, body = request
                    if method == "GET" and path == NEXT:
                        nexts += 1
                        if nexts == 1:
                            first_next_at = at
                            if event is not None:
                                conn.sendall(
                                    http_response(200, event, invocation_headers())
                                )
                        # Any other /next is held (long poll), as between real invocations.
                    elif (
                        method == "POST"
                        and path == f"{RESPONSE_PREFIX}/{REQUEST_ID}/response"
                    ):
                        response_at, response_body = at, body
                        conn.sendall(http_response(202, b'{"status":"OK"}'))
                    elif method == "PUT":
                        puts += 1
                        conn.sendall(
                            http_response(200, b"", [("ETag", f'"{puts:032x}"')])
                        )
                    elif method == "POST" and path.endswith("/error"):
                        fail(f"reported an error: {body[:500]!r}")
                    else:
                        conn.sendall(http_response(404, b"{}"))
        init_ms = (first_next_at - start) * 1000
        invoke_ms = (response_at - first_next_at) * 1000 if event is not None else None
        return init_ms, invoke_ms, response_body, puts
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for conn in conns:
            conn.close()
        sel.close()
        listener.close()
        stderr.close()


def sample_batch_event(records, per_record):
    """An SQS event of `records` messages, each a SparkPost batch of `per_record` events: the
    fixture's events cycled, their event_id made unique so the writer keeps them all."""
    fixture = os.path.join(
        os.path.dirname(__file__), "..", "fixtures", "sparkpost", "batch.json"
    )
    with open(fixture, encoding="utf-8") as f:
        elements = json.load(f)
    out, serial = [], 0
    for r in range(records):
        events = []
        for i in range(per_record):
            element = json.loads(
                json.dumps(elements[(r * per_record + i) % len(elements)])
            )
            for inner in element.get("msys", {}).values():
                if isinstance(inner, dict) and "event_id" in inner:
                    inner["event_id"] = str(10**17 + serial)
                    serial += 1
            events.append(element)
        out.append(
            {
                "messageId": f"m{r}",
                "receiptHandle": f"h{r}",
                "body": json.dumps(events, separators=(",", ":")),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1767225600000",
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:writer",
                "awsRegion": "us-east-1",
            }
        )
    return json.dumps({"Records": out}).encode()


def percentile(values, p):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def unpack(path, workdir, name):
    if zipfile.is_zipfile(path):
        dest = os.path.join(workdir, name)
        os.makedirs(dest)
        with zipfile.ZipFile(path) as archive:
            archive.extract("bootstrap", dest)
        bootstrap = os.path.join(dest, "bootstrap")
        os.chmod(bootstrap, 0o755)
        return bootstrap
    return os.path.abspath(path)


def main():
    parser = argparse.ArgumentParser(
        description="Init time of the Lambda bootstraps against an emulated Runtime API."
    )
    parser.add_argument("targets", nargs="+", metavar="NAME=PATH")
    parser.add_argument(
        "--runs", type=int, default=20, help="runs per binary (default 20)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed runs first (default 2)"
    )
    parser.add_argument(
        "--invoke",
        action="store_true",
        help="also time one empty SQS event (fanout, writer)",
    )
    parser.add_argument(
        "--event",
        metavar="FILE",
        help="with --invoke: the SQS event to send instead of the empty one (its S3 PUTs succeed)",
    )
    parser.add_argument(
        "--batch",
        metavar="RxE",
        help="with --invoke: send R records of E SparkPost events each (writer), e.g. 10x100",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per run (default 10)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more variable for the bootstraps (repeatable), e.g. SSL_CERT_DIR=/nonexistent",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the results as JSON as well"
    )
    args = parser.parse_args()
    if not 1 <= args.runs <= 1000:
        parser.error("--runs must be between 1 and 1000")
    if not 0 <= args.warmup <= 100:
        parser.error("--warmup must be between 0 and 100")

    extra_env = []
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--env expects KEY=VALUE: {item}")
        extra_env.append((key, value))
    event = None
    if args.invoke:
        event = b'{"Records":[]}'
        if args.event and args.batch:
            parser.error("--event and --batch exclude each other")
        if args.event:
            with open(args.event, "rb") as f:
                event = f.read()
        if args.batch:
            r, sep, e = args.batch.partition("x")
            if not (
                sep
                and r.isdigit()
                and e.isdigit()
                and 1 <= int(r) <= 100
                and 1 <= int(e) <= 10000
            ):
                parser.error(
                    "--batch expects RxE, 1 <= R <= 100, 1 <= E <= 10000 (e.g. 10x100)"
                )
            event = sample_batch_event(int(r), int(e))
    elif args.event or args.batch:
        parser.error("--event and --batch need --invoke")

    workdir = tempfile.mkdtemp(prefix="sparklake-measure-init-")
    results = {}
    try:
        for target in args.targets:
            name, sep, path = target.partition("=")
            if not sep or name not in FUNCTION_ENV:
                parser.error(
                    f"expected NAME=PATH with NAME one of {sorted(FUNCTION_ENV)}: {target}"
                )
            bootstrap = unpack(path, workdir, f"{name}-{len(results)}")
            sqs_event = event if name in SQS_FUNCTIONS else None
            for _ in range(args.warmup):
                one_run(name, bootstrap, sqs_event, args.timeout, extra_env)
            inits, invokes, body = [], [], None
            for _ in range(args.runs):
                init_ms, invoke_ms, body, puts = one_run(
                    name, bootstrap, sqs_event, args.timeout, extra_env
                )
                inits.append(init_ms)
                if invoke_ms is not None:
                    invokes.append(invoke_ms)
            result = {
                "path": path,
                "runs": args.runs,
                "init_median_ms": round(statistics.median(inits), 2),
                "init_p90_ms": round(percentile(inits, 90), 2),
                "init_min_ms": round(min(inits), 2),
                "init_max_ms": round(max(inits), 2),
            }
            if invokes:
                result["invoke_median_ms"] = round(statistics.median(invokes), 2)
                result["invoke_p90_ms"] = round(percentile(invokes, 90), 2)
                result["invoke_response"] = (
                    body.decode(errors="replace") if body else None
                )
                result["invoke_s3_puts"] = puts
            results[target] = result
            line = (
                f"{name:<7} init median {result['init_median_ms']:7.2f} ms  "
                f"p90 {result['init_p90_ms']:7.2f} ms  "
                f"(min {result['init_min_ms']:.2f}, max {result['init_max_ms']:.2f}, n={args.runs})"
            )
            if invokes:
                line += (
                    f"  | SQS event median {result['invoke_median_ms']:.2f} ms"
                    f"  p90 {result['invoke_p90_ms']:.2f} ms, {puts} PUTs"
                    f" -> {result['invoke_response']}"
                )
            print(line, flush=True)
    except (RuntimeError, OSError) as err:
        print(f"measure-init: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
