"""The day-one queries in queries/*.sql, run unchanged in DuckDB over folders sparklake wrote.

The same text is what Athena runs (scripts/query); here `events` is a DuckDB view over the
Parquet files with the partition columns event_type and dt as strings, as in the Glue table.

Run: SPARKLAKE_BIN=path/to/sparklake  $VENV/bin/python -m pytest tests/queries
(default binary: $CARGO_TARGET_DIR/debug/sparklake, else target/debug/sparklake).
"""

import json
import os
import re
import subprocess
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "queries"
SAMPLE = ROOT / "fixtures" / "sparkpost" / "batch.json"
CAMPAIGN = "Example Campaign Name"
SAMPLE_TYPES = 19


def sparklake_bin() -> Path:
    if os.environ.get("SPARKLAKE_BIN"):
        return Path(os.environ["SPARKLAKE_BIN"])
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / "sparklake")
    candidates.append(ROOT / "target" / "debug" / "sparklake")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    pytest.fail(
        "no sparklake binary: build it (cargo build -p sparklake) or set SPARKLAKE_BIN; looked at "
        + ", ".join(map(str, candidates))
    )


def run(*args: str) -> str:
    env = dict(os.environ, SPARKLAKE_LOG="warn")
    done = subprocess.run(
        [str(sparklake_bin()), *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, f"sparklake {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def sql(name: str) -> str:
    return (QUERIES / f"{name}.sql").read_text()


def connect(data: Path) -> duckdb.DuckDBPyConnection:
    """`events` as the Glue table presents it (dt a string), then the events_dedup view."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    glob = str(data / "parquet" / "*" / "*" / "*.parquet").replace("'", "''")
    con.execute(
        "CREATE VIEW events AS SELECT * REPLACE (CAST(dt AS VARCHAR) AS dt) "
        f"FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    )
    con.execute(sql("events_dedup_view"))
    return con


def rows(con: duckdb.DuckDBPyConnection, text: str) -> list[dict]:
    result = con.execute(text)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """What `sparklake demo` writes: the sample batch once."""
    data = tmp_path_factory.mktemp("demo") / "data"
    run("demo", "--data", str(data))
    return data


@pytest.fixture(scope="session")
def twice(tmp_path_factory) -> Path:
    """The sample batch imported twice: every event in the lake two times, as after a replay."""
    data = tmp_path_factory.mktemp("twice") / "data"
    run("import", "--data", str(data), str(SAMPLE))
    run("import", "--data", str(data), str(SAMPLE))
    return data


@pytest.fixture(scope="session")
def sms(tmp_path_factory) -> Path:
    """Two different sms_status events (no event_id), imported twice with different whitespace."""
    root = tmp_path_factory.mktemp("sms")
    batch = root / "sms.json"
    template = {
        "msys": {
            "message_event": {
                "type": "sms_status",
                "timestamp": "1454442600",
                "sms_src": "1234",
                "sms_dst": "7876712656",
            }
        }
    }
    first = json.loads(json.dumps(template))
    second = json.loads(json.dumps(template))
    second["msys"]["message_event"]["sms_dst"] = "7876712657"
    # Posted indented once, then compact (as the archive replays it): still the same events.
    batch.write_text(json.dumps([first, second], indent=2))
    compact = root / "compact.json"
    compact.write_text(json.dumps([first, second], separators=(",", ":")))
    data = root / "data"
    run("import", "--data", str(data), str(batch))
    run("import", "--data", str(data), str(compact))
    return data


def test_every_query_file_is_one_statement_with_a_leading_comment():
    files = sorted(QUERIES.glob("*.sql"))
    assert {f.stem for f in files} >= {
        "daily_rates",
        "bounces_by_class_and_domain",
        "engagement_by_link",
        "events_dedup_view",
    }
    for f in files:
        text = f.read_text()
        assert text.startswith("-- ") and len(text.splitlines()[0]) > 20, f"{f.name}: no leading comment"
        body = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("--")).strip()
        # Athena takes one statement per query.
        assert body.rstrip(";").count(";") == 0, f"{f.name}: more than one statement"


# DuckDB-only or Trino-only spellings that would make the same text fail on the other engine.
NOT_PORTABLE = [
    (r"::", "`::` casts (DuckDB/Postgres only): use CAST(x AS t)"),
    (r"\*\s*(EXCLUDE|REPLACE)\b", "SELECT * EXCLUDE/REPLACE (DuckDB only)"),
    (r"\bGROUP\s+BY\s+ALL\b|\bORDER\s+BY\s+ALL\b", "GROUP/ORDER BY ALL (DuckDB only)"),
    (r"\bILIKE\b", "ILIKE (not in Trino): use lower(x) LIKE"),
    (r"\bQUALIFY\b", "QUALIFY (not in Trino)"),
    (r"`", "backtick identifiers (Hive DDL only): use double quotes"),
    (r"\bread_(parquet|csv)\b", "table functions: reference the table `events`"),
    (r"\bdate_parse\b|\bfrom_unixtime\b|\bstrftime\b|\bstrptime\b", "engine-specific date functions"),
    (r"\bapprox_distinct\b|\bapprox_count_distinct\b", "engine-specific approximations"),
    (r"\bTRY_CAST\b|\bTRY\s*\(", "TRY/TRY_CAST differ between the engines"),
    (r"\bLIMIT\s+\d+\s*,", "LIMIT a, b"),
]


def test_queries_avoid_engine_specific_syntax():
    for f in sorted(QUERIES.glob("*.sql")):
        body = "\n".join(l for l in f.read_text().splitlines() if not l.lstrip().startswith("--"))
        for pattern, why in NOT_PORTABLE:
            assert not re.search(pattern, body, re.IGNORECASE), f"{f.name}: {why}"


def test_divisions_are_double_and_guarded_against_zero():
    # Trino divides integers as integers (1/2 = 0) and fails on x/0; DuckDB does neither, so this
    # is checked on the text: CAST(... AS double) / NULLIF(..., 0).
    for f in sorted(QUERIES.glob("*.sql")):
        body = "\n".join(l for l in f.read_text().splitlines() if not l.lstrip().startswith("--"))
        parts = body.split("/")
        for before, after in zip(parts, parts[1:]):
            assert re.search(r"AS double\)\s*$", before, re.IGNORECASE), f"{f.name}: / without CAST(... AS double)"
            assert re.match(r"\s*NULLIF\(", after, re.IGNORECASE), f"{f.name}: / without NULLIF(..., 0)"


def test_events_dedup_keeps_one_row_per_event(demo, twice):
    con = connect(twice)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 2 * SAMPLE_TYPES
    assert con.execute("SELECT count(*) FROM events_dedup").fetchone()[0] == SAMPLE_TYPES
    # SparkPost reuses one event_id across a message's events: the type is part of the identity.
    per_type = con.execute(
        "SELECT type, count(*) FROM events_dedup GROUP BY type HAVING count(*) <> 1"
    ).fetchall()
    assert per_type == []
    assert con.execute("SELECT count(DISTINCT type) FROM events_dedup").fetchone()[0] == SAMPLE_TYPES
    # The earliest copy is kept, and the view has exactly the table's columns.
    first = con.execute(
        "SELECT min(received_at) FROM events WHERE type = 'bounce'"
    ).fetchone()[0]
    kept = con.execute("SELECT received_at FROM events_dedup WHERE type = 'bounce'").fetchone()[0]
    assert kept == first
    columns = lambda rel: [d[0] for d in con.execute(f"SELECT * FROM {rel} LIMIT 0").description]
    # (DuckDB may order the hive columns differently from Glue's event_type, dt)
    assert sorted(columns("events_dedup")) == sorted(columns("events"))
    assert columns("events_dedup")[-2:] == ["event_type", "dt"]
    # Without duplicates it changes nothing.
    con = connect(demo)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == SAMPLE_TYPES
    assert con.execute("SELECT count(*) FROM events_dedup").fetchone()[0] == SAMPLE_TYPES


def test_events_dedup_keys_events_without_event_id_by_their_raw_json(sms):
    con = connect(sms)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 4
    assert con.execute("SELECT count(*) FROM events WHERE event_id IS NULL").fetchone()[0] == 4
    assert con.execute("SELECT count(DISTINCT raw) FROM events").fetchone()[0] == 4
    kept = con.execute("SELECT sms_dst FROM events_dedup ORDER BY sms_dst").fetchall()
    assert kept == [("7876712656",), ("7876712657",)]


def expected_daily_rates(row):
    assert row["dt"] == "2016-02-02" and isinstance(row["dt"], str)
    assert row["campaign_id"] == CAMPAIGN
    assert (row["injections"], row["deliveries"], row["bounces"]) == (1, 1, 1)
    assert (row["out_of_band_bounces"], row["complaints"], row["unsubscribes"]) == (1, 1, 2)
    assert row["bounce_rate"] == pytest.approx(0.5)  # 1 bounce / (1 delivery + 1 bounce)
    assert row["complaint_rate"] == pytest.approx(1.0)
    assert row["unsubscribe_rate"] == pytest.approx(2.0)


def test_daily_rates(demo, twice):
    result = rows(connect(demo), sql("daily_rates"))
    assert len(result) == 1, result
    expected_daily_rates(result[0])
    # Over duplicated data the counts are the same: the query reads events_dedup.
    result = rows(connect(twice), sql("daily_rates"))
    assert len(result) == 1, result
    expected_daily_rates(result[0])


def test_daily_rates_divides_as_doubles_and_never_by_zero(tmp_path):
    # Two deliveries and one bounce: 1/3, not 0 (integer division); no delivery: NULL, no error.
    batch = json.loads(SAMPLE.read_text())
    by_type = {e["msys"][next(iter(e["msys"]))]["type"]: e for e in batch}
    delivery2 = json.loads(json.dumps(by_type["delivery"]))
    delivery2["msys"]["message_event"]["event_id"] = "1"
    lone_bounce = json.loads(json.dumps(by_type["bounce"]))
    lone_bounce["msys"]["message_event"].update(event_id="2", campaign_id="bounces only")
    picked = [by_type["delivery"], delivery2, by_type["bounce"], lone_bounce]
    (tmp_path / "b.json").write_text(json.dumps(picked))
    run("import", "--data", str(tmp_path / "data"), str(tmp_path / "b.json"))
    result = {r["campaign_id"]: r for r in rows(connect(tmp_path / "data"), sql("daily_rates"))}
    assert result[CAMPAIGN]["deliveries"] == 2
    assert result[CAMPAIGN]["bounce_rate"] == pytest.approx(1 / 3)
    assert result[CAMPAIGN]["complaint_rate"] == 0
    assert result["bounces only"]["bounce_rate"] == pytest.approx(1.0)
    assert result["bounces only"]["complaint_rate"] is None


def test_bounces_by_class_and_domain(demo, twice):
    for data in (demo, twice):
        result = rows(connect(data), sql("bounces_by_class_and_domain"))
        assert len(result) == 1, result
        row = result[0]
        assert (row["bounce_class"], row["recipient_domain"]) == (1, "example.com")
        assert row["bounce_category"] == "Undetermined"
        # the bounce and the out-of-band bounce, each once
        assert (row["bounces"], row["out_of_band_bounces"], row["recipients"]) == (2, 1, 1)
        assert (row["first_dt"], row["last_dt"]) == ("2016-02-02", "2016-02-02")


def test_bounce_domains_are_lower_cased(tmp_path):
    batch = json.loads(SAMPLE.read_text())
    bounce = next(e for e in batch if e["msys"].get("message_event", {}).get("type") == "bounce")
    other = json.loads(json.dumps(bounce))
    other["msys"]["message_event"].update(
        event_id="2", rcpt_to="Someone@EXAMPLE.com", bounce_class="10"
    )
    (tmp_path / "b.json").write_text(json.dumps([bounce, other]))
    run("import", "--data", str(tmp_path / "data"), str(tmp_path / "b.json"))
    result = rows(connect(tmp_path / "data"), sql("bounces_by_class_and_domain"))
    assert [(r["bounce_class"], r["bounce_category"], r["recipient_domain"], r["bounces"]) for r in result] == [
        (1, "Undetermined", "example.com", 1),
        (10, "Hard", "example.com", 1),
    ]


def test_engagement_by_link(demo, twice):
    for data in (demo, twice):
        result = rows(connect(data), sql("engagement_by_link"))
        assert len(result) == 1, result
        row = result[0]
        assert (row["dt"], row["campaign_id"]) == ("2016-02-02", CAMPAIGN)
        assert (row["target_link_url"], row["target_link_name"]) == (
            "http://example.com",
            "Example Link Name",
        )
        assert (row["clicks"], row["unique_clickers"]) == (1, 1)
        assert (row["campaign_opens"], row["campaign_unique_openers"]) == (1, 1)
        assert row["click_to_open"] == pytest.approx(1.0)


def test_engagement_lists_each_link_and_campaigns_opened_but_not_clicked(tmp_path):
    batch = json.loads(SAMPLE.read_text())
    of = lambda t: next(e for e in batch if e["msys"].get("track_event", {}).get("type") == t)
    click, open_ = of("click"), of("open")
    click2 = json.loads(json.dumps(click))
    click2["msys"]["track_event"].update(
        event_id="2", target_link_url="http://example.com/b", rcpt_to="other@example.com"
    )
    click3 = json.loads(json.dumps(click2))
    click3["msys"]["track_event"]["event_id"] = "3"
    quiet_open = json.loads(json.dumps(open_))
    quiet_open["msys"]["track_event"].update(event_id="4", campaign_id="opened only")
    (tmp_path / "b.json").write_text(json.dumps([click, click2, click3, open_, quiet_open]))
    run("import", "--data", str(tmp_path / "data"), str(tmp_path / "b.json"))
    result = rows(connect(tmp_path / "data"), sql("engagement_by_link"))
    got = [
        (r["campaign_id"], r["target_link_url"], r["clicks"], r["unique_clickers"], r["campaign_opens"])
        for r in result
    ]
    assert got == [
        (CAMPAIGN, "http://example.com/b", 2, 1, 1),
        (CAMPAIGN, "http://example.com", 1, 1, 1),
        ("opened only", None, 0, 0, 1),
    ]


LEGACY = ROOT / "fixtures" / "legacy"


def test_a_lake_of_older_and_newer_objects_reads_whole(tmp_path):
    """Objects written before the 2026-12 columns (fixtures/legacy: 47 columns, timestamps as
    INT64 TIMESTAMP WITH TIME ZONE) beside today's (INT96): the view reads both, the old objects'
    new columns null, their timestamps the same instants; the day-one queries and the
    de-duplicating view count each event once."""
    import shutil

    data = tmp_path / "data"
    run("import", "--data", str(data), str(SAMPLE))
    for path in LEGACY.rglob("*.parquet"):
        target = data / path.relative_to(LEGACY)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    con = connect(data)
    everything = rows(con, "SELECT type, epoch_ms(\"timestamp\") AS ts, timestamp_implausible, "
                           "mailbox_provider, injection_time FROM events ORDER BY type")
    assert len(everything) == 19 + 3
    legacy = [r for r in everything if r["timestamp_implausible"] is None]
    assert sorted(r["type"] for r in legacy) == ["bounce", "click", "delivery"]
    assert all(r["mailbox_provider"] is None and r["injection_time"] is None for r in legacy)
    # The same instant from both encodings (the connection is UTC, as scripts/query's).
    assert {r["ts"] for r in everything} == {1_454_442_600_000}, {r["ts"] for r in everything}
    deduped = rows(con, "SELECT count(*) AS n FROM events_dedup")
    assert deduped == [{"n": 19}]
