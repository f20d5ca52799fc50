#!/usr/bin/env python3
"""faultproxy: an HTTP proxy in front of an AWS API emulator that injects faults.

Point the AWS SDK at it (AWS_ENDPOINT_URL=http://127.0.0.1:PORT) and it forwards every call to
the upstream endpoint (moto's server), except a configurable share of calls per service, for
which it injects one of these faults, in each service's own wire format:

  error         HTTP 500 InternalError (SQS JSON protocol, S3 XML, Firehose JSON)
  throttle      SQS: 400 RequestThrottled (`__type` and `x-amzn-query-error`, as the SDK parses
                them); S3: 503 SlowDown (XML); Firehose: 503 ServiceUnavailableException
  close-before  reads the request, then resets the connection: the call never reached the service
  close-after   forwards the request, then resets the connection instead of answering: the call
                took effect, but the client saw an error (the nasty one: a retry repeats it)

Services are told apart by the request: `X-Amz-Target` (AmazonSQS.*, Firehose_20150804.*),
else the SigV4 credential scope of `Authorization`; S3 is the rest. Calls to moto's own API
(/moto-api/) are never faulted.

Stdlib only (ThreadingHTTPServer + http.client, keep-alive on both sides), so it runs wherever
the tests run, with nothing to install. Seeded: faults are drawn from one random.Random(seed) in
the order calls arrive (concurrent calls may arrive in a different order from run to run, so the
same seed gives the same share, not the same calls).

It prints `faultproxy listening on http://127.0.0.1:PORT/` on stdout once it accepts, counts
calls and injected faults per service, operation and kind, serves them as JSON at
GET /__faultproxy/stats, writes them to --stats-file on every change of config and on exit
(SIGTERM/SIGINT), and takes a new config at POST /__faultproxy/config (JSON: {"rate": 0.0} or
{"rates": {"s3": 0.2}}) so a test can turn faults off and on.

  python3 scripts/faultproxy.py --upstream http://127.0.0.1:5000 --rate 0.1 --seed 7
"""

import argparse
import http.client
import http.server
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import urllib.parse

SERVICES = ("sqs", "s3", "firehose")
KINDS = ("error", "throttle", "close-before", "close-after")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
}
CONTROL = "/__faultproxy/"


def classify(method, path, headers):
    """(service, operation) of a request."""
    target = headers.get("X-Amz-Target", "")
    if target.startswith("AmazonSQS."):
        return "sqs", target.split(".", 1)[1]
    if target.startswith("Firehose_"):
        return "firehose", target.split(".", 1)[1]
    auth = headers.get("Authorization", "")
    scope = ""
    if "Credential=" in auth:
        parts = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(parts) >= 4:
            scope = parts[3]
    if scope in ("sqs", "firehose"):
        return scope, target or method
    if scope and scope != "s3":
        return scope, target or method
    return "s3", s3_operation(method, path)


def s3_operation(method, path):
    url = urllib.parse.urlsplit(path)
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    segments = [s for s in url.path.split("/") if s]
    has_key = len(segments) > 1
    if method == "PUT":
        return "PutObject" if has_key else "CreateBucket"
    if method == "GET":
        if has_key:
            return "GetObject"
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "DELETE":
        return "DeleteObject" if has_key else "DeleteBucket"
    if method == "POST":
        return "DeleteObjects" if "delete" in query else "PostObject"
    return method


def fault_response(service, kind):
    """(status, headers, body) of an injected error answer."""
    if service == "s3":
        code, message, status = (
            ("SlowDown", "Please reduce your request rate.", 503)
            if kind == "throttle"
            else ("InternalError", "We encountered an internal error. Please try again.", 500)
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>FAULTPROXY</RequestId><HostId>faultproxy</HostId></Error>"
        ).encode()
        return status, {"Content-Type": "application/xml", "x-amz-request-id": "FAULTPROXY"}, body
    if service == "sqs":
        # SQS's JSON protocol (awsQueryCompatible): the SDK takes the code from
        # `x-amzn-query-error` when present, else from `__type`.
        code, status, fault = (
            ("RequestThrottled", 400, "Sender")
            if kind == "throttle"
            else ("InternalError", 500, "Receiver")
        )
        body = json.dumps(
            {"__type": f"com.amazonaws.sqs#{code}", "message": f"faultproxy: {code}"}
        ).encode()
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "x-amzn-query-error": f"{code};{fault}",
            "x-amzn-RequestId": "FAULTPROXY",
        }
        return status, headers, body
    code, status = (
        ("ServiceUnavailableException", 503) if kind == "throttle" else ("InternalFailure", 500)
    )
    body = json.dumps({"__type": code, "message": f"faultproxy: {code}"}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "FAULTPROXY"}
    return status, headers, body


class Faults:
    """The fault plan and what was done: thread-safe."""

    def __init__(self, rates, kinds, seed, stats_file):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.seed = seed
        self.rates = dict(rates)
        self.kinds = list(kinds)
        self.stats_file = stats_file
        self.calls = {}  # service -> operation -> count
        self.injected = {}  # service -> kind -> operation -> count

    def decide(self, service, operation):
        """The fault to inject into this call, or None to forward it."""
        with self.lock:
            svc = self.calls.setdefault(service, {})
            svc[operation] = svc.get(operation, 0) + 1
            draw, pick = self.rng.random(), self.rng.randrange(len(self.kinds))
            if draw >= self.rates.get(service, 0.0):
                return None
            kind = self.kinds[pick]
            ops = self.injected.setdefault(service, {}).setdefault(kind, {})
            ops[operation] = ops.get(operation, 0) + 1
            return kind

    def configure(self, update):
        with self.lock:
            if "rate" in update:
                self.rates = {s: float(update["rate"]) for s in SERVICES}
            for service, rate in (update.get("rates") or {}).items():
                self.rates[service] = float(rate)
            if "kinds" in update:
                self.kinds = [k for k in update["kinds"] if k in KINDS] or list(KINDS)
        self.write()

    def snapshot(self):
        with self.lock:
            calls = {s: dict(ops) for s, ops in self.calls.items()}
            injected = {
                s: {k: dict(ops) for k, ops in kinds.items()} for s, kinds in self.injected.items()
            }
            summary = {}
            for service, ops in calls.items():
                by_kind = {
                    kind: sum(injected.get(service, {}).get(kind, {}).values()) for kind in KINDS
                }
                summary[service] = {
                    "calls": sum(ops.values()),
                    "injected": sum(by_kind.values()),
                    **by_kind,
                }
            return {
                "seed": self.seed,
                "rates": dict(self.rates),
                "kinds": list(self.kinds),
                "summary": summary,
                "calls": calls,
                "injected": injected,
            }

    def write(self):
        if not self.stats_file:
            return
        text = json.dumps(self.snapshot(), indent=1, sort_keys=True)
        tmp = self.stats_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, self.stats_file)


class Upstream(threading.local):
    """One keep-alive connection to the upstream per proxy thread."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = None

    def request(self, method, path, body, headers):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, response.getheaders(), data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise RuntimeError("unreachable")


def make_handler(faults, upstream, verbose):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

        def log_message(self, fmt, *args):
            if verbose:
                sys.stderr.write("faultproxy: " + (fmt % args) + "\n")

        def read_body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def reset(self):
            """Closes the connection abruptly (RST), as a dying load balancer or host would."""
            try:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            except OSError:
                pass
            self.close_connection = True

        def answer(self, status, headers, body):
            self.send_response_only(status)
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP and name.lower() not in ("date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def control(self, body):
            if self.command == "POST" and self.path == CONTROL + "config":
                faults.configure(json.loads(body or b"{}"))
            payload = json.dumps(faults.snapshot()).encode()
            self.answer(200, [("Content-Type", "application/json")], payload)

        def handle_any(self):
            body = self.read_body()
            if self.path.startswith(CONTROL):
                return self.control(body)
            service, operation = classify(self.command, self.path, self.headers)
            kind = None if self.path.startswith("/moto-api") else faults.decide(service, operation)
            if kind == "close-before":
                return self.reset()
            if kind in ("error", "throttle"):
                status, headers, payload = fault_response(service, kind)
                return self.answer(status, list(headers.items()), payload)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            try:
                status, response_headers, payload = upstream.request(
                    self.command, self.path, body, headers
                )
            except (http.client.HTTPException, OSError) as e:
                message = json.dumps({"message": f"faultproxy: upstream failed: {e}"}).encode()
                return self.answer(502, [("Content-Type", "application/json")], message)
            if kind == "close-after":
                return self.reset()
            self.answer(status, response_headers, payload)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = handle_any

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:5000")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: a free one)")
    parser.add_argument("--rate", type=float, default=0.1, help="share of calls faulted, per service")
    for service in SERVICES:
        parser.add_argument(f"--rate-{service}", type=float, help=f"override --rate for {service}")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated fault kinds, drawn evenly"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stats-file", help="where to write the counts (JSON)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args()

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        parser.error(f"--kinds: expected some of {','.join(KINDS)}")
    rates = {s: args.rate for s in SERVICES}
    for service in SERVICES:
        override = getattr(args, f"rate_{service}")
        if override is not None:
            rates[service] = override
    upstream = urllib.parse.urlsplit(args.upstream)
    host, _, port = args.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--listen: loopback addresses only")

    faults = Faults(rates, kinds, args.seed, args.stats_file)
    handler = make_handler(
        faults, Upstream(upstream.hostname, upstream.port or 80), args.verbose
    )
    server = Server((host, int(port)), handler)

    def stop(signum, _frame):
        faults.write()
        sys.stderr.write(
            "faultproxy: stopping; injected "
            + json.dumps(faults.snapshot()["summary"], sort_keys=True)
            + "\n"
        )
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    faults.write()
    print(f"faultproxy listening on http://{host}:{server.server_address[1]}/", flush=True)
    server.serve_forever()
    faults.write()


if __name__ == "__main__":
    main()
