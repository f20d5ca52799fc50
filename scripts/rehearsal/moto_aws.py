"""moto's server, with what the rehearsal needs moto to do as AWS does.

    python moto_aws.py PORT CLOCK_FILE

moto authorises SQS and S3 calls against the resource they name, but Firehose, Glue, Secrets
Manager and CloudWatch Logs calls only against "*", which no scoped policy statement matches; here
each of those calls is authorised against the ARNs AWS documents for it (Glue: the catalog, the
database and the table, each of which must be allowed). moto's Firehose writes records to S3 as
they arrive under the prefix taken literally; here the prefix's `!{timestamp:...}` expressions
are evaluated, CompressionFormat GZIP is applied and the delivery is refused unless the stream's
role allows s3:PutObject on the object, as Firehose's delivery is. And SQS reads the time through
an offset kept in CLOCK_FILE (seconds), so the rehearsal can let a visibility timeout pass
without waiting for it. The other differences from AWS it corrects are described where they are
corrected below; every refusal by IAM is printed on stderr (with REHEARSAL_DEBUG=1, a failed
signature check also prints the request's method, path and header names).
"""

import gzip
import html
import json
import os
import sys
from datetime import datetime, timezone

import moto.sqs.models as sqs_models
from moto.core.utils import unix_time as _unix_time
from moto.core.utils import unix_time_millis as _unix_time_millis

CLOCK_FILE = sys.argv[2]
_clock = {"mtime": None, "offset": 0.0}


def _offset():
    try:
        mtime = os.stat(CLOCK_FILE).st_mtime_ns
    except FileNotFoundError:
        return 0.0
    if mtime != _clock["mtime"]:
        with open(CLOCK_FILE) as f:
            text = f.read().strip()
        _clock.update(mtime=mtime, offset=float(text or 0))
    return _clock["offset"]


def unix_time(dt=None):
    return _unix_time(dt) + (0 if dt is not None else _offset())


def unix_time_millis(dt=None):
    return _unix_time_millis(dt) + (0 if dt is not None else _offset() * 1000)


sqs_models.unix_time = unix_time
sqs_models.unix_time_millis = unix_time_millis


def _arn(self, service, resource):
    return f"arn:aws:{service}:{self.region}:{self.current_account}:{resource}"


from moto.firehose.responses import FirehoseResponse  # noqa: E402
from moto.glue.responses import GlueResponse  # noqa: E402
from moto.logs.responses import LogsResponse  # noqa: E402
from moto.secretsmanager.responses import SecretsManagerResponse  # noqa: E402


def _firehose_resource(self):
    name = self._get_param("DeliveryStreamName")
    return _arn(self, "firehose", f"deliverystream/{name}") if name else "*"


def _secret_resource(self):
    from moto.secretsmanager.models import secretsmanager_backends

    secret_id = self._get_param("SecretId")
    if not secret_id:
        return "*"
    backend = secretsmanager_backends[self.current_account][self.region]
    for secret in backend.secrets.values():
        if secret_id in (secret.arn, secret.name):
            return secret.arn
    return secret_id if secret_id.startswith("arn:") else "*"


def _logs_resource(self):
    group = self._get_param("logGroupName")
    stream = self._get_param("logStreamName")
    if not group:
        return "*"
    if stream:
        return _arn(self, "logs", f"log-group:{group}:log-stream:{stream}")
    return _arn(self, "logs", f"log-group:{group}")


def _glue_resources(self):
    database = self._get_param("DatabaseName")
    table = self._get_param("Name") or (self._get_param("TableInput") or {}).get("Name")
    resources = [_arn(self, "glue", "catalog")]
    if database:
        resources.append(_arn(self, "glue", f"database/{database}"))
        if table and self._get_action() in ("GetTable", "UpdateTable", "DeleteTable", "CreateTable"):
            resources.append(_arn(self, "glue", f"table/{database}/{table}"))
    return resources


FirehoseResponse._determine_resource = _firehose_resource
SecretsManagerResponse._determine_resource = _secret_resource
LogsResponse._determine_resource = _logs_resource

_original_authorize = GlueResponse._authenticate_and_authorize_normal_action


def _glue_authorize(self, resource="*"):
    for each in _glue_resources(self):
        _original_authorize(self, each)


GlueResponse._authenticate_and_authorize_normal_action = _glue_authorize


# Firehose to S3, as the service delivers: the custom prefix's expressions, GZIP, the role.
from moto.firehose.models import FirehoseBackend  # noqa: E402
from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult  # noqa: E402
from moto.iam.models import iam_backends  # noqa: E402
from moto.moto_api._internal import mock_random  # noqa: E402
from moto.s3.models import s3_backends  # noqa: E402


def _expand(prefix, now):
    out, i = "", 0
    java = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
    while i < len(prefix):
        if prefix.startswith("!{timestamp:", i):
            end = prefix.index("}", i)
            pattern = prefix[i + len("!{timestamp:") : end]
            for k, v in java.items():
                pattern = pattern.replace(k, v)
            out += now.strftime(pattern)
            i = end + 1
        elif prefix.startswith("!{", i):
            raise RuntimeError(f"Firehose prefix expression not emulated: {prefix[i:]}")
        else:
            out += prefix[i]
            i += 1
    return out


def _role_allows(self, role_arn, action, resource):
    backend = iam_backends[self.account_id]["aws"]
    role = backend.get_role_by_arn(role_arn)
    allowed = False
    for _, document in role.policies.items():
        result = IAMPolicy(document).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return False
        allowed = allowed or result == PermissionResult.PERMITTED
    return allowed


def put_s3_records(self, delivery_stream_name, version_id, s3_destination, records):
    now = datetime.now(timezone.utc)
    bucket = s3_destination["BucketARN"].split(":")[-1]
    prefix = s3_destination.get("Prefix", "")
    if "!{" in prefix:
        path = _expand(prefix, now)
    else:
        path = prefix + now.strftime("%Y/%m/%d/%H/")
    key = (
        f"{path}{delivery_stream_name}-{version_id}-"
        f"{now.strftime('%Y-%m-%d-%H-%M-%S')}-{mock_random.uuid4()}"
    )
    data = b"".join(r["Data"] for r in records)
    if s3_destination.get("CompressionFormat") == "GZIP":
        data, key = gzip.compress(data), key + ".gz"
    role = s3_destination.get("RoleARN")
    if not role or not _role_allows(self, role, "s3:PutObject", f"arn:aws:s3:::{bucket}/{key}"):
        # Firehose accepts the records and fails their delivery (its own error log); the
        # rehearsal finds the archive incomplete.
        print(f"FIREHOSE DELIVERY FAILED: role {role} may not s3:PutObject {key}", file=sys.stderr, flush=True)
        return [{"RecordId": str(mock_random.uuid4())} for _ in records]
    s3_backends[self.account_id]["aws"].put_object(bucket, key, data)
    return [{"RecordId": str(mock_random.uuid4())} for _ in records]


FirehoseBackend.put_s3_records = put_s3_records

# Bucket policies: moto evaluates them on object calls, but takes a condition it cannot evaluate
# as met, so the template's DenyInsecureTransport (Bool aws:SecureTransport false) would deny
# every call. The emulator's plain-HTTP endpoint stands for AWS's HTTPS one: requests carry
# aws:SecureTransport true, and Bool conditions are evaluated.
from moto.iam import policy_conditions  # noqa: E402
from moto.s3.models import FakeBucket  # noqa: E402


def _bool(expected, actual):
    values = expected if isinstance(expected, list) else [expected]
    return str(actual).lower() in [str(v).lower() for v in values]


policy_conditions.CONDITION_OPERATIONS["Bool"] = _bool


def get_permission(self, action, resource):
    """The bucket policy's verdict: a statement applies when its action, resource and
    conditions match (moto's own evaluation denies when a Deny statement's condition fails)."""
    if self.policy is None:
        return PermissionResult.NEUTRAL
    document = json.loads(self.policy.decode())
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    verdict = PermissionResult.NEUTRAL
    for st in statements:
        s = IAMPolicyStatement(st)
        if "Action" in st and not s._check_element_matches("Action", action):
            continue
        if "NotAction" in st and s._check_element_matches("NotAction", action):
            continue
        if "Resource" in st and not s._check_element_matches("Resource", resource):
            continue
        if not s._check_conditions({"aws:SecureTransport": "true"}):
            continue
        if st["Effect"] == "Deny":
            return PermissionResult.DENIED
        verdict = PermissionResult.PERMITTED
    return verdict


FakeBucket.get_permission = get_permission

# S3 signatures: the client signs the path as it sent it (S3 keys URI-encoded once, `=` as
# %3D); moto recomputes the signature from the decoded path, so every key with a Hive partition
# (`dt=...`) and every listing by prefix fails its check. Recompute from the path and query
# encoded as S3 clients encode them.
from urllib.parse import quote, unquote  # noqa: E402

from moto.iam.access_control import S3IAMRequest  # noqa: E402

_s3_create_aws_request = S3IAMRequest._create_aws_request


def _s3_request(self):
    path, sep, query = self._path.partition("?")
    original = self._path
    pairs = [p.partition("=") for p in query.split("&")] if query else []
    query = "&".join(f"{quote(unquote(k), safe='-_.~')}{e}{quote(unquote(v), safe='-_.~')}" for k, e, v in pairs)
    self._path = quote(unquote(path), safe="/~") + sep + query
    try:
        return _s3_create_aws_request(self)
    finally:
        self._path = original


S3IAMRequest._create_aws_request = _s3_request

# DeleteObjects (POST ?delete) is authorised as s3:DeleteObject on each key it names; moto asks
# for it on the bucket, which a policy on `bucket/prefix/*` does not match.
import re as _re  # noqa: E402

from moto.s3.responses import S3Response  # noqa: E402

_s3_authorize = S3Response._authenticate_and_authorize_s3_action


def _s3_authorize_each_key(self, bucket_name=None, key_name=None):
    if key_name is None and bucket_name and self.method == "POST" and "delete" in self.querystring:
        body = self.raw_body if isinstance(self.raw_body, bytes) else (self.body or b"")
        if isinstance(body, str):
            body = body.encode()
        keys = [html.unescape(k.decode()) for k in _re.findall(rb"<Key>([^<]*)</Key>", body)]
        for key in keys:
            _s3_authorize(self, bucket_name=bucket_name, key_name=key)
        if keys:
            return
    _s3_authorize(self, bucket_name=bucket_name, key_name=key_name)


S3Response._authenticate_and_authorize_s3_action = _s3_authorize_each_key

# Every refusal by IAM said on stderr (the rehearsal reads moto's log to name what was denied).
from moto.iam.access_control import IAMRequestBase  # noqa: E402

_check_signature = IAMRequestBase.check_signature
_check_action_permitted = IAMRequestBase.check_action_permitted


def check_signature(self):
    try:
        _check_signature(self)
    except Exception:
        print(f"IAM SIGNATURE MISMATCH: {self._action} by {getattr(self._access_key, 'arn', '?')}", file=sys.stderr, flush=True)
        if os.environ.get("REHEARSAL_DEBUG"):
            # What was signed, without the credential's values.
            names = sorted(k for k in self._headers if k.lower() not in ("authorization", "x-amz-security-token"))
            print(f"  {self._method} {self._path} headers {names} body {len(self._body or b'')} bytes", file=sys.stderr, flush=True)
        raise


# IAM has no action for SQS's batch calls: each is authorised as its single-message action
# (moto asks for sqs:SendMessageBatch, which no policy can grant).
SQS_BATCH_ACTIONS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def check_action_permitted(self, resource):
    self._action = SQS_BATCH_ACTIONS.get(self._action, self._action)
    try:
        _check_action_permitted(self, resource)
    except Exception:
        print(f"IAM DENIED: {self._action} on {resource} to {getattr(self._access_key, 'arn', '?')}", file=sys.stderr, flush=True)
        raise


IAMRequestBase.check_signature = check_signature
IAMRequestBase.check_action_permitted = check_action_permitted

if __name__ == "__main__":
    from moto.server import main

    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
