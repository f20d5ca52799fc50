"""The deploy rehearsal: template.yaml deployed into moto and run as AWS runs it (scripts/rehearse).

Every step either holds or stops the rehearsal with the reason; exit status 0 means all held.
"""

from __future__ import annotations

import argparse
import base64
import csv
import fnmatch
import gzip
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

import metrics_check
from cfn import Stack, TemplateError, load, sam_transform
from deploy import Deployment
from errors import Failed
from lambda_rt import InitError, LambdaFunction, unpack

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
STACK = "rehearsal"

# The deployment's parameter values (as `sam deploy --parameter-overrides` would give them): the
# network and certificate are placeholders (no VPC, ALB or TLS is emulated), the writer's
# batching window is short and compaction takes any partition of two objects at once, so a
# rehearsal takes seconds, not the minutes the defaults are tuned for.
PARAMETERS = {
    "VpcId": "vpc-0rehearsal",
    "PublicSubnetIds": "subnet-0rehearsala,subnet-0rehearsalb",
    "CertificateArn": f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/00000000-0000-0000-0000-rehearsal000",
    "AuthMode": "bearer",
    "WriterBatchingWindowSeconds": "1",
    "CompactMinObjects": "2",
    "CompactSettleSeconds": "0",
}

# Variables Lambda itself defines; a function's environment may not set them.
RESERVED = {
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
}
TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml")


def say(text):
    print(f"rehearse: {text}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------
# moto


class Moto:
    def __init__(self, work: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.clock = work / "moto-clock"
        self.clock.write_text("0")
        self.offset = 0.0
        self.log = open(work / "moto.log", "wb")
        self.scanned, self.refused, self.undelivered = 0, [], []
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "moto_aws.py"), str(self.port), str(self.clock)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=str(work))
        for _ in range(300):
            if self.proc.poll() is not None:
                raise Failed(f"moto exited: {(work / 'moto.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise Failed("moto did not start")

    def enforce_iam(self):
        """From now on every call is authenticated and authorised by IAM (moto's reset-auth)."""
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}))

    def advance(self, seconds):
        """SQS's clock moves on by `seconds` (visibility timeouts pass)."""
        self.offset += seconds
        self.clock.write_text(str(self.offset))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()

    def _scan(self):
        """moto_aws.py's own lines (IAM refusals, failed Firehose deliveries), read from where
        the last scan stopped."""
        with open(self.log.name, "rb") as f:
            f.seek(self.scanned)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next scan
        self.scanned += end
        for line in data[:end].decode(errors="replace").splitlines():
            if line.startswith("IAM "):
                self.refused.append(line)
            elif line.startswith("FIREHOSE DELIVERY FAILED"):
                self.undelivered.append(line)

    def denials(self):
        """What IAM refused, as moto_aws.py logs it."""
        self._scan()
        return self.refused

    def firehose_failures(self):
        self._scan()
        return self.undelivered


def clients_for(moto, credentials):
    session = boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials.get("SessionToken"),
        region_name=REGION)
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    cache = {}

    def client(service):
        if service not in cache:
            cache[service] = session.client(service, endpoint_url=moto.url, config=config)
        return cache[service]

    return client


# ------------------------------------------------------------------------------------------
# logs


class Logs:
    """Every line each function printed, in order, with a fail-fast watch for denied calls."""

    def __init__(self, work: Path):
        self.lines = []  # (function, stream, text)
        self.lock = threading.Lock()
        self.files = {}
        self.work = work
        self.denied = []

    def __call__(self, function, stream, text):
        with self.lock:
            self.lines.append((function, stream, text))
            if function not in self.files:
                self.files[function] = open(self.work / f"{function}.log", "w")
            self.files[function].write(f"{stream}\t{text}\n")
            self.files[function].flush()
            if "AccessDenied" in text or "not authorized to perform" in text:
                self.denied.append((function, text))

    def of(self, function, stream=None):
        with self.lock:
            return [t for f, s, t in self.lines if f == function and (stream is None or s == stream)]

    def emf(self):
        out = []
        with self.lock:
            for f, s, t in self.lines:
                if s == "stdout" and t.startswith("{"):
                    try:
                        doc = json.loads(t)
                    except ValueError:
                        continue
                    if isinstance(doc, dict) and "_aws" in doc:
                        out.append(doc)
        return out

    def close(self):
        for f in self.files.values():
            f.close()


# ------------------------------------------------------------------------------------------
# the rehearsal


class Rehearsal:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work or tempfile.mkdtemp(prefix="sparklake-rehearsal-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.logs = Logs(self.work)
        self.moto = None
        self.functions = {}  # logical -> LambdaFunction
        self.pollers = []
        self.running = True
        self.poll_errors = []
        self.token = "rehearsal-" + secrets.token_urlsafe(24)
        self.events_posted = {}  # (type, event_id or raw) -> 1
        self.report = {}

    # -- deploy -----------------------------------------------------------------------------
    def deploy(self):
        self.moto = Moto(self.work)
        bootstrap = clients_for(self.moto, {"AccessKeyId": "bootstrap", "SecretAccessKey": "bootstrap"})
        iam = bootstrap("iam")
        iam.create_user(UserName="rehearsal-operator")
        iam.put_user_policy(UserName="rehearsal-operator", PolicyName="operator", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="rehearsal-operator")["AccessKey"]
        self.operator_credentials = key
        self.admin = clients_for(self.moto, key)
        secret = self.admin("secretsmanager").create_secret(
            Name=f"{STACK}/webhook", SecretString=json.dumps({"SPARKLAKE_BEARER_TOKENS": self.token}))
        params = dict(PARAMETERS, AuthSecretArn=secret["ARN"])

        source = load(self.args.template)
        template = sam_transform(source, REGION)
        self.stack = Stack(template, params, STACK, REGION, ACCOUNT)
        self.deployment = Deployment(self.stack, self.admin)
        self.deployment.run()
        say(f"deployed {len(self.stack.physical)} resources of {self.args.template} into moto at {self.moto.url}")

        # Each function's credentials: its execution role, assumed as Lambda assumes it.
        sts = self.admin("sts")
        self.role_credentials = {}
        for logical, p in self.deployment.functions.items():
            trust = json.dumps(self.iam_role_by_arn(p["Role"])["AssumeRolePolicyDocument"])
            if "lambda.amazonaws.com" not in trust:
                raise Failed(f"{logical}: its role {p['Role']} does not trust lambda.amazonaws.com")
            creds = sts.assume_role(RoleArn=p["Role"], RoleSessionName=p["FunctionName"][:64])["Credentials"]
            self.role_credentials[logical] = creds
        self.moto.enforce_iam()
        self.admin = clients_for(self.moto, key)

    def iam_role_by_arn(self, arn):
        name = arn.split("/")[-1]
        return self.admin("iam").get_role(RoleName=name)["Role"]

    def function_by_name(self, ref):
        for logical, p in self.deployment.functions.items():
            if ref in (p["FunctionName"], self.stack.attributes[logical]["Arn"], logical):
                return logical
        raise Failed(f"no function named {ref}")

    def queue_by_arn(self, arn):
        for logical, url in self.deployment.queues.items():
            if self.stack.attributes[logical]["Arn"] == arn:
                return logical, url
        raise Failed(f"no queue with ARN {arn}")

    # -- functions --------------------------------------------------------------------------
    def start_functions(self):
        zips = Path(self.args.zips)
        for logical, p in self.deployment.functions.items():
            binary = self.stack.template["Resources"][logical].get("Metadata", {}).get("BuildProperties", {}).get("Binary")
            if not binary:
                raise Failed(f"{logical}: no Metadata.BuildProperties.Binary names its binary")
            zip_path = zips / binary / "bootstrap.zip"
            if not zip_path.is_file():
                raise Failed(f"{logical}: {zip_path} missing (scripts/build-lambda.sh builds it)")
            if p.get("Runtime") != "provided.al2023" or p.get("Handler") != "bootstrap":
                raise Failed(f"{logical}: Runtime {p.get('Runtime')}/Handler {p.get('Handler')}: the zips are provided.al2023 bootstraps")
            task = unpack(zip_path, self.work / "functions" / logical / "task")
            tmp = self.work / "functions" / logical / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            variables = {k: str(v) for k, v in p.get("Environment", {}).get("Variables", {}).items()}
            reserved = sorted(set(variables) & RESERVED)
            if reserved:
                raise Failed(f"{logical}: Lambda refuses reserved environment variables {reserved}")
            size = sum(len(k) + len(v) for k, v in variables.items())
            if size > 4096:
                raise Failed(f"{logical}: environment of {size} bytes, over Lambda's 4 KB")
            creds = self.role_credentials[logical]
            logging_config = p.get("LoggingConfig", {})
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "LANG": "en_US.UTF-8",
                "TZ": ":UTC",
                "_HANDLER": p["Handler"],
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_LAMBDA_FUNCTION_NAME": p["FunctionName"],
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(p.get("MemorySize", 128)),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_LAMBDA_LOG_GROUP_NAME": logging_config.get("LogGroup", f"/aws/lambda/{p['FunctionName']}"),
                "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                "AWS_SESSION_TOKEN": creds["SessionToken"],
                "LAMBDA_TASK_ROOT": str(task),
                "LAMBDA_RUNTIME_DIR": str(task),
                # Not Lambda's: the emulator's endpoint, path-style S3 (moto has no bucket
                # host names), this host's AWS files kept out, /tmp per function.
                "AWS_ENDPOINT_URL": self.moto.url,
                "SPARKLAKE_S3_FORCE_PATH_STYLE": "true",
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "TMPDIR": str(tmp),
            }
            if logging_config.get("LogFormat") == "JSON":
                env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
                if "ApplicationLogLevel" in logging_config:
                    env["AWS_LAMBDA_LOG_LEVEL"] = logging_config["ApplicationLogLevel"]
            env.update(variables)
            fn = LambdaFunction(logical, p["FunctionName"], self.stack.attributes[logical]["Arn"], str(task), env,
                                int(p.get("Timeout", 3)), int(p.get("MemorySize", 128)), self.logs)
            self.functions[logical] = fn
            try:
                fn.start()
            except InitError as e:
                raise Failed(f"{e}\n{self.tail(logical)}") from e
        say("functions initialised: " + ", ".join(f"{lg} ({f.name})" for lg, f in self.functions.items()))

    def tail(self, logical, n=15):
        return "\n".join(f"  {t}" for t in self.logs.of(logical)[-n:])

    # -- event source mappings (Lambda's SQS poller) ----------------------------------------
    def start_pollers(self):
        for m in self.deployment.mappings:
            logical = self.function_by_name(m["FunctionName"])
            fn = self.functions[logical]
            queue_logical, url = self.queue_by_arn(m["EventSourceArn"])
            qp = self.stack.properties(queue_logical)
            batch = int(m.get("BatchSize", 10))
            window = int(m.get("MaximumBatchingWindowInSeconds", 0))
            types = m.get("FunctionResponseTypes", [])
            # CreateEventSourceMapping's own checks.
            if not 1 <= batch <= 10000:
                raise Failed(f"{logical}: BatchSize {batch} outside 1..10000")
            if batch > 10 and window < 1:
                raise Failed(f"{logical}: BatchSize {batch} > 10 needs MaximumBatchingWindowInSeconds >= 1")
            if window > 300:
                raise Failed(f"{logical}: MaximumBatchingWindowInSeconds {window} > 300")
            if set(types) - {"ReportBatchItemFailures"}:
                raise Failed(f"{logical}: FunctionResponseTypes {types}")
            visibility = int(qp.get("VisibilityTimeout", 30))
            if visibility < fn.timeout:
                raise Failed(f"{logical}: queue {queue_logical} visibility timeout {visibility} s is less than the function timeout {fn.timeout} s")
            concurrency = m.get("ScalingConfig", {}).get("MaximumConcurrency")
            if concurrency is not None and not 2 <= int(concurrency) <= 1000:
                raise Failed(f"{logical}: ScalingConfig.MaximumConcurrency {concurrency} outside 2..1000")
            sqs = clients_for(self.moto, self.role_credentials[logical])("sqs")
            try:
                # Lambda checks the execution role can read the queue when the mapping is created.
                sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
            except Exception as e:
                raise Failed(f"{logical}: its role cannot GetQueueAttributes on {queue_logical}: {e}") from e
            poller = Poller(self, fn, sqs, url, m["EventSourceArn"], batch, window, "ReportBatchItemFailures" in types)
            self.pollers.append(poller)
            threading.Thread(target=poller.run, daemon=True).start()
            say(f"event source {queue_logical} -> {logical}: batch {batch}, window {window} s, "
                f"max concurrency {concurrency or '-'} (one warm instance here), item failures {'on' if poller.partial else 'off'}")

    def check_fast(self):
        denied = self.moto.denials()
        if denied:
            raise Failed(f"IAM refused a call: {denied[0]}")
        if self.logs.denied:
            function, text = self.logs.denied[0]
            raise Failed(f"{function}: a call was denied by IAM: {text[:600]}")
        if self.poll_errors:
            raise Failed(self.poll_errors[0])

    # -- ALB -> ingest ----------------------------------------------------------------------
    def setup_alb(self):
        listeners = [p for p in self.deployment.listeners if p.get("Protocol") == "HTTPS"]
        if not listeners:
            raise Failed("no HTTPS listener")
        actions = [a for a in listeners[0].get("DefaultActions", []) if a.get("Type") == "forward"]
        if not actions:
            raise Failed("the HTTPS listener forwards to no target group")
        tg_arn = actions[0].get("TargetGroupArn")
        tg = next((t for t in self.deployment.target_groups.values() if t["TargetGroupArn"] == tg_arn), None)
        if tg is None:
            raise Failed(f"the HTTPS listener forwards to {tg_arn}, no target group of the stack")
        if tg.get("TargetType") != "lambda":
            raise Failed(f"target group type {tg.get('TargetType')}, not lambda")
        (target,) = tg.get("Targets", [{}])
        logical = self.function_by_name(target.get("Id", ""))
        allowed = [p for p in self.deployment.permissions
                   if p.get("Principal") == "elasticloadbalancing.amazonaws.com"
                   and p.get("Action") == "lambda:InvokeFunction"
                   and self.function_by_name(p["FunctionName"]) == logical
                   and fnmatch.fnmatchcase(tg_arn, p.get("SourceArn", "*"))]
        if not allowed:
            raise Failed(f"no Lambda permission lets elasticloadbalancing.amazonaws.com invoke {logical} from {tg_arn}")
        attrs = {a["Key"]: a["Value"] for a in tg.get("TargetGroupAttributes", [])}
        self.alb = {"function": self.functions[logical], "tg_arn": tg_arn,
                    "multi_value": attrs.get("lambda.multi_value_headers.enabled", "false") == "true"}
        say(f"ALB: HTTPS listener -> {tg_arn.split(':')[-1]} -> {logical} (multi-value headers {'on' if self.alb['multi_value'] else 'off'})")

    def post(self, body: bytes, headers, path="/", method="POST", query=None):
        """One request through the ALB: the Lambda event it makes, the response it returns."""
        multi = self.alb["multi_value"]
        lower = {}
        for k, v in headers:
            lower.setdefault(k.lower(), []).append(v)
        ctype = (lower.get("content-type") or [""])[-1]
        binary = "content-encoding" in lower or not ctype.startswith(TEXT_TYPES)
        event = {
            "requestContext": {"elb": {"targetGroupArn": self.alb["tg_arn"]}},
            "httpMethod": method,
            "path": path,
            "isBase64Encoded": binary,
            "body": base64.b64encode(body).decode() if binary else body.decode("utf-8"),
        }
        query = query or {}
        lower.setdefault("x-forwarded-for", ["54.244.48.1"])
        lower.setdefault("x-forwarded-proto", ["https"])
        lower.setdefault("x-forwarded-port", ["443"])
        lower.setdefault("host", ["hooks.rehearsal.example"])
        lower["x-amzn-trace-id"] = [f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}"]
        if multi:
            event["multiValueHeaders"] = lower
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
        else:
            event["headers"] = {k: v[-1] for k, v in lower.items()}
            event["queryStringParameters"] = query
        result = self.alb["function"].invoke(json.dumps(event).encode())
        if not result.ok:
            return 502, {}, b""
        try:
            doc = result.json()
            status = int(doc["statusCode"])
        except (ValueError, KeyError, TypeError):
            return 502, {}, b""
        headers_out = doc.get("multiValueHeaders") if multi else doc.get("headers")
        body_out = doc.get("body") or ""
        body_out = base64.b64decode(body_out) if doc.get("isBase64Encoded") else body_out.encode()
        return status, headers_out or {}, body_out

    # -- the traffic ------------------------------------------------------------------------
    def batches(self, count, per_batch):
        with open(ROOT / "fixtures" / "sparkpost" / "batch.json") as f:
            elements = json.load(f)
        serial = 0
        for b in range(count):
            events = []
            for i in range(per_batch):
                element = json.loads(json.dumps(elements[(b * per_batch + i) % len(elements)]))
                for cls, inner in element.get("msys", {}).items():
                    serial += 1
                    if "event_id" in inner:
                        inner["event_id"] = f"9{serial:017d}"
                        key = (inner["type"], inner["event_id"])
                    else:
                        inner["sms_dst"] = f"1555{serial:07d}"
                        key = (inner["type"], inner["sms_dst"])
                    self.events_posted[key] = element
                events.append(element)
            yield events

    def traffic(self):
        auth = ("Authorization", f"Bearer {self.token}")
        status, _, _ = self.post(b'[{"msys":{}}]', [("Content-Type", "application/json"), auth])
        if status != 200:
            raise Failed(f"the ping answered {status}, not 200")
        status, _, _ = self.post(b'[{"msys":{}}]', [("Content-Type", "application/json"), ("Authorization", "Bearer wrong")])
        if status != 401:
            raise Failed(f"a wrong token answered {status}, not 401")
        status, _, _ = self.post(b"", [], path="/health", method="GET")
        if status != 200:
            raise Failed(f"GET /health answered {status}, not 200")
        status, _, _ = self.post(b'{"not": "an array"', [("Content-Type", "application/json"), auth])
        if status != 400:
            raise Failed(f"a malformed batch answered {status}, not 400")
        sent = 0
        for n, events in enumerate(self.batches(self.args.batches, self.args.events_per_batch)):
            body = json.dumps(events).encode()
            headers = [("Content-Type", "application/json"), ("User-Agent", "SparkPost"),
                       ("X-MessageSystems-Batch-ID", f"rehearsal-{n}")]
            # SparkPost's own header casing, and other clients' (the ALB lowercases them).
            headers.append(("AUTHORIZATION" if n % 3 == 1 else "Authorization", auth[1]))
            if n % 4 == 3:
                body = gzip.compress(body)
                headers.append(("Content-Encoding", "gzip"))  # the ALB base64-encodes this body
            status, _, answer = self.post(body, headers)
            if status != 200:
                raise Failed(f"batch {n} answered {status}: {answer[:300]!r}\n{self.tail('IngestFunction')}")
            sent += len(events)
            self.check_fast()
        say(f"posted {self.args.batches} batches ({sent} events) through the ALB: each 200; ping 200, wrong token 401, malformed 400")

    # -- waiting on the lake ----------------------------------------------------------------
    def bucket(self):
        (name,) = self.deployment.buckets.values()
        return name

    def objects(self, prefix):
        s3 = self.admin("s3")
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket(), Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def lake_rows(self, fmt):
        import pyarrow.parquet as pq

        s3 = self.admin("s3")
        rows = []
        for key in self.objects(f"{fmt}/"):
            data = s3.get_object(Bucket=self.bucket(), Key=key)["Body"].read()
            if fmt == "parquet":
                table = pq.read_table(io.BytesIO(data), columns=["type", "event_id", "sms_dst", "raw"])
                for r in table.to_pylist():
                    rows.append((key, r))
            else:
                for r in csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")):
                    rows.append((key, {k: (v if v != "" else None) for k, v in r.items() if k in ("type", "event_id", "sms_dst", "raw")}))
        return rows

    def lake_counts(self, fmt):
        counts = {}
        for key, r in self.lake_rows(fmt):
            ident = (r["type"], r["event_id"] if r["event_id"] is not None else r["sms_dst"])
            if f"event_type={r['type']}/" not in key:
                raise Failed(f"{key} holds a {r['type']} row")
            counts[ident] = counts.get(ident, 0) + 1
        return counts

    def wait_for(self, what, test, timeout):
        deadline = time.monotonic() + timeout
        while True:
            self.check_fast()
            value = test()
            if value:
                return value
            if time.monotonic() > deadline:
                raise Failed(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.5)

    def check_lake(self, stage):
        expected = set(self.events_posted)
        for fmt in ("parquet", "csv"):
            def complete():
                counts = self.lake_counts(fmt)
                return counts if set(counts) >= expected else None
            counts = self.wait_for(f"every event in {fmt}/ ({stage})", complete, self.args.timeout)
            extra = set(counts) - expected
            twice = {k: n for k, n in counts.items() if n != 1}
            if extra or twice:
                raise Failed(f"{fmt}/ ({stage}): {len(extra)} unexpected events, {len(twice)} held more than once: {list(twice.items())[:3]}")
        say(f"lake ({stage}): all {len(expected)} events in parquet/ and csv/, each once")

    def check_archive(self):
        stream = next((p for p in self.stack.template["Resources"].values() if p["Type"] == "AWS::KinesisFirehose::DeliveryStream"), None)
        if stream is None:
            return
        logical = next(k for k, v in self.stack.template["Resources"].items() if v is stream)
        config = self.stack.properties(logical)["ExtendedS3DestinationConfiguration"]
        prefix = config["Prefix"].split("!{")[0]
        today = time.strftime("%Y-%m-%d", time.gmtime())
        expected_prefix = config["Prefix"].replace("!{timestamp:yyyy-MM-dd}", today)

        def archived():
            seen = set()
            s3 = self.admin("s3")
            for key in self.objects(prefix):
                if not key.startswith(expected_prefix):
                    raise Failed(f"archive object {key} is not under {expected_prefix}")
                data = s3.get_object(Bucket=self.bucket(), Key=key)["Body"].read()
                if config.get("CompressionFormat") == "GZIP":
                    data = gzip.decompress(data)
                for line in data.decode().splitlines():
                    if line.strip():
                        doc = json.loads(line)
                        (inner,) = doc["msys"].values()
                        seen.add((inner["type"], inner.get("event_id") or inner.get("sms_dst")))
            failures = self.moto.firehose_failures()
            if failures:
                raise Failed(failures[0])
            return seen >= set(self.events_posted)
        self.wait_for(f"the raw archive under {expected_prefix}", archived, self.args.timeout)
        say(f"raw archive: every event under {expected_prefix} (gzip NDJSON, Firehose {logical})")

    def check_quarantine(self):
        keys = self.wait_for("the malformed batch under quarantine/", lambda: self.objects("quarantine/"), 10)
        say(f"quarantine: the malformed batch kept as {keys[0]}")

    # -- poison -> DLQ -> redrive ------------------------------------------------------------
    def poison(self):
        """An unreadable message on each consumer's queue: reported failed every time, it must
        reach the queue's DLQ after maxReceiveCount receives (SQS's clock skips each visibility
        timeout), and scripts/redrive must bring it back."""
        sqs = self.admin("sqs")

        def depth(u):
            a = sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])

        targets = []
        for m in self.deployment.mappings:
            fn_logical = self.function_by_name(m["FunctionName"])
            queue_logical, url = self.queue_by_arn(m["EventSourceArn"])
            qp = self.stack.properties(queue_logical)
            policy = qp.get("RedrivePolicy")
            if not policy:
                raise Failed(f"{queue_logical} has no RedrivePolicy: a poison message would be retried for its whole retention")
            dlq_logical, dlq_url = self.queue_by_arn(policy["deadLetterTargetArn"])
            sent = sqs.send_message(QueueUrl=url, MessageBody=f"this is not a sparklake message ({fn_logical})")
            targets.append({"fn": fn_logical, "queue": queue_logical, "url": url, "dlq": dlq_logical, "dlq_url": dlq_url,
                            "poller": next(p for p in self.pollers if p.url == url), "id": sent["MessageId"],
                            "visibility": int(qp.get("VisibilityTimeout", 30)),
                            "max": int(policy["maxReceiveCount"]), "receives": 0, "dead": False})

        for _ in range(max(t["max"] for t in targets) + 2):
            pending = [t for t in targets if not t["dead"]]
            if not pending:
                break
            for t in pending:
                # The function takes it and reports it failed; it stays in flight for the
                # queue's visibility timeout.
                self.wait_for(f"{t['fn']} to answer for the poison message on {t['queue']}",
                              lambda: t["poller"].finished.get(t["id"], 0) > t["receives"] or depth(t["dlq_url"])[0] == 1,
                              self.args.timeout)
                if depth(t["dlq_url"])[0] == 1:
                    t["dead"] = True
                    continue
                t["receives"] += 1
                if depth(t["url"]) == (0, 0):
                    raise Failed(f"the poison message left {t['queue']} without reaching {t['dlq']}: "
                                 f"deleted although {t['fn']} reported it failed")
            self.moto.advance(max(t["visibility"] for t in pending) + 1)
        for t in targets:
            self.wait_for(f"the poison message in {t['dlq']}", lambda: depth(t["dlq_url"])[0] == 1, self.args.timeout)
            say(f"poison: an unreadable message on {t['queue']} failed {t['receives']} times in {t['fn']}, "
                f"then moved to {t['dlq']} (maxReceiveCount {t['max']})")

        outputs = self.stack.outputs()
        env = dict(os.environ, SPARKLAKE_STACK_OUTPUTS=json.dumps(outputs), AWS_ENDPOINT_URL=self.moto.url,
                   AWS_ACCESS_KEY_ID=self.operator_credentials["AccessKeyId"],
                   AWS_SECRET_ACCESS_KEY=self.operator_credentials["SecretAccessKey"],
                   AWS_REGION=REGION, AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        env.pop("AWS_SESSION_TOKEN", None)
        if self.args.sparklake:
            env["SPARKLAKE_BIN"] = self.args.sparklake
        done = subprocess.run([str(ROOT / "scripts" / "redrive"), "--stack", STACK, "--queue", "all"],
                              env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise Failed(f"scripts/redrive failed ({done.returncode}): {done.stderr[-1500:]}")
        for t in targets:
            self.wait_for(f"{t['dlq']} to be empty after the redrive", lambda: depth(t["dlq_url"])[0] == 0, 10)
            self.wait_for(f"{t['fn']} to take the redriven message from {t['queue']}",
                          lambda: sum(depth(t["url"])) == 1, self.args.timeout)
        say(f"redrive: scripts/redrive --stack {STACK} --queue all moved them back to "
            + " and ".join(t["queue"] for t in targets) + "; each was taken again")

    # -- the schedule -----------------------------------------------------------------------
    def scheduled(self):
        for logical, rule in self.deployment.rules.items():
            if "ScheduleExpression" not in rule:
                continue
            for target in rule.get("Targets", []):
                fn_logical = self.function_by_name(target["Arn"])
                rule_arn = self.stack.attributes[logical]["Arn"]
                allowed = [p for p in self.deployment.permissions
                           if p.get("Principal") == "events.amazonaws.com"
                           and self.function_by_name(p["FunctionName"]) == fn_logical
                           and fnmatch.fnmatchcase(rule_arn, p.get("SourceArn", "*"))]
                if not allowed:
                    raise Failed(f"no Lambda permission lets rule {logical} invoke {fn_logical}")
                before = {fmt: len(self.objects(f"{fmt}/")) for fmt in ("parquet", "csv")}
                event = {"version": "0", "id": secrets.token_hex(16), "detail-type": "Scheduled Event",
                         "source": "aws.events", "account": ACCOUNT,
                         "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "region": REGION, "resources": [rule_arn], "detail": {}}
                result = self.functions[fn_logical].invoke(json.dumps(event).encode())
                if not result.ok:
                    self.on_failure(fn_logical, event, result)
                    raise Failed(f"scheduled {fn_logical} failed: {result.error}\n{self.tail(fn_logical)}")
                after = {fmt: len(self.objects(f"{fmt}/")) for fmt in ("parquet", "csv")}
                if not all(after[f] < before[f] for f in after):
                    raise Failed(f"scheduled {fn_logical} ({rule['ScheduleExpression']}) compacted nothing: objects {before} -> {after}")
                say(f"schedule {rule['ScheduleExpression']}: {fn_logical} compacted parquet/ {before['parquet']} -> {after['parquet']} objects, csv/ {before['csv']} -> {after['csv']}")

    def on_failure(self, fn_logical, event, result):
        """Lambda's on-failure destination for an asynchronous invocation, sent with the
        function's own role (as Lambda sends it)."""
        fn = self.deployment.functions[fn_logical]
        config = next((c for ref, c in self.deployment.invoke_configs.items() if self.function_by_name(ref) == fn_logical), None)
        dest = (config or {}).get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if dest and ":sqs:" in dest:
            _, url = self.queue_by_arn(dest)
            record = {"version": "1.0", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                      "requestContext": {"functionArn": f"{self.stack.attributes[fn_logical]['Arn']}:$LATEST",
                                         "condition": "RetriesExhausted", "approximateInvokeCount": 1},
                      "requestPayload": event, "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
                      "responsePayload": result.error}
            clients_for(self.moto, self.role_credentials[fn_logical])("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(record))
            say(f"{fn['FunctionName']}: failed event sent to its on-failure destination")

    # -- logs to CloudWatch Logs ------------------------------------------------------------
    def ship_logs(self):
        for logical, fn in self.functions.items():
            group = fn.env["AWS_LAMBDA_LOG_GROUP_NAME"]
            logs = clients_for(self.moto, self.role_credentials[logical])("logs")
            stream = fn.env.get("AWS_LAMBDA_LOG_STREAM_NAME") or time.strftime("%Y/%m/%d/[$LATEST]") + secrets.token_hex(16)
            try:
                logs.create_log_stream(logGroupName=group, logStreamName=stream)
                lines = [t for t in self.logs.of(logical) if t][:5000] or ["(no output)"]
                now = int(time.time() * 1000)
                logs.put_log_events(logGroupName=group, logStreamName=stream,
                                    logEvents=[{"timestamp": now, "message": t[:200_000]} for t in lines])
            except Exception as e:
                raise Failed(f"{logical}: its role cannot write its logs to {group}: {e}") from e
        say("logs: each function's output written to its log group with its own role")

    def check_logs(self):
        for logical in self.functions:
            for stream in ("stdout", "stderr"):
                for text in self.logs.of(logical, stream):
                    if not text.strip():
                        continue
                    try:
                        json.loads(text)
                    except ValueError:
                        raise Failed(f"{logical}: a {stream} line is not JSON (LogFormat JSON): {text[:300]}")
                    if self.token in text:
                        raise Failed(f"{logical}: the webhook token appears in its log")
            fn = self.functions[logical]
            if fn.max_rss_kb > fn.memory * 1024:
                raise Failed(f"{logical}: used {fn.max_rss_kb // 1024} MB, over its MemorySize {fn.memory} MB")
        say(f"logs: {len(self.logs.lines)} lines, every one JSON, no token; " + ", ".join(
            f"{lg} max {f.max_rss_kb // 1024}/{f.memory} MB" for lg, f in self.functions.items()))

    # -- the whole --------------------------------------------------------------------------
    def run(self):
        started = time.monotonic()
        try:
            self.deploy()
            self.start_functions()
            self.setup_alb()
            self.start_pollers()
            self.traffic()
            self.check_quarantine()
            self.check_lake("after the writer")
            self.check_archive()
            self.poison()
            self.scheduled()
            self.check_lake("after compaction")
            self.stop_all()
            self.ship_logs()
            self.check_logs()
            metrics_check.check(self, say)
        finally:
            self.stop_all()
            self.logs.close()
            if self.moto:
                self.moto.stop()
            # The unpacked functions go either way (the logs stay when kept or failed).
            shutil.rmtree(self.work / "functions", ignore_errors=True)
        kept = f" (logs in {self.work})" if self.args.keep or self.args.work else ""
        say(f"passed in {time.monotonic() - started:.1f} s{kept}")

    def stop_all(self):
        self.running = False
        for fn in self.functions.values():
            fn.stop()


class Poller:
    """One SQS event source mapping, as Lambda's poller runs it: long-polls with the function's
    role, fills a batch up to BatchSize within the batching window (and 6 MB), invokes the
    function, then deletes what succeeded: everything not in batchItemFailures when
    ReportBatchItemFailures is on, everything on success when it is off, nothing on an error."""

    def __init__(self, rehearsal, fn, sqs, url, arn, batch, window, partial):
        self.r, self.fn, self.sqs, self.url, self.arn = rehearsal, fn, sqs, url, arn
        self.batch, self.window, self.partial = batch, window, partial
        self.invocations = 0
        self.finished = {}  # message id -> invocations answered (and their deletes done)

    def run(self):
        try:
            while self.r.running:
                messages, size, first = [], 0, None
                while self.r.running and len(messages) < self.batch:
                    got = self.sqs.receive_message(
                        QueueUrl=self.url, MaxNumberOfMessages=min(10, self.batch - len(messages)),
                        WaitTimeSeconds=1 if not messages else 0, AttributeNames=["All"],
                        MessageAttributeNames=["All"]).get("Messages", [])
                    for m in got:
                        messages.append(m)
                        size += len(m["Body"])
                    if messages and first is None:
                        first = time.monotonic()
                    if not messages:
                        continue
                    if self.window == 0 or time.monotonic() - first >= self.window or size > 5 * 1024 * 1024:
                        break
                    if not got:
                        time.sleep(0.1)
                if not messages or not self.r.running:
                    continue
                self.invoke(messages)
        except Exception as e:  # a denied receive or delete: the mapping stops, as Lambda's does
            if self.r.running:
                self.r.poll_errors.append(f"{self.fn.logical}'s event source on {self.url.split('/')[-1]}: {e}")

    def invoke(self, messages):
        records = [{
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {k: {"stringValue": v.get("StringValue"), "binaryValue": v.get("BinaryValue"),
                                      "stringListValues": [], "binaryListValues": [], "dataType": v["DataType"]}
                                  for k, v in m.get("MessageAttributes", {}).items()},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.arn,
            "awsRegion": REGION,
        } for m in messages]
        for r in records:
            for v in r["messageAttributes"].values():
                if v["binaryValue"] is not None:
                    v["binaryValue"] = base64.b64encode(v["binaryValue"]).decode()
        self.invocations += 1
        result = self.fn.invoke(json.dumps({"Records": records}).encode())
        if not result.ok:
            for m in messages:  # every message returns after its visibility timeout
                self.finished[m["MessageId"]] = self.finished.get(m["MessageId"], 0) + 1
            return
        ids = {m["MessageId"] for m in messages}
        failed = set()
        if self.partial:
            doc = result.json() or {}
            items = doc.get("batchItemFailures") or []
            for item in items:
                ident = item.get("itemIdentifier") if isinstance(item, dict) else None
                if not ident or ident not in ids:
                    failed = ids  # an invalid response fails the whole batch
                    break
                failed.add(ident)
        done = [m for m in messages if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            chunk = done[i:i + 10]
            out = self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)])
            if out.get("Failed"):
                raise RuntimeError(f"DeleteMessageBatch failed: {out['Failed'][:2]}")
        for m in messages:
            self.finished[m["MessageId"]] = self.finished.get(m["MessageId"], 0) + 1


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    parser.add_argument("--zips", required=True, help="folder of BIN/bootstrap.zip (scripts/build-lambda.sh --out DIR, then DIR/ARCH)")
    parser.add_argument("--work", help="where logs and unpacked functions go (default a new temporary folder, removed on success)")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--events-per-batch", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for each stage")
    parser.add_argument("--sparklake", help="the sparklake binary scripts/redrive runs")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    rehearsal = Rehearsal(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        rehearsal.run()
    except (Failed, TemplateError) as e:
        print(f"rehearse: FAILED: {e}", file=sys.stderr, flush=True)
        if rehearsal.moto:
            for line in rehearsal.moto.denials()[:5]:
                print(f"rehearse: moto: {line}", file=sys.stderr, flush=True)
        print(f"rehearse: logs in {rehearsal.work}", file=sys.stderr, flush=True)
        return 1
    if not args.keep and not args.work:
        shutil.rmtree(rehearsal.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
