"""The deploy rehearsal (scripts/rehearse) passes on template.yaml, and fails on each of the
deliberately broken templates below, for the reason it names.

Needs the Lambda zips for this machine's arch: $SPARKLAKE_LAMBDA_ZIPS (scripts/test.sh builds
them with scripts/build-lambda.sh --compiler cargo), else $CARGO_TARGET_DIR/lambda-zips/<arch>.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "template.yaml").read_text()


def zips():
    if os.environ.get("SPARKLAKE_LAMBDA_ZIPS"):
        return os.environ["SPARKLAKE_LAMBDA_ZIPS"]
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/sparklake/target"))
    arch = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
    return f"{target}/lambda-zips/{arch}"


def rehearse(*args, timeout=600):
    return subprocess.run([str(ROOT / "scripts" / "rehearse"), "--zips", zips(), *args],
                          capture_output=True, text=True, timeout=timeout)


def within(block, old, new):
    """The template with `old` replaced by `new` in the resource (or parameter) `block`."""
    start = TEMPLATE.index(f"\n{block}:\n")
    following = re.compile(r"\n  [A-Za-z][A-Za-z0-9]*:\n").search(TEMPLATE, start + 1)
    end = following.start() if following else len(TEMPLATE)
    at = TEMPLATE.find(old, start, end)
    assert at >= 0, f"{old!r} is not in {block.strip()}"
    return TEMPLATE[:at] + new + TEMPLATE[at + len(old):]


# Each breakage: what is broken, the broken template, and what the rehearsal must say.
BREAKAGES = [
    ("fanout's writer queue variable renamed",
     within("  FanoutFunction", "SPARKLAKE_WRITER_QUEUE_URL:", "SPARKLAKE_WRITERQUEUE_URL:"),
     "FanoutFunction: exited"),
    ("ingest's queue variable renamed",
     within("  IngestFunction", "SPARKLAKE_INGEST_QUEUE_URL:", "SPARKLAKE_QUEUE_URL:"),
     "IngestFunction: exited"),
    ("writer's bucket variable renamed",
     within("  WriterFunction", "SPARKLAKE_BUCKET: !Ref DataBucket", "SPARKLAKE_LAKE_BUCKET: !Ref DataBucket"),
     "WriterFunction: exited"),
    ("ingest's secret variable renamed",
     within("  IngestFunction", "SPARKLAKE_AUTH_SECRET_ARN:", "SPARKLAKE_SECRET_ARN:"),
     "IngestFunction: exited"),
    ("fanout's role without sqs:DeleteMessage (the event source's delete)",
     within("  FanoutRole", "                  - sqs:DeleteMessage\n", ""),
     "IAM refused a call: IAM DENIED: sqs:DeleteMessage"),
    ("writer's role without csv/ objects",
     within("  WriterRole", '                  - !Sub "${DataBucket.Arn}/csv/*"\n', ""),
     "IAM refused a call: IAM DENIED: s3:PutObject on arn:aws:s3:::rehearsal-databucket"),
    ("fanout's role grants firehose:PutRecord, not PutRecordBatch",
     within("  FanoutRole", "Action: firehose:PutRecordBatch", "Action: firehose:PutRecord"),
     "IAM DENIED: firehose:PutRecordBatch"),
    ("ingest's role quarantines under the wrong prefix",
     within("  IngestRole", '"${DataBucket.Arn}/quarantine/*"', '"${DataBucket.Arn}/quarantined/*"'),
     "IAM DENIED: s3:PutObject"),
    ("ingest's role cannot read its secret",
     within("  IngestRole", "Action: secretsmanager:GetSecretValue", "Action: secretsmanager:DescribeSecret"),
     "IngestFunction: exited"),
    ("compact's role without s3:DeleteObject",
     within("  CompactRole", "s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload", "s3:PutObject, s3:AbortMultipartUpload"),
     "IAM DENIED: s3:DeleteObject"),
    ("writer's role without glue:GetTable",
     within("  WriterRole", "Action: [glue:GetTable, glue:UpdateTable]", "Action: [glue:UpdateTable]"),
     "IAM DENIED: glue:GetTable"),
    ("an alarm on a Lambda dimension that does not exist",
     within("  WriterErrorsAlarm", "- { Name: FunctionName, Value: !Ref WriterFunction }", "- { Name: Function, Value: !Ref WriterFunction }"),
     "WriterErrorsAlarm: AWS/Lambda Errors has no dimension set ['Function']"),
    ("an alarm on an EMF dimension value no function emits",
     within("  UnprojectedTypesAlarm", "- { Name: Function, Value: writer }", "- { Name: Function, Value: Writer }"),
     "UnprojectedTypesAlarm: Sparklake UnprojectedTypes is never emitted with dimensions {'Function': 'Writer'}"),
    ("an alarm on an EMF metric no function emits",
     within("  CompactionFailuresAlarm", "MetricName: CompactionFailures", "MetricName: CompactionFailed"),
     "CompactionFailuresAlarm: no function emitted Sparklake 'CompactionFailed'"),
    ("a DLQ alarm naming the queue by its ARN",
     within("  IngestDLQAlarm", "Value: !GetAtt IngestDLQ.QueueName", "Value: !GetAtt IngestDLQ.Arn"),
     "IngestDLQAlarm: AWS/SQS ApproximateNumberOfMessagesVisible QueueName='arn:aws:sqs"),
    ("a dashboard metric no function emits",
     within("  Dashboard", '["Sparklake", "RowsWritten", "Function", "writer"]', '["Sparklake", "RowWritten", "Function", "writer"]'),
     "Dashboard / Lake: rows and objects written: no function emitted Sparklake 'RowWritten'"),
    ("the writer queue without a redrive policy",
     within("  WriterQueue", "      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt WriterDLQ.Arn\n        maxReceiveCount: 5\n", ""),
     "WriterQueue has no RedrivePolicy"),
    ("the writer's event source without ReportBatchItemFailures",
     within("  WriterFunction", "            FunctionResponseTypes: [ReportBatchItemFailures]\n", ""),
     "deleted although WriterFunction reported it failed"),
    ("the writer queue's visibility timeout below the writer's timeout",
     within("  WriterQueue", "VisibilityTimeout: 1200", "VisibilityTimeout: 60"),
     "visibility timeout 60 s is less than the function timeout 120 s"),
    ("the ALB not allowed to invoke ingest",
     within("  IngestAlbPermission", "Principal: elasticloadbalancing.amazonaws.com", "Principal: elb.amazonaws.com"),
     "no Lambda permission lets elasticloadbalancing.amazonaws.com invoke IngestFunction"),
    ("the archive's delivery role on the wrong prefix",
     within("  RawArchiveRole", '- !Sub "${DataBucket.Arn}/raw/*"', '- !Sub "${DataBucket.Arn}/archive/*"'),
     "FIREHOSE DELIVERY FAILED"),
    ("ingest's logs granted on fanout's log group",
     within("  IngestRole", "Resource: !GetAtt IngestLogGroup.Arn", "Resource: !GetAtt FanoutLogGroup.Arn"),
     "IngestFunction: its role cannot write its logs"),
    ("compact's timeout too short to start a job (its deadline is read from the Runtime API)",
     within("  CompactFunction", "Timeout: 900", "Timeout: 100"),
     "compacted nothing"),
    ("fanout fed from the writer queue",
     within("  FanoutFunction", "Queue: !GetAtt IngestQueue.Arn", "Queue: !GetAtt WriterQueue.Arn"),
     "FanoutFunction: its role cannot GetQueueAttributes on WriterQueue"),
]


@pytest.fixture(scope="module")
def have_zips():
    if not Path(zips(), "ingest", "bootstrap.zip").is_file():
        pytest.fail(f"no Lambda zips in {zips()} (scripts/build-lambda.sh --compiler cargo builds them)")


def test_the_template_rehearses(have_zips, tmp_path):
    done = rehearse("--work", str(tmp_path / "work"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    out = done.stdout
    for step in ("posted", "each once", "raw archive", "poison", "redrive", "schedule", "metrics:", "passed"):
        assert step in out, f"no `{step}` step in:\n{out}"


def test_breakages_are_listed_and_distinct():
    assert len(BREAKAGES) >= 10
    assert len({t for _, t, _ in BREAKAGES}) == len(BREAKAGES)
    assert all(t != TEMPLATE for _, t, _ in BREAKAGES)


def test_each_broken_template_fails_the_rehearsal(have_zips, tmp_path):
    def one(item):
        n, (what, text, reason) = item
        path = tmp_path / f"broken-{n}.yaml"
        path.write_text(text)
        done = rehearse("--template", str(path), "--timeout", "30", "--work", str(tmp_path / f"work-{n}"))
        return what, reason, done

    # Three at a time: each rehearsal is moto and four small processes, mostly waiting.
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(one, enumerate(BREAKAGES)))
    wrong = []
    for what, reason, done in results:
        said = done.stdout + done.stderr
        if done.returncode == 0:
            wrong.append(f"{what}: the rehearsal passed")
        elif reason not in said:
            tail = "\n    ".join(said.strip().splitlines()[-6:])
            wrong.append(f"{what}: failed, but not with `{reason}`:\n    {tail}")
    assert not wrong, "\n".join(wrong)
