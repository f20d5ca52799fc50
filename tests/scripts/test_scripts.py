"""The operator scripts of scripts/, on local data folders (no AWS account, no SparkPost key).

Run: SPARKLAKE_BIN=path/to/sparklake  $VENV/bin/python -m pytest tests/scripts
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["deploy", "create-webhook", "redrive", "replay-archive", "query"]


def sparklake_bin() -> str:
    if os.environ.get("SPARKLAKE_BIN"):
        return os.environ["SPARKLAKE_BIN"]
    for c in [Path(os.environ.get("CARGO_TARGET_DIR", "/nonexistent")) / "debug" / "sparklake",
              ROOT / "target" / "debug" / "sparklake"]:
        if c.is_file():
            return str(c)
    pytest.fail("no sparklake binary: cargo build -p sparklake, or set SPARKLAKE_BIN")


def script(name, *args, env=None, check=True):
    full = dict(os.environ, SPARKLAKE_BIN=sparklake_bin(), SPARKLAKE_LOG="warn")
    for k in ("SPARKPOST_API_KEY", "SPARKLAKE_STACK_OUTPUTS"):
        full.pop(k, None)
    full.update(env or {})
    done = subprocess.run([str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          env=full, timeout=120)
    if check:
        assert done.returncode == 0, f"{name} {args}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture()
def demo(tmp_path) -> Path:
    data = tmp_path / "data"
    subprocess.run([sparklake_bin(), "demo", "--data", str(data)], check=True, capture_output=True)
    return data


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    done = script(name, "--help")
    assert f"scripts/{name}" in done.stdout
    bad = script(name, "--no-such-flag", check=False)
    assert bad.returncode != 0 and "unknown argument" in bad.stderr


def test_query_local_runs_a_named_query(demo):
    out = script("query", "--local", "--data", str(demo), "--named", "daily_rates").stdout
    lines = out.splitlines()
    assert lines[0].startswith("dt,campaign_id,injections,deliveries,bounces")
    assert lines[1].startswith("2016-02-02,Example Campaign Name,1,1,1,")
    assert len(lines) == 2


def test_query_local_sql_and_csv_table(demo):
    out = script("query", "--local", "--data", str(demo), "--format", "table", "--sql",
                 "SELECT count(*) AS n FROM events_csv WHERE event_type = 'bounce'").stdout
    assert out.split() == ["n", "-", "1"]
    bad = script("query", "--local", "--data", str(demo), "--sql", "SELECT nope FROM events", check=False)
    assert bad.returncode != 0 and "query: error" in bad.stderr


def test_query_local_reads_csv_as_text_like_the_glue_table(tmp_path):
    """events_csv is all text, as its Glue table declares it: a number too long for any integer
    type, next to short ones, is text, not a type-guessing error; and CSV timestamps are UTC
    text, the same whatever the machine's time zone."""
    data = tmp_path / "data"
    batch = tmp_path / "batch.json"
    long = "9" * 40
    # campaign_id looks like an integer for thousands of rows (DuckDB's type guess), then is a
    # number no integer type holds; text columns keep a number's digits as sent.
    events = [{"msys": {"message_event": {"type": "bounce", "event_id": str(i), "timestamp": "1454442600",
                                          "campaign_id": int(long) if i == 2999 else i}}}
              for i in range(3000)]
    batch.write_text(json.dumps(events))
    subprocess.run([sparklake_bin(), "import", "--data", str(data), str(batch)], check=True,
                   capture_output=True)
    for tz in ("UTC", "America/New_York"):
        out = script("query", "--local", "--data", str(data), "--sql",
                     "SELECT any_value(typeof(campaign_id)) AS t, max(length(campaign_id)) AS l, min(\"timestamp\") AS ts, "
                     "count(*) AS n FROM events_csv", env={"TZ": tz}).stdout
        assert out.splitlines()[1] == f"VARCHAR,40,2016-02-02 19:50:00.000,3000", tz
        # The Parquet view's timestamps read as UTC too.
        out = script("query", "--local", "--data", str(data), "--sql",
                     "SELECT CAST(min(\"timestamp\") AS VARCHAR) AS ts FROM events", env={"TZ": tz}).stdout
        assert out.splitlines()[1] == "2016-02-02 19:50:00", tz


def test_query_aws_needs_the_stack_outputs():
    done = script("query", "--named", "daily_rates", env={"SPARKLAKE_STACK_OUTPUTS": "{}"}, check=False)
    assert done.returncode != 0 and "WorkGroup" in done.stderr


def test_create_webhook_without_key_prints_the_masked_request():
    env = {"SPARKLAKE_STACK_OUTPUTS": json.dumps({"WebhookUrl": "https://hooks.example/"}),
           "SPARKLAKE_BASIC_USER": "sparkpost", "SPARKLAKE_BASIC_PASSWORD": "s3cret-pw"}
    done = script("create-webhook", "--auth", "basic", "--events", "bounce,delivery", env=env)
    assert "s3cret-pw" not in done.stdout + done.stderr
    head, body = done.stdout.split("\n\n", 1)
    assert head.startswith("POST https://api.sparkpost.com/api/v1/webhooks")
    request = json.loads(body)
    assert request == {
        "name": "sparklake", "target": "https://hooks.example/", "events": ["bounce", "delivery"],
        "auth_type": "basic", "auth_credentials": {"username": "sparkpost", "password": "****"},
    }
    assert "SPARKPOST_API_KEY is not set" in done.stderr


def test_create_webhook_bearer_and_header_go_in_custom_headers():
    done = script("create-webhook", "--target", "https://h.example/", "--auth", "bearer",
                  "--api-host", "api.eu.sparkpost.com", env={"SPARKLAKE_BEARER_TOKENS": "tok-1,tok-2"})
    head, body = done.stdout.split("\n\n", 1)
    assert "api.eu.sparkpost.com" in head and "tok-" not in done.stdout
    assert json.loads(body)["custom_headers"] == {"Authorization": "Bearer ****"}
    done = script("create-webhook", "--target", "https://h.example/", "--auth", "header",
                  "--dry-run", env={"SPARKLAKE_HEADER_NAME": "X-Hook", "SPARKLAKE_HEADER_VALUE": "hv",
                                    "SPARKPOST_API_KEY": "key-123"})
    assert "key-123" not in done.stdout and "Authorization: ****" in done.stdout
    assert json.loads(done.stdout.split("\n\n", 1)[1])["custom_headers"] == {"X-Hook": "****"}
    missing = script("create-webhook", "--target", "https://h.example/", "--auth", "basic", check=False)
    assert missing.returncode != 0 and "needs username and password" in missing.stderr


def test_create_webhook_oauth2_points_sparkpost_at_the_token_endpoint():
    done = script("create-webhook", "--target", "https://hooks.example/webhook", "--auth", "oauth2",
                  env={"SPARKLAKE_OAUTH2_CLIENT_ID": "sparkpost", "SPARKLAKE_OAUTH2_CLIENT_SECRET": "cs-123"})
    assert "cs-123" not in done.stdout + done.stderr
    request = json.loads(done.stdout.split("\n\n", 1)[1])
    assert request["auth_type"] == "oauth2"
    assert request["auth_request_details"] == {
        "url": "https://hooks.example/oauth2/token",
        "body": {"client_id": "sparkpost", "client_secret": "****", "grant_type": "client_credentials"},
    }
    missing = script("create-webhook", "--target", "https://h.example/", "--auth", "oauth2", check=False)
    assert missing.returncode != 0 and "needs client_id and client_secret" in missing.stderr


def test_redrive_local(demo):
    out = script("redrive", "--data", str(demo)).stdout
    assert "ingest" in out and "events" in out


def test_replay_archive_reimports_the_local_archive(demo):
    count = lambda rel: script("query", "--local", "--data", str(demo), "--sql",
                               f"SELECT count(*) AS n FROM {rel}").stdout.split()[1]
    assert count("events") == "19"
    archive = lambda: {p: p.stat().st_size for p in (demo / "archive").rglob("*.ndjson")}
    archived = archive()
    script("replay-archive", "--data", str(demo))
    assert count("events") == "38"          # new objects beside the old ones...
    assert count("events_dedup") == "19"    # ...which the view removes
    assert archive() == archived and sum(archived.values()) > 0  # not archived again
    none = script("replay-archive", "--data", str(demo), "--from", "1999-01-01", "--to", "1999-01-02", check=False)
    assert none.returncode != 0 and "no archive files" in none.stderr
