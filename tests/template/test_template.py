"""Static checks of template.yaml: the properties the pipeline's correctness and safety rest on.

Run by scripts/lint-template.sh (after cfn-lint and `sam validate --lint`). The Glue column test
runs `sparklake schema`: the binary is $SPARKLAKE_BIN, else $CARGO_TARGET_DIR/debug/sparklake
(the script builds it first with `cargo build -p sparklake`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

NAMED_QUERIES = [
    "daily_rates",
    "bounces_by_class_and_domain",
    "engagement_by_link",
    "events_dedup_view",
]


# ------------------------------------------------------------------------------------------------
# helpers


def plain(node):
    """cfn-lint's decoded nodes as plain dicts/lists (intrinsics as {"Ref": ...}, {"Fn::If": ...})."""
    return json.loads(json.dumps(node))


@pytest.fixture(scope="module")
def template():
    return plain(cfn_yaml.load(str(TEMPLATE_PATH)))


@pytest.fixture(scope="module")
def resources(template):
    return template["Resources"]


def props(resources, name):
    assert name in resources, f"resource {name} is missing"
    return resources[name].get("Properties", {})


def of_type(resources, type_):
    return {k: v for k, v in resources.items() if v["Type"] == type_}


def branches(value):
    """Every concrete value a property can take: both arms of Fn::If, minus AWS::NoValue."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, yes, no = value["Fn::If"]
        return branches(yes) + branches(no)
    if value == {"Ref": "AWS::NoValue"}:
        return []
    return [value]


def as_list(value):
    return value if isinstance(value, list) else [value]


def statements(document):
    out = []
    for stmt in as_list(document.get("Statement", [])):
        out.extend(branches(stmt))
    return out


def function_policy_statements(resources):
    """(where, statement) for every statement a function role or function policy holds."""
    found = []
    for name, res in resources.items():
        p = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for pol in p.get("Policies", []):
                for s in statements(pol["PolicyDocument"]):
                    found.append((f"{name}/{pol['PolicyName']}", s))
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for s in statements(p["PolicyDocument"]):
                found.append((name, s))
        elif res["Type"] == "AWS::Serverless::Function":
            for pol in as_list(p.get("Policies", [])):
                if isinstance(pol, dict) and "Statement" in pol:
                    for s in statements(pol):
                        found.append((name, s))
    return found


def role_statements(resources, role):
    return [s for pol in props(resources, role)["Policies"] for s in statements(pol["PolicyDocument"])]


def grants(stmts, action):
    """The resources granted `action` by Allow statements."""
    out = []
    for s in stmts:
        if s["Effect"] == "Allow" and action in as_list(s["Action"]):
            out.extend(as_list(s["Resource"]))
    return out


def role_of(resources, function):
    role = props(resources, function).get("Role")
    assert role and "Fn::GetAtt" in role, f"{function} must use its own explicit role"
    return role["Fn::GetAtt"][0]


def sparklake_bin() -> Path:
    if os.environ.get("SPARKLAKE_BIN"):
        return Path(os.environ["SPARKLAKE_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache/sparklake/target")
    return Path(target) / "debug" / "sparklake"


@pytest.fixture(scope="module")
def schema():
    binary = sparklake_bin()
    assert binary.is_file(), (
        f"{binary} is missing: build it with `cargo build -p sparklake` or set SPARKLAKE_BIN"
    )
    out = subprocess.run([str(binary), "schema"], check=True, capture_output=True, text=True)
    columns = json.loads(out.stdout)
    assert columns and all(set(c) == {"Name", "Type"} for c in columns)
    return columns


# ------------------------------------------------------------------------------------------------
# functions and event sources


@pytest.mark.parametrize(
    "function,binary,timeout",
    [("IngestFunction", "ingest", 10), ("FanoutFunction", "fanout", 30), ("WriterFunction", "writer", 120),
     ("CompactFunction", "compact", 900)],
)
def test_functions_are_arm64_al2023_cargo_lambda_builds(template, resources, function, binary, timeout):
    glob = template.get("Globals", {}).get("Function", {})
    p = {**glob, **props(resources, function)}
    assert resources[function]["Type"] == "AWS::Serverless::Function"
    assert p["Runtime"] == "provided.al2023"
    assert p["Architectures"] == ["arm64"]
    assert p["Handler"] == "bootstrap"
    assert p["CodeUri"] == "."
    assert p["Timeout"] == timeout
    meta = resources[function]["Metadata"]
    assert meta["BuildMethod"] == "rust-cargolambda"
    assert meta["BuildProperties"]["Binary"] == binary
    logging = p["LoggingConfig"]
    assert logging["LogFormat"] == "JSON"
    group = logging["LogGroup"]["Ref"]
    assert props(resources, group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize(
    "function,queue,batch",
    [("FanoutFunction", "IngestQueue", 10), ("WriterFunction", "WriterQueue", {"Ref": "WriterBatchSize"})],
)
def test_each_consumer_reads_its_queue_reporting_item_failures(resources, function, queue, batch):
    events = props(resources, function)["Events"]
    assert len(events) == 1, f"{function} must have exactly one event source"
    (event,) = events.values()
    assert event["Type"] == "SQS"
    e = event["Properties"]
    assert e["Queue"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert e["BatchSize"] == batch
    assert e["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_writer_event_source_batches_and_caps_concurrency(resources):
    (event,) = props(resources, "WriterFunction")["Events"].values()
    e = event["Properties"]
    assert e["MaximumBatchingWindowInSeconds"] == {"Ref": "WriterBatchingWindowSeconds"}
    assert e["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "WriterMaxConcurrency"}}


def test_ingest_is_not_a_queue_consumer(resources):
    assert "Events" not in props(resources, "IngestFunction")


# ------------------------------------------------------------------------------------------------
# queues


@pytest.mark.parametrize(
    "queue,dlq,consumer",
    [("IngestQueue", "IngestDLQ", "FanoutFunction"), ("WriterQueue", "WriterDLQ", "WriterFunction")],
)
def test_queues_dead_letter_and_outlast_their_consumer(template, resources, queue, dlq, consumer):
    q = props(resources, queue)
    assert q["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq, "Arn"]}
    assert q["RedrivePolicy"]["maxReceiveCount"] == 5
    assert q["MaximumMessageSize"] == 1048576
    assert q["SqsManagedSseEnabled"] is True
    assert q["MessageRetentionPeriod"] >= 4 * 86400
    # Lambda's SQS event source wants visibility >= 6 x the function timeout (+ batching window).
    timeout = props(resources, consumer)["Timeout"]
    (event,) = props(resources, consumer)["Events"].values()
    window = event["Properties"].get("MaximumBatchingWindowInSeconds", 0)
    if isinstance(window, dict):
        window = template["Parameters"][window["Ref"]]["MaxValue"]
    assert q["VisibilityTimeout"] >= 6 * timeout + window


@pytest.mark.parametrize("queue,dlq", [("IngestQueue", "IngestDLQ"), ("WriterQueue", "WriterDLQ")])
def test_dlqs_keep_14_days_and_allow_redrive_only_from_their_queue(resources, queue, dlq):
    d = props(resources, dlq)
    assert d["MessageRetentionPeriod"] == 1209600
    assert d["MessageRetentionPeriod"] > props(resources, queue)["MessageRetentionPeriod"]
    assert d["SqsManagedSseEnabled"] is True
    allow = d["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    (source,) = allow["sourceQueueArns"]
    # The source is named by ARN from the queue's (stack-derived) name: !GetAtt would be a cycle.
    name = props(resources, queue)["QueueName"]["Fn::Sub"]
    assert source == {"Fn::Sub": f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{name}"}
    assert "RedrivePolicy" not in d


# ------------------------------------------------------------------------------------------------
# Glue and Athena


@pytest.mark.parametrize("table,prefix", [("EventsTable", "parquet"), ("EventsCsvTable", "csv")])
def test_tables_use_partition_projection(template, resources, table, prefix):
    t = props(resources, table)["TableInput"]
    p = t["Parameters"]
    assert p["projection.enabled"] == "true"
    assert p["projection.event_type.type"] == "enum"
    assert p["projection.event_type.values"] == {"Ref": "ProjectedEventTypes"}
    assert p["projection.dt.type"] == "date"
    assert p["projection.dt.format"] == "yyyy-MM-dd"
    # A day past today: the writer files an event more than a day ahead of its receipt under
    # the receive date (timestamp_implausible), so every dt it writes is projected.
    assert p["projection.dt.range"] == {"Fn::Sub": "${ProjectionStartDate},NOW+1DAYS"}
    assert p["projection.dt.interval"] == "1"
    assert p["projection.dt.interval.unit"] == "DAYS"
    assert p["storage.location.template"] == {
        "Fn::Sub": f"s3://${{DataBucket}}/{prefix}/event_type=${{!event_type}}/dt=${{!dt}}"
    }
    assert t["StorageDescriptor"]["Location"] == {"Fn::Sub": f"s3://${{DataBucket}}/{prefix}/"}
    assert [k["Name"] for k in t["PartitionKeys"]] == ["event_type", "dt"]
    assert all(k["Type"] == "string" for k in t["PartitionKeys"])
    assert t["TableType"] == "EXTERNAL_TABLE"
    # The projected types start as the documented SparkPost types (the Ingest API's are
    # `success` and `error`), a valid enum list; the writer adds the rest.
    values = template["Parameters"]["ProjectedEventTypes"]["Default"].split(",")
    assert {"delivery", "bounce", "spam_complaint", "open", "click", "injection", "amp_open",
            "ab_test_completed", "success", "error"} <= set(values)
    assert len(values) == len(set(values)) == 27
    assert all(re.fullmatch(r"[a-z_]+", v) for v in values)
    # The same floor as the writer's default SPARKLAKE_TIMESTAMP_FLOOR (SparkPost began in 2014).
    assert template["Parameters"]["ProjectionStartDate"]["Default"] == "2014-01-01"


def test_events_columns_are_the_writer_schema(resources, schema):
    t = props(resources, "EventsTable")["TableInput"]
    assert t["StorageDescriptor"]["Columns"] == schema
    assert t["Name"] == "events"
    sd = t["StorageDescriptor"]
    assert sd["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert sd["InputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    assert sd["OutputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"


def test_events_csv_has_the_same_columns_as_strings(resources, schema):
    t = props(resources, "EventsCsvTable")["TableInput"]
    assert t["Name"] == "events_csv"
    assert t["StorageDescriptor"]["Columns"] == [{"Name": c["Name"], "Type": "string"} for c in schema]
    assert t["Parameters"]["skip.header.line.count"] == "1"
    serde = t["StorageDescriptor"]["SerdeInfo"]
    assert serde["SerializationLibrary"] == "org.apache.hadoop.hive.serde2.OpenCSVSerde"
    params = serde["Parameters"]
    assert params["separatorChar"] == "," and params["quoteChar"] == '"'
    # Not the default backslash: it would eat the `\n` the writer puts for line breaks.
    assert params["escapeChar"] not in ("\\", ",", '"') and len(params["escapeChar"]) == 1


def test_athena_workgroup_enforces_results_in_the_bucket(resources):
    c = props(resources, "AthenaWorkGroup")["WorkGroupConfiguration"]
    assert c["EnforceWorkGroupConfiguration"] is True
    assert c["ResultConfiguration"]["OutputLocation"] == {"Fn::Sub": "s3://${DataBucket}/athena-results/"}


@pytest.mark.parametrize("name", NAMED_QUERIES)
def test_named_query_is_its_sql_file(resources, name):
    found = [
        p for p in (r.get("Properties", {}) for r in of_type(resources, "AWS::Athena::NamedQuery").values())
        if p.get("Name") == name
    ]
    assert len(found) == 1, f"one AWS::Athena::NamedQuery named {name}"
    (q,) = found
    assert q["Database"] == {"Ref": "GlueDatabase"}
    assert q["WorkGroup"] == {"Ref": "AthenaWorkGroup"}
    path = ROOT / "queries" / f"{name}.sql"
    assert path.is_file(), f"{path} is missing"
    expected = path.read_text(encoding="utf-8").rstrip()
    assert q["QueryString"].rstrip() == expected, (
        f"{name}: template.yaml differs from queries/{name}.sql; run tests/template/sync_queries.py"
    )


# ------------------------------------------------------------------------------------------------
# bucket


def test_bucket_is_encrypted_private_and_tls_only(resources):
    b = props(resources, "DataBucket")
    (rule,) = b["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "Fn::If": ["HasKms", {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "KmsKeyArn"}}, {"SSEAlgorithm": "AES256"}]
    }
    pab = b["PublicAccessBlockConfiguration"]
    assert set(pab) == {"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"}
    assert all(v is True for v in pab.values())
    assert b["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert b["VersioningConfiguration"] == {"Status": {"Fn::If": ["Versioned", "Enabled", "Suspended"]}}

    policies = [p for p in of_type(resources, "AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": "DataBucket"}]
    assert len(policies) == 1
    denies = [
        s for s in statements(policies[0]["Properties"]["PolicyDocument"])
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
    ]
    assert len(denies) == 1
    deny = denies[0]
    assert deny["Principal"] == "*" and deny["Action"] in ("s3:*", ["s3:*"])
    assert {"Fn::GetAtt": ["DataBucket", "Arn"]} in as_list(deny["Resource"])
    assert {"Fn::Sub": "${DataBucket.Arn}/*"} in as_list(deny["Resource"])


def test_bucket_lifecycle_expires_quarantine_raw_and_results(resources):
    rules = props(resources, "DataBucket")["LifecycleConfiguration"]["Rules"]
    by_prefix = {r.get("Prefix"): r for r in rules if r["Status"] == "Enabled"}
    assert by_prefix["quarantine/"]["ExpirationInDays"] == {"Ref": "QuarantineExpirationDays"}
    assert by_prefix["raw/"]["ExpirationInDays"] == {"Ref": "RawExpirationDays"}
    assert by_prefix["raw-errors/"]["ExpirationInDays"] == {"Ref": "RawExpirationDays"}
    assert by_prefix["athena-results/"]["ExpirationInDays"] == {"Ref": "AthenaResultsExpirationDays"}
    # Nothing may expire the lake itself.
    for prefix in ("parquet/", "csv/", "", None):
        assert "ExpirationInDays" not in by_prefix.get(prefix, {})


# ------------------------------------------------------------------------------------------------
# IAM


def test_no_wildcard_resource_or_action_in_function_policies(resources):
    found = function_policy_statements(resources)
    assert len(found) >= 10
    for where, s in found:
        for r in as_list(s["Resource"]):
            assert r != "*", f"{where}: Resource '*' in {s}"
            if isinstance(r, str):
                assert not re.fullmatch(r"arn:[^:]*:[^:]*:[^:]*:[^:]*:\*", r), f"{where}: {r}"
        for a in as_list(s["Action"]):
            assert a != "*" and not a.endswith(":*"), f"{where}: Action {a}"
        assert "NotResource" not in s and "NotAction" not in s, where


@pytest.mark.parametrize("function", ["IngestFunction", "FanoutFunction", "WriterFunction", "CompactFunction"])
def test_functions_use_explicit_roles_without_managed_policies(resources, function):
    p = props(resources, function)
    role = role_of(resources, function)
    assert "Policies" not in p, "SAM ignores Policies when Role is set"
    r = props(resources, role)
    assert "ManagedPolicyArns" not in r
    assert r["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    group = p["LoggingConfig"]["LogGroup"]["Ref"]
    assert grants(role_statements(resources, role), "logs:PutLogEvents") == [{"Fn::GetAtt": [group, "Arn"]}]


def test_ingest_permissions(resources):
    s = role_statements(resources, role_of(resources, "IngestFunction"))
    assert grants(s, "sqs:SendMessage") == [{"Fn::GetAtt": ["IngestQueue", "Arn"]}]
    assert grants(s, "s3:PutObject") == [{"Fn::Sub": "${DataBucket.Arn}/quarantine/*"}]
    assert grants(s, "secretsmanager:GetSecretValue") == [{"Ref": "AuthSecretArn"}]
    assert grants(s, "kms:GenerateDataKey") == [{"Ref": "KmsKeyArn"}]
    actions = {a for st in s for a in as_list(st["Action"])}
    assert not any(a.startswith(("sqs:Receive", "sqs:Delete", "firehose:")) for a in actions)


def test_fanout_permissions(resources):
    s = role_statements(resources, role_of(resources, "FanoutFunction"))
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"):
        assert grants(s, action) == [{"Fn::GetAtt": ["IngestQueue", "Arn"]}], action
    assert grants(s, "sqs:SendMessage") == [{"Fn::GetAtt": ["WriterQueue", "Arn"]}]
    assert grants(s, "firehose:PutRecordBatch") == [{"Fn::GetAtt": ["RawArchiveStream", "Arn"]}]
    assert not grants(s, "s3:PutObject")


def test_writer_permissions(resources):
    s = role_statements(resources, role_of(resources, "WriterFunction"))
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"):
        assert grants(s, action) == [{"Fn::GetAtt": ["WriterQueue", "Arn"]}], action
    assert sorted(json.dumps(r) for r in grants(s, "s3:PutObject")) == sorted(
        json.dumps({"Fn::Sub": f"${{DataBucket.Arn}}/{p}/*"}) for p in ("parquet", "csv")
    )
    assert not grants(s, "sqs:SendMessage")
    # New event types join the two tables' projection: GetTable and UpdateTable on them only.
    def glue(path):
        return {"Fn::Sub": f"arn:${{AWS::Partition}}:glue:${{AWS::Region}}:${{AWS::AccountId}}:{path}"}

    tables = [glue("catalog"), glue("database/${GlueDatabase}"),
              glue("table/${GlueDatabase}/${EventsTable}"), glue("table/${GlueDatabase}/${EventsCsvTable}")]
    for action in ("glue:GetTable", "glue:UpdateTable"):
        assert grants(s, action) == tables, action
    actions = {a for st in s for a in as_list(st["Action"])}
    assert {a for a in actions if a.startswith("glue:")} == {"glue:GetTable", "glue:UpdateTable"}


LAKE_PREFIXES = ("parquet", "csv", "_compaction")


def test_compact_permissions_are_the_lake_prefixes_only(resources):
    s = role_statements(resources, role_of(resources, "CompactFunction"))
    lake = sorted(json.dumps({"Fn::Sub": f"${{DataBucket.Arn}}/{p}/*"}) for p in LAKE_PREFIXES)
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert sorted(json.dumps(r) for r in grants(s, action)) == lake, action
    # Listing: the bucket, only under the lake's prefixes.
    (listing,) = [st for st in s if "s3:ListBucket" in as_list(st["Action"])]
    assert listing["Resource"] == {"Fn::GetAtt": ["DataBucket", "Arn"]}
    assert sorted(listing["Condition"]["StringLike"]["s3:prefix"]) == sorted(f"{p}/*" for p in LAKE_PREFIXES)
    assert grants(s, "sqs:SendMessage") == [{"Fn::GetAtt": ["CompactFailureQueue", "Arn"]}]
    assert grants(s, "kms:GenerateDataKey") == [{"Ref": "KmsKeyArn"}]
    actions = {a for st in s for a in as_list(st["Action"])}
    assert actions == {
        "logs:CreateLogStream", "logs:PutLogEvents", "s3:ListBucket", "s3:GetObject", "s3:PutObject",
        "s3:DeleteObject", "s3:AbortMultipartUpload", "sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt",
    }
    # Nothing else may delete lake objects.
    for function in ("IngestFunction", "FanoutFunction", "WriterFunction"):
        assert not grants(role_statements(resources, role_of(resources, function)), "s3:DeleteObject"), function


def test_compact_runs_on_a_schedule_within_the_lambda_limit(template, resources):
    p = props(resources, "CompactFunction")
    (event,) = p["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Ref": "CompactSchedule"}
    param = template["Parameters"]["CompactSchedule"]
    assert re.fullmatch(param["AllowedPattern"], param["Default"])
    assert not re.fullmatch(param["AllowedPattern"], "every 5 minutes")
    # A failed run is not retried by Lambda (the next scheduled run is); its event is kept.
    invoke = p["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 0
    assert invoke["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS", "Destination": {"Fn::GetAtt": ["CompactFailureQueue", "Arn"]}
    }
    assert props(resources, "CompactFailureQueue")["MessageRetentionPeriod"] == 1209600
    # Scratch for a job's inputs (1 GiB beyond two target-size objects) and as much output.
    assert p["EphemeralStorage"]["Size"] >= 4096
    env = p["Environment"]["Variables"]
    # A live lease holder is never overtaken: the lease outlasts the longest invocation.
    assert int(env["SPARKLAKE_COMPACT_LEASE_SECS"]) > p["Timeout"]
    assert env["SPARKLAKE_COMPACT_TARGET_BYTES"] == {"Ref": "CompactTargetBytes"}
    assert env["SPARKLAKE_COMPACT_MIN_OBJECTS"] == {"Ref": "CompactMinObjects"}
    assert env["SPARKLAKE_COMPACT_SETTLE_SECS"] == {"Ref": "CompactSettleSeconds"}
    # The template's defaults are the compactor's (README configuration table).
    readme = (ROOT / "README.md").read_text()
    for name, param in (("TARGET_BYTES", "CompactTargetBytes"), ("MIN_OBJECTS", "CompactMinObjects"),
                        ("SETTLE_SECS", "CompactSettleSeconds")):
        assert f"| `SPARKLAKE_COMPACT_{name}` | | `{template['Parameters'][param]['Default']}`" in readme, name


def test_raw_archive_role_reaches_only_raw_prefixes(resources):
    s = role_statements(resources, "RawArchiveRole")
    assert sorted(json.dumps(r) for r in grants(s, "s3:PutObject")) == sorted(
        json.dumps({"Fn::Sub": f"${{DataBucket.Arn}}/{p}/*"}) for p in ("raw", "raw-errors")
    )
    assert grants(s, "s3:ListBucket") == [{"Fn::GetAtt": ["DataBucket", "Arn"]}]
    stream = props(resources, "RawArchiveStream")
    assert resources["RawArchiveStream"]["Condition"] == "RawArchive"
    assert stream["DeliveryStreamType"] == "DirectPut"
    dest = stream["ExtendedS3DestinationConfiguration"]
    assert dest["Prefix"] == "raw/dt=!{timestamp:yyyy-MM-dd}/"
    assert dest["ErrorOutputPrefix"] == "raw-errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/"
    assert dest["CompressionFormat"] == "GZIP"


# ------------------------------------------------------------------------------------------------
# environment


def test_ingest_environment_has_no_plaintext_secret(template, resources):
    env = props(resources, "IngestFunction")["Environment"]["Variables"]
    for name in ("SPARKLAKE_BEARER_TOKENS", "SPARKLAKE_BASIC_PASSWORD", "SPARKLAKE_BASIC_USER", "SPARKLAKE_HEADER_VALUE"):
        assert name not in env, f"{name} would put a secret in plain text in the function configuration"
    assert env["SPARKLAKE_AUTH"] == {"Ref": "AuthMode"}
    assert env["SPARKLAKE_AUTH_SECRET_ARN"] == {"Fn::If": ["HasAuthSecret", {"Ref": "AuthSecretArn"}, {"Ref": "AWS::NoValue"}]}
    # No parameter may carry a secret value either.
    for name, param in template["Parameters"].items():
        assert not re.search(r"(token|password|secret)(?!arn)", name.lower()), f"parameter {name} looks like a secret"
    assert template["Parameters"]["AuthMode"]["Default"] == "bearer"


def test_function_environments(resources):
    ingest = props(resources, "IngestFunction")["Environment"]["Variables"]
    assert ingest["SPARKLAKE_INGEST_QUEUE_URL"] == {"Ref": "IngestQueue"}
    assert ingest["SPARKLAKE_BUCKET"] == {"Ref": "DataBucket"}
    assert ingest["SPARKLAKE_PREFIX"] == ""
    fanout = props(resources, "FanoutFunction")["Environment"]["Variables"]
    assert fanout["SPARKLAKE_WRITER_QUEUE_URL"] == {"Ref": "WriterQueue"}
    assert fanout["SPARKLAKE_ARCHIVE_STREAM"] == {"Fn::If": ["RawArchive", {"Ref": "RawArchiveStream"}, {"Ref": "AWS::NoValue"}]}
    writer = props(resources, "WriterFunction")["Environment"]["Variables"]
    assert writer["SPARKLAKE_BUCKET"] == {"Ref": "DataBucket"}
    assert writer["SPARKLAKE_PARTITION_VALUE_MAX_BYTES"] == {"Ref": "PartitionValueMaxBytes"}
    assert writer["SPARKLAKE_PARQUET_TIMESTAMP"] == {"Ref": "ParquetTimestampType"}
    # The timestamp floor is the projection's first day: no event is filed before it.
    assert writer["SPARKLAKE_TIMESTAMP_FLOOR"] == {"Ref": "ProjectionStartDate"}
    assert writer["SPARKLAKE_GLUE_DATABASE"] == {"Ref": "GlueDatabase"}
    assert writer["SPARKLAKE_GLUE_TABLES"] == {"Fn::Sub": "${EventsTable},${EventsCsvTable}"}
    compact = props(resources, "CompactFunction")["Environment"]["Variables"]
    assert compact["SPARKLAKE_BUCKET"] == {"Ref": "DataBucket"}
    assert compact["SPARKLAKE_PREFIX"] == writer["SPARKLAKE_PREFIX"]
    # Compacted Parquet stores timestamps as the writer's does.
    assert compact["SPARKLAKE_PARQUET_TIMESTAMP"] == writer["SPARKLAKE_PARQUET_TIMESTAMP"]
    for env in (ingest, writer, compact):
        assert env["SPARKLAKE_S3_SSE"] == {"Fn::If": ["HasKms", "aws:kms", {"Ref": "AWS::NoValue"}]}
        assert env["SPARKLAKE_S3_KMS_KEY_ID"] == {"Fn::If": ["HasKms", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]}


# ------------------------------------------------------------------------------------------------
# load balancer


def test_target_group_is_the_ingest_lambda_with_single_value_headers(resources):
    tg = props(resources, "IngestTargetGroup")
    assert tg["TargetType"] == "lambda"
    assert tg["Targets"] == [{"Id": {"Fn::GetAtt": ["IngestFunction", "Arn"]}}]
    attrs = {a["Key"]: a["Value"] for a in tg["TargetGroupAttributes"]}
    assert attrs["lambda.multi_value_headers.enabled"] == "false"
    perm = props(resources, "IngestAlbPermission")
    assert perm["Principal"] == "elasticloadbalancing.amazonaws.com"
    assert perm["Action"] == "lambda:InvokeFunction"
    assert perm["FunctionName"] == {"Fn::GetAtt": ["IngestFunction", "Arn"]}
    assert perm["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert "IngestAlbPermission" in as_list(resources["IngestTargetGroup"].get("DependsOn", []))


def test_load_balancer_security_group_opens_only_80_and_443(resources):
    groups = of_type(resources, "AWS::EC2::SecurityGroup")
    assert list(groups) == ["LoadBalancerSecurityGroup"]
    assert props(resources, "LoadBalancer")["SecurityGroups"] == [{"Ref": "LoadBalancerSecurityGroup"}]
    rules = props(resources, "LoadBalancerSecurityGroup")["SecurityGroupIngress"]
    assert sorted((r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules) == [("tcp", 80, 80), ("tcp", 443, 443)]
    assert not of_type(resources, "AWS::EC2::SecurityGroupIngress")


def test_listeners_serve_https_and_redirect_http(resources):
    lb = props(resources, "LoadBalancer")
    assert lb["Scheme"] == "internet-facing" and lb["Type"] == "application"
    listeners = {p["Properties"]["Port"]: p["Properties"] for p in of_type(resources, "AWS::ElasticLoadBalancingV2::Listener").values()}
    assert set(listeners) == {80, 443}
    https = listeners[443]
    assert https["Protocol"] == "HTTPS"
    assert https["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    assert https["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": "IngestTargetGroup"}}]
    http = listeners[80]
    assert http["Protocol"] == "HTTP"
    (action,) = http["DefaultActions"]
    assert action["Type"] == "redirect"
    assert action["RedirectConfig"]["Protocol"] == "HTTPS" and action["RedirectConfig"]["Port"] == "443"


# ------------------------------------------------------------------------------------------------
# alarms and outputs


def test_alarms_watch_dlqs_errors_and_queue_age(resources):
    alarms = [a["Properties"] for a in of_type(resources, "AWS::CloudWatch::Alarm").values()]

    def watching(metric, **dims):
        return [
            a for a in alarms
            if a["MetricName"] == metric
            and all({"Name": k, "Value": v} in a.get("Dimensions", []) for k, v in dims.items())
        ]

    for dlq in ("IngestDLQ", "WriterDLQ"):
        (a,) = watching("ApproximateNumberOfMessagesVisible", QueueName={"Fn::GetAtt": [dlq, "QueueName"]})
        assert a["Threshold"] == 0 and a["ComparisonOperator"] == "GreaterThanThreshold"
    for queue in ("IngestQueue", "WriterQueue"):
        assert watching("ApproximateAgeOfOldestMessage", QueueName={"Fn::GetAtt": [queue, "QueueName"]})
    for function in ("IngestFunction", "WriterFunction", "CompactFunction"):
        assert watching("Errors", FunctionName={"Ref": function})
    assert watching("ApproximateNumberOfMessagesVisible", QueueName={"Fn::GetAtt": ["CompactFailureQueue", "QueueName"]})
    # The compactor's EMF metrics, by the names and dimension the compact function emits.
    report = (ROOT / "compact/src/report.rs").read_text()
    emitted = set(re.findall(r'\("(\w+)", "(?:Count|Bytes|Seconds)"\)', report))
    assert {"CompactionFailures", "RunsOutOfTime", "PartitionsWaiting", "DuplicatesRemoved"} <= emitted
    for metric in ("CompactionFailures", "RunsOutOfTime"):
        (a,) = watching(metric, Function="compact")
        assert a["Namespace"] == "Sparklake"
    (behind,) = watching("RunsOutOfTime", Function="compact")
    assert behind["Statistic"] == "Minimum" and behind["EvaluationPeriods"] >= 3
    assert watching("HTTPCode_Target_5XX_Count", TargetGroup={"Fn::GetAtt": ["IngestTargetGroup", "TargetGroupFullName"]})
    # Rows the tables cannot see: the writer's EMF metric (namespace and dimension as it emits).
    (unprojected,) = watching("UnprojectedTypes", Function="writer")
    assert unprojected["Namespace"] == "Sparklake" and unprojected["Threshold"] == 0
    for a in alarms:
        assert a["AlarmActions"] == {"Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}
    assert resources["AlarmTopic"]["Condition"] == "HasAlarmEmail"


def test_outputs(template):
    outputs = template["Outputs"]
    for name in (
        "WebhookUrl", "BucketName", "IngestQueueUrl", "WriterQueueUrl", "IngestDLQUrl", "WriterDLQUrl",
        "CompactFailureQueueUrl",
        "GlueDatabase", "EventsTable", "EventsCsvTable", "WorkGroup",
    ):
        assert name in outputs, name
    assert outputs["WebhookUrl"]["Value"] == {"Fn::Sub": "https://${LoadBalancer.DNSName}/"}


# ------------------------------------------------------------------------------------------------
# the template as CloudFormation will see it, after the SAM transform


def test_sam_transform_adds_no_permissions_of_its_own(template, monkeypatch):
    from samtranslator.translator.transform import transform

    monkeypatch.setenv("AWS_DEFAULT_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))

    class NoManagedPolicies:
        def load(self):
            return {}

    t = json.loads(json.dumps(template))
    t["Globals"]["Function"]["CodeUri"] = "s3://bucket/key"  # local paths are for `sam build`
    out = transform(t, {}, NoManagedPolicies())["Resources"]
    mappings = {
        v["Properties"]["FunctionName"]["Ref"]: v["Properties"]
        for v in out.values() if v["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    assert set(mappings) == {"FanoutFunction", "WriterFunction"}
    assert mappings["FanoutFunction"]["EventSourceArn"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    assert mappings["WriterFunction"]["EventSourceArn"] == {"Fn::GetAtt": ["WriterQueue", "Arn"]}
    for m in mappings.values():
        assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    roles = {k for k, v in out.items() if v["Type"] == "AWS::IAM::Role"}
    assert roles == {"IngestRole", "FanoutRole", "WriterRole", "CompactRole", "RawArchiveRole"}, "SAM generated a role"
    # The schedule: one EventBridge rule invoking the compact function, allowed from that rule only.
    (rule,) = [v["Properties"] for v in out.values() if v["Type"] == "AWS::Events::Rule"]
    assert rule["ScheduleExpression"] == {"Ref": "CompactSchedule"}
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": ["CompactFunction", "Arn"]}]
    (allowed,) = [v["Properties"] for v in out.values()
                  if v["Type"] == "AWS::Lambda::Permission" and v["Properties"]["Principal"] == "events.amazonaws.com"]
    assert allowed["FunctionName"] == {"Ref": "CompactFunction"}
    assert "Fn::GetAtt" in allowed["SourceArn"]
    (invoke,) = [v["Properties"] for v in out.values() if v["Type"] == "AWS::Lambda::EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 0
    assert not function_policy_statements(out) == [] and all(
        r != "*" for _, s in function_policy_statements(out) for r in as_list(s["Resource"])
    )
    for k in roles:
        assert "ManagedPolicyArns" not in out[k]["Properties"], k


# ------------------------------------------------------------------------------------------------
# security: every policy in the template, resource policies, secrets, TLS

# Actions that accept only Resource "*" (AWS documents no resource type for them). A statement
# may use "*" only if every action in it is listed here; none of them is granted today.
STAR_ONLY_ACTIONS = {
    "cloudwatch:PutMetricData",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
}


def all_policy_documents(node, where="template"):
    """(where, document, kind) for every IAM policy document anywhere in the template: role and
    policy documents, trust policies, bucket/queue/topic policies, SAM function policies."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}/{key}"
            if key in ("PolicyDocument", "AssumeRolePolicyDocument") and isinstance(value, dict):
                found.append((here, value, "trust" if key == "AssumeRolePolicyDocument" else "policy"))
            elif key == "Policies" and isinstance(value, list):
                for i, pol in enumerate(value):
                    if isinstance(pol, dict) and "Statement" in pol:
                        found.append((f"{here}[{i}]", pol, "policy"))
                    else:
                        found.extend(all_policy_documents(pol, f"{here}[{i}]"))
            else:
                found.extend(all_policy_documents(value, here))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found.extend(all_policy_documents(item, f"{where}[{i}]"))
    return found


def is_wildcard_resource(r):
    if r == "*":
        return True
    if isinstance(r, str):
        # A whole service or account: arn:aws:s3:::*, arn:aws:sqs:us-east-1:123:*, ...
        return bool(re.fullmatch(r"arn:[^:]*:[^:]*:[^:]*:[^:]*:\*", r)) or r.endswith(":::*")
    if isinstance(r, dict) and "Fn::Sub" in r:
        text = r["Fn::Sub"] if isinstance(r["Fn::Sub"], str) else r["Fn::Sub"][0]
        return text.endswith(":*") and "/" not in text
    return False


def test_every_allow_statement_in_the_template_names_its_resources(template):
    docs = all_policy_documents(template["Resources"])
    kinds = [k for _, _, k in docs]
    assert kinds.count("trust") >= 4 and kinds.count("policy") >= 5, docs
    for where, doc, kind in docs:
        for s in statements(doc):
            assert "NotResource" not in s and "NotAction" not in s and "NotPrincipal" not in s, where
            if kind == "trust":
                # Only AWS services assume the roles, never an account or anyone.
                assert s["Effect"] == "Allow" and set(s["Principal"]) == {"Service"}, where
                assert as_list(s["Action"]) == ["sts:AssumeRole"], where
                continue
            if s["Effect"] == "Deny":
                continue  # a deny may be as wide as it likes
            actions = as_list(s["Action"])
            for a in actions:
                assert a != "*" and not a.endswith(":*"), f"{where}: Action {a}"
            resources = as_list(s["Resource"])
            assert resources, f"{where}: no Resource"
            for r in resources:
                if is_wildcard_resource(r):
                    assert set(actions) <= STAR_ONLY_ACTIONS, (
                        f"{where}: Resource {r} on {actions}; only {sorted(STAR_ONLY_ACTIONS)} may use '*'"
                    )


def test_no_resource_policy_lets_anyone_in(template):
    for where, doc, _ in all_policy_documents(template["Resources"]):
        for s in statements(doc):
            principal = s.get("Principal")
            anyone = principal == "*" or (isinstance(principal, dict) and "*" in as_list(principal.get("AWS", [])))
            if anyone:
                assert s["Effect"] == "Deny", f"{where}: allows anyone: {s}"


def test_bucket_has_no_public_acl_website_or_open_cors(resources):
    b = props(resources, "DataBucket")
    assert "AccessControl" not in b, "ACLs are disabled (BucketOwnerEnforced)"
    assert "WebsiteConfiguration" not in b
    assert "CorsConfiguration" not in b
    pab = b["PublicAccessBlockConfiguration"]
    assert pab == {"BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}


def test_auth_secret_comes_only_from_secrets_manager(template, resources):
    params = template["Parameters"]
    pattern = params["AuthSecretArn"]["AllowedPattern"]
    # The parameter can hold a Secrets Manager ARN (or nothing), never a credential itself.
    assert re.fullmatch(pattern, "arn:aws:secretsmanager:us-east-1:123456789012:secret:sparklake/webhook-AbCdEf")
    assert re.fullmatch(pattern, "")
    for plaintext in ("change-me", "s3cr3t-token", "Bearer abc", "user:password", "arn:aws:s3:::bucket"):
        assert not re.fullmatch(pattern, plaintext), plaintext
    # Required unless the endpoint is deliberately open.
    (assertion,) = template["Rules"]["SecretUnlessOpen"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AuthSecretArn"}, ""]}]}
    assert template["Rules"]["SecretUnlessOpen"]["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AuthMode"}, "none"]}]}
    # No parameter is a hidden value (NoEcho is how a secret would sneak in as a parameter).
    for name, p in params.items():
        assert not p.get("NoEcho"), f"parameter {name} is NoEcho: secrets belong in Secrets Manager"
    # Only the ingest role reads a secret, and only that one; nothing reads SSM or KMS-decrypts
    # beyond the bucket key.
    readers = []
    for where, doc, kind in all_policy_documents(template["Resources"]):
        for s in statements(doc):
            for a in as_list(s.get("Action", [])):
                if a.startswith(("secretsmanager:", "ssm:")):
                    readers.append((where, a, s["Resource"]))
    assert readers == [(
        "template/IngestRole/Properties/Policies[0]/PolicyDocument", "secretsmanager:GetSecretValue", {"Ref": "AuthSecretArn"}
    )], readers


def test_https_listener_uses_a_tls12_or_newer_policy_and_queues_are_encrypted(resources):
    listeners = [p["Properties"] for p in of_type(resources, "AWS::ElasticLoadBalancingV2::Listener").values()]
    (https,) = [l for l in listeners if l["Protocol"] == "HTTPS"]
    assert re.fullmatch(r"ELBSecurityPolicy-TLS13-1-[23]-.*", https["SslPolicy"]), https["SslPolicy"]
    for name, q in of_type(resources, "AWS::SQS::Queue").items():
        assert q["Properties"].get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in q["Properties"], name
