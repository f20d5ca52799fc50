"""Engine compatibility: Spark with Hive support reads what sparklake writes, column for column.

`sparklake import` writes fixtures/compat/*.json (hostile text, extreme numbers, odd timestamps,
odd event types, every SparkPost class) into a temporary data folder; one SparkSession
(`local[2]`, Hive support, an embedded Derby metastore, JVM and session time zone UTC) creates
the two Glue tables from DDL generated from template.yaml itself (tests/compat/template_ddl.py),
runs `MSCK REPAIR TABLE` on each, and reads every row three ways:

  hive-serde  `events` through Hive's ParquetHiveSerDe (spark.sql.hive.convertMetastoreParquet
              = false: Spark's HiveTableScan over MapredParquetInputFormat),
  native      `events` through Spark's own Parquet reader (convertMetastoreParquet = true),
  opencsv     `events_csv` through OpenCSVSerde (every column a string),

and compares every column of every row with pyarrow's reading of the same Parquet files (the
partition values event_type and dt from the folder names, unescaped as Hive's
FileUtils.unescapePathName does). CSV values are compared with the Parquet value rendered as
the README says: timestamps `YYYY-MM-DD HH:MM:SS.mmm` (UTC), booleans `true`/`false`, null as
an empty field, floats as Rust's f64 Display (shortest round trip, never an exponent), line
breaks in text as the two characters `\\r` / `\\n`, line breaks in JSON columns as spaces.

A second data folder is written with SPARKLAKE_PARQUET_TIMESTAMP=millis (INT64
TIMESTAMP(MILLIS, UTC)): the native reader and the CSV must match there too, while Hive 2.3's
Parquet SerDe is expected to fail on every timestamp column ("LongWritable cannot be cast to
TimestampWritable"), the known limitation the INT96 default exists for; its other columns
must still match.

Besides the fixtures, the import takes one generated batch (`write_volume_batch`: thousands of
rows in one file, so columns span several pages and a dictionary falls back to plain). Other
checks: the metastore's tables are the template's (columns, SerDe and its properties, formats),
row counts (fixtures = pyarrow = every engine), partition folders round-trip to `type`, the
Parquet footers (types, TYPE_DEFINED column orders, data pages v1), pinned values of the hostile
cases (fixtures/compat/expected/values.json), `raw` and the text columns against the posted
JSON, and the CSV files read by Python's csv module.

Known engine behaviour, tolerated and reported in the run's notes: Spark's Hive table reader
(pyspark 4.3) ignores `skip.header.line.count`, so each CSV file's header comes back as a row;
those rows (exactly one per file) are dropped before comparing. Athena honours the property.

Mismatches are collected (event, column, engine, both values) and reported together; the time
of each phase is printed at the end (conftest.py).

Run: tests/compat/run.sh (installs pyspark, pyarrow and pyyaml; needs Java 17), or
     SPARKLAKE_BIN=path/to/sparklake python -m pytest tests/compat
Env: SPARKLAKE_BIN (required), SPARKLAKE_COMPAT_KEEP=DIR (keep the data folders and metastore
     there). run.sh bounds the whole run (SPARKLAKE_COMPAT_TIMEOUT_SECS, default 600): a guard
     against a hung JVM, not a measurement; conftest.py prints the time of each phase.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import template_ddl  # noqa: E402
from compat_timing import NOTES, elapsed, phase  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "compat"
EXPECTED_VALUES = FIXTURES / "expected" / "values.json"

# The CSV writes these string columns as JSON on one line (a CR or LF between tokens becomes a
# space) and every other string column with line breaks escaped as `\r` / `\n` (README, "Output
# layout and schema"; core/src/schema.rs, Kind::Json). Not in the template: the Glue type of
# both kinds is `string`.
JSON_COLUMNS = {"rcpt_tags", "rcpt_meta", "raw", "sms_remoteids", "ab_test"}
# Which timestamps place an event (core/src/schema.rs, TimestampPolicy; README).
TIMESTAMP_FLOOR_MILLIS = 1_388_534_400_000  # 2014-01-01T00:00:00Z
MAX_AHEAD_MILLIS = 86_400_000

ENGINES = ("hive-serde", "native", "opencsv")
LAKES = ("int96", "millis")
MAX_SHOWN = 60  # mismatches printed in full per test (all are counted)


# ------------------------------------------------------------------------------------------------
# the template's tables


@pytest.fixture(scope="session")
def template():
    return template_ddl.load_template()


@pytest.fixture(scope="session")
def table_inputs(template):
    return template_ddl.table_inputs(template)


@pytest.fixture(scope="session")
def typed_columns(table_inputs) -> list[tuple[str, str]]:
    """(name, Glue type) of `events`, in order."""
    return [(c["Name"], c["Type"]) for c in table_inputs["EventsTable"]["StorageDescriptor"]["Columns"]]


@pytest.fixture(scope="session")
def partition_keys(table_inputs) -> list[str]:
    keys = [k["Name"] for k in table_inputs["EventsTable"]["PartitionKeys"]]
    assert keys == [k["Name"] for k in table_inputs["EventsCsvTable"]["PartitionKeys"]]
    return keys


# ------------------------------------------------------------------------------------------------
# the fixtures and what they should produce


def fixture_files() -> list[Path]:
    files = sorted(FIXTURES.glob("*.json"))
    assert files, f"no fixtures in {FIXTURES}"
    return files


VOLUME_EVENTS = 3000


def write_volume_batch(path: Path, n: int = VOLUME_EVENTS) -> Path:
    """One generated batch (deterministic) that makes the files large enough to matter: a few
    thousand events of one type and day, so `raw` and the other bulky columns span several data
    pages, the dictionary of `subject` outgrows its page and falls back to plain encoding
    mid-column, and optional columns alternate between null and not."""
    events = []
    for i in range(n):
        fields = {
            "type": "delivery",
            "event_id": f"vol-{i:05d}",
            "timestamp": str(1715126400 + i),  # 2024-05-08T00:00:00Z + i s
            "subject": f"Volume {i:05d} " + "x" * (300 + i % 200),
            "msg_size": str(1000 + i),
            "num_retries": i % 7 if i % 3 else None,
            "rcpt_to": f"user{i}@example.com",
            "rcpt_meta": {"i": i, "text": "line\nbreak" if i % 5 == 0 else "plain"},
            "click_tracking": bool(i % 2) if i % 4 else None,
            "geo_ip": {"latitude": i / 1000.0, "longitude": -i / 7.0} if i % 2 else None,
            "injection_time": f"2024-05-07T23:{i % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
            "reason": None if i % 3 else f"reason\r\n{i}",
        }
        events.append({"msys": {"message_event": {k: v for k, v in fields.items() if v is not None}}})
    path.write_text(json.dumps(events, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def batch_files(workdir) -> list[Path]:
    """What one import takes: fixtures/compat/*.json and the generated volume batch."""
    return fixture_files() + [write_volume_batch(workdir / "volume.json")]


def elements(text: str) -> list[tuple[str, object]]:
    """Each element of a JSON array as (its exact text, its value): the `raw` column holds the
    former, and events without an event_id are identified by its hash."""
    decoder = json.JSONDecoder()
    at = text.index("[") + 1
    out = []
    while True:
        while text[at] in " \t\r\n,":
            at += 1
        if text[at] == "]":
            return out
        value, end = decoder.raw_decode(text, at)
        out.append((text[at:end], value))
        at = end


def expected_identities(files: list[Path]) -> set:
    """The rows one import of `files` writes: every event but pings, once per identity,
    `(type, event_id)` or the hash of the raw element for an event without an event_id."""
    identities = set()
    for path in files:
        for raw, value in elements(path.read_text(encoding="utf-8")):
            msys = value["msys"]
            if not msys:
                continue  # a ping
            ((_, event),) = msys.items()
            event_id = event.get("event_id")
            assert event_id is None or isinstance(event_id, str), (
                f"{path.name}: keep fixture event_ids strings (or absent), so rows can be "
                f"matched: {event_id!r}"
            )
            if event_id is None:
                identities.add(("raw", hashlib.sha256(raw.encode()).hexdigest()))
            else:
                identities.add(("id", event["type"], event_id))
    return identities


# ------------------------------------------------------------------------------------------------
# the lakes


@dataclass
class Lake:
    name: str
    data: Path
    database: str
    timestamps: str
    truth: list[dict] = field(default_factory=list)  # pyarrow's rows
    parquet_files: list[Path] = field(default_factory=list)
    csv_files: list[Path] = field(default_factory=list)


@pytest.fixture(scope="session")
def workdir():
    keep = os.environ.get("SPARKLAKE_COMPAT_KEEP")
    if keep:
        # Kept for a look afterwards; emptied at the next run only if a run made it.
        path = Path(keep)
        marker = path / ".sparklake-compat"
        if path.exists() and any(path.iterdir()):
            assert marker.exists(), f"SPARKLAKE_COMPAT_KEEP={keep} exists and is not from this test"
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        marker.touch()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="sparklake-compat-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def binary() -> Path:
    value = os.environ.get("SPARKLAKE_BIN")
    if not value:
        pytest.fail("SPARKLAKE_BIN must name the sparklake binary to test (tests/compat/run.sh)")
    path = Path(value)
    assert path.is_file() and os.access(path, os.X_OK), f"SPARKLAKE_BIN={value} is not executable"
    return path


def import_lake(binary: Path, data: Path, timestamps: str | None, batches: list[Path]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKLAKE_")}
    env["SPARKLAKE_LOG"] = "warn"
    if timestamps:
        env["SPARKLAKE_PARQUET_TIMESTAMP"] = timestamps
    files = [str(p) for p in batches]
    done = subprocess.run(
        [str(binary), "import", "--data", str(data), *files],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, (
        f"sparklake import exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    )


def unescape_path_name(segment: str) -> str:
    """Hive's FileUtils.unescapePathName: each `%XX` (two hex digits) is the character 0xXX."""
    out, i = [], 0
    while i < len(segment):
        c = segment[i]
        if c == "%" and i + 2 < len(segment) and re.fullmatch(r"[0-9A-Fa-f]{2}", segment[i + 1:i + 3]):
            out.append(chr(int(segment[i + 1:i + 3], 16)))
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def partition_of(path: Path, root: Path, keys: list[str]) -> dict[str, str]:
    parts = path.relative_to(root).parts[:-1]
    assert len(parts) == len(keys), f"{path}: expected folders {keys}"
    values = {}
    for key, part in zip(keys, parts):
        name, sep, value = part.partition("=")
        assert sep and name == key, f"{path}: folder {part!r} is not {key}=..."
        values[key] = unescape_path_name(value)
    return values


def read_parquet_truth(lake: Lake, keys: list[str], typed_columns) -> None:
    root = lake.data / "parquet"
    lake.parquet_files = sorted(root.rglob("*.parquet"))
    lake.csv_files = sorted((lake.data / "csv").rglob("*.csv"))
    timestamp_columns = [n for n, t in typed_columns if t == "timestamp"]
    for path in lake.parquet_files:
        table = pq.read_table(path, coerce_int96_timestamp_unit="ms")
        for name in timestamp_columns:
            i = table.schema.get_field_index(name)
            assert i >= 0, f"{path}: no column {name}"
            table = table.set_column(i, name, table.column(name).cast(pa.int64()))
        part = partition_of(path, root, keys)
        for row in table.to_pylist():
            row.update(part)
            row["_file"] = str(path.relative_to(lake.data))
            lake.truth.append(row)


@pytest.fixture(scope="session")
def lakes(binary, workdir, batch_files, partition_keys, typed_columns) -> dict[str, Lake]:
    out = {}
    for name in LAKES:
        lake = Lake(name, workdir / f"data-{name}", f"lake_{name}", name)
        with phase(f"sparklake import ({name} timestamps)"):
            import_lake(binary, lake.data, None if name == "int96" else name, batch_files)
        with phase(f"pyarrow read ({name})"):
            read_parquet_truth(lake, partition_keys, typed_columns)
        out[name] = lake
    return out


# ------------------------------------------------------------------------------------------------
# Spark

LOG4J2 = """\
rootLogger.level = {level}
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{HH:mm:ss}} %p %c{{1}}: %m%n
# The expected failures (Hive's SerDe on INT64 timestamps) would each log a task's stack trace.
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = fatal
logger.tsm.name = org.apache.spark.scheduler.TaskSetManager
logger.tsm.level = fatal
logger.htr.name = org.apache.spark.sql.hive.HadoopTableReader
logger.htr.level = fatal
logger.datanucleus.name = DataNucleus
logger.datanucleus.level = error
"""


@pytest.fixture(scope="session")
def spark(workdir):
    with phase("spark session start (local[2], Hive support, Derby metastore)"):
        # Loopback only, and UTC everywhere (the JVM also gets -Duser.timezone=UTC).
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
        os.environ["TZ"] = "UTC"
        time.tzset()
        from pyspark.sql import SparkSession

        home = workdir / "spark"
        home.mkdir()
        log4j = home / "log4j2.properties"
        log4j.write_text(LOG4J2.format(level=os.environ.get("SPARKLAKE_COMPAT_LOG_LEVEL", "error")))
        java_options = " ".join([
            "-Duser.timezone=UTC",
            f"-Dderby.stream.error.file={home / 'derby.log'}",
            f"-Dderby.system.home={home}",
            f"-Dlog4j2.configurationFile={log4j.as_uri()}",
        ])
        session = (
            SparkSession.builder.master("local[2]")
            .appName("sparklake-compat")
            .config("spark.driver.extraJavaOptions", java_options)
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.default.parallelism", "2")
            .config("spark.local.dir", str(home / "local"))
            .config("spark.sql.warehouse.dir", (home / "warehouse").as_uri())
            .config("spark.hadoop.javax.jdo.option.ConnectionURL",
                    f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true")
            .config("spark.hadoop.hive.exec.scratchdir", str(home / "scratch"))
            .config("spark.hadoop.hive.querylog.location", str(home / "querylog"))
            .enableHiveSupport()
            .getOrCreate()
        )
        session.sparkContext.setLogLevel(os.environ.get("SPARKLAKE_COMPAT_LOG_LEVEL", "error").upper())
        jvm_zone = session.sparkContext._jvm.java.util.TimeZone.getDefault().getID()
        assert jvm_zone == "UTC", f"the driver JVM's time zone is {jvm_zone}, not UTC"
        assert session.conf.get("spark.sql.catalogImplementation") == "hive"
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tables(spark, lakes, template) -> dict[str, dict[str, str]]:
    """`{lake: {resource: qualified table name}}`, created from the template and repaired."""
    out = {}
    for name, lake in lakes.items():
        with phase(f"create tables from template.yaml + MSCK REPAIR ({name})"):
            spark.sql(f"CREATE DATABASE {lake.database}")
            names = {}
            for resource, ddl in template_ddl.all_ddl(lake.data, template, lake.database).items():
                spark.sql(ddl)
                table = template_ddl.table_inputs(template)[resource]["Name"]
                qualified = f"`{lake.database}`.`{table}`"
                spark.sql(f"MSCK REPAIR TABLE {qualified}")
                names[resource] = qualified
            out[name] = names
    return out


def read_engine(spark, table: str, engine: str, columns: list[tuple[str, str]], keys: list[str]):
    """Every row of `table` through `engine`, as dicts. Timestamps come back as microseconds
    since the epoch (unix_micros: no time-zone conversion on the way to Python)."""
    spark.conf.set("spark.sql.hive.convertMetastoreParquet", "false" if engine == "hive-serde" else "true")
    exprs = [
        f"unix_micros(`{n}`) AS `{n}`" if t == "timestamp" else f"`{n}`" for n, t in columns
    ] + [f"`{k}`" for k in keys]
    df = spark.sql(f"SELECT {', '.join(exprs)} FROM {table}")
    plan = df._jdf.queryExecution().executedPlan().toString()
    if engine == "native":
        assert "FileScan parquet" in plan, f"{engine}: not Spark's Parquet reader:\n{plan}"
    else:
        serde = {"hive-serde": "ParquetHiveSerDe", "opencsv": "OpenCSVSerde"}[engine]
        assert "Scan hive" in plan and serde in plan, f"{engine}: not a Hive scan with {serde}:\n{plan}"
    return [r.asDict() for r in df.collect()]


# ------------------------------------------------------------------------------------------------
# comparing


def rust_f64(value: float) -> str:
    """Rust's `f64` Display: the shortest digits that round-trip, positional (1e308 is a 1 and
    308 zeros), `-0` for negative zero, no `.0` on integral values."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    return format(Decimal(repr(value)).normalize(), "f")


def format_millis(millis: int) -> str:
    t = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=millis)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def format_micros(micros: int) -> str:
    t = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=micros)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def csv_rendering(name: str, glue_type: str, value) -> str:
    """A Parquet value as the CSV writes it (README, "Output layout and schema")."""
    if value is None:
        return ""
    if glue_type == "timestamp":
        return format_millis(value)
    if glue_type == "boolean":
        return "true" if value else "false"
    if glue_type == "double":
        return rust_f64(value)
    if glue_type == "bigint":
        return str(value)
    if name in JSON_COLUMNS:
        return value.replace("\r", " ").replace("\n", " ")
    return value.replace("\r", "\\r").replace("\n", "\\n")


def same_typed(glue_type: str, want, got) -> bool:
    """pyarrow's value `want` and an engine's `got` (timestamps: ms and µs)."""
    if want is None or got is None:
        return want is None and got is None
    if glue_type == "timestamp":
        return isinstance(got, int) and got == want * 1000
    if glue_type == "double":
        return (
            isinstance(got, float)
            and got == want
            and math.copysign(1.0, got) == math.copysign(1.0, want)
        )
    if glue_type == "boolean":
        return isinstance(got, bool) and got == want
    if glue_type == "bigint":
        return isinstance(got, int) and not isinstance(got, bool) and got == want
    return isinstance(got, str) and got == want


def identity(row: dict, csv_form: bool):
    event_id = row.get("event_id")
    if event_id is None or (csv_form and event_id == ""):
        return ("raw", row.get("type"), row.get("raw"))
    return ("id", row.get("type"), event_id)


def show(value) -> str:
    text = repr(value)
    return text if len(text) <= 160 else f"{text[:100]}…{text[-40:]} ({len(text)} chars)"


class _Shown(str):
    """Text shown as it is in a mismatch (not repr'd)."""

    def __repr__(self):
        return str(self)


@dataclass
class Report:
    engine: str
    lake: str
    mismatches: list[str] = field(default_factory=list)
    compared: int = 0

    def add(self, row_id, column, want, got):
        self.mismatches.append(
            f"[{self.lake}/{self.engine}] event {show(row_id)} column {column}: "
            f"pyarrow {show(want)} != {self.engine} {show(got)}"
        )

    def add_value(self, row_id, column, glue_type, want, got, csv_form):
        """A mismatch of one value: CSV values are compared with pyarrow's value rendered as
        the CSV writes it; timestamps are shown as instants (pyarrow ms, Spark µs)."""
        if csv_form:
            self.mismatches.append(
                f"[{self.lake}/{self.engine}] event {show(row_id)} column {column}: "
                f"expected (pyarrow's value as CSV) {show(want)} != {self.engine} {show(got)}"
            )
        elif glue_type == "timestamp":
            w = "None" if want is None else f"{format_millis(want)} ({want} ms)"
            g = (f"{format_micros(got)} ({got} µs)" if isinstance(got, int) else show(got))
            self.add(row_id, column, _Shown(w), _Shown(g))
        else:
            self.add(row_id, column, want, got)

    def fail_if_any(self):
        if not self.mismatches:
            return
        by_column: dict[str, int] = {}
        for m in self.mismatches:
            found = re.search(r" column (\S+):", m)
            column = found.group(1) if found else "?"
            by_column[column] = by_column.get(column, 0) + 1
        lines = self.mismatches[:MAX_SHOWN]
        if len(self.mismatches) > MAX_SHOWN:
            lines.append(f"... and {len(self.mismatches) - MAX_SHOWN} more")
        summary = ", ".join(f"{c}: {n}" for c, n in sorted(by_column.items(), key=lambda x: -x[1]))
        pytest.fail(
            f"{len(self.mismatches)} mismatches between pyarrow and {self.engine} "
            f"({self.lake} lake, {self.compared} values compared); by column: {summary}\n"
            + "\n".join(lines),
            pytrace=False,
        )


def event_label(row: dict) -> str:
    return row.get("event_id") if row.get("event_id") not in (None, "") else f"(no id, type {row.get('type')!r})"


def compare_rows(report: Report, truth: list[dict], got: list[dict], columns, keys, csv_form: bool,
                 skip_columns=()):
    """Match rows by identity and compare every column (plus the partition columns)."""
    want_by_id = {}
    for row in truth:
        want = dict(row)
        if csv_form:
            want = {n: csv_rendering(n, t, row[n]) for n, t in columns}
            want.update({k: row[k] for k in keys})
        want_by_id.setdefault(identity(want, csv_form), []).append(want)
    got_by_id = {}
    for row in got:
        got_by_id.setdefault(identity(row, csv_form), []).append(row)
    for key in sorted(set(want_by_id) | set(got_by_id), key=repr):
        wants, gots = want_by_id.get(key, []), got_by_id.get(key, [])
        if len(wants) != len(gots):
            report.mismatches.append(
                f"[{report.lake}/{report.engine}] event {show(key[2] if key[0] == 'id' else key)}"
                f" (type {key[1]!r}) column <row>: pyarrow has {len(wants)} rows, "
                f"{report.engine} {len(gots)}"
            )
            continue
        for want, row in zip(wants, gots):
            label = event_label(want)
            for name, glue_type in columns:
                if name in skip_columns:
                    continue
                report.compared += 1
                if csv_form:
                    ok = isinstance(row[name], str) and row[name] == want[name]
                else:
                    ok = same_typed(glue_type, want[name], row[name])
                if not ok:
                    report.add_value(label, name, glue_type, want[name], row[name], csv_form)
            for k in keys:
                report.compared += 1
                if row[k] != want[k]:
                    report.add(label, k, want[k], row[k])


def strip_header_rows(rows: list[dict], columns, lake: Lake, engine: str) -> list[dict]:
    """Spark's Hive reader in pyspark 4.x ignores the table's `skip.header.line.count` (Athena
    honours it), so each CSV file's header row comes back as a row whose every field is its
    column's name. Those are dropped here (one per file, or none if a later Spark honours the
    property); anything else is an error."""
    names = [n for n, _ in columns]
    headers = [r for r in rows if all(r[n] == n for n in names)]
    if headers:
        assert len(headers) == len(lake.csv_files), (
            f"{engine}: {len(headers)} header rows read back, for {len(lake.csv_files)} CSV files"
        )
        note = (
            f"{engine} ({lake.name}): Spark's Hive reader ignored skip.header.line.count=1: "
            f"{len(headers)} header rows (one per CSV file) dropped before comparing"
        )
        if note not in NOTES:
            NOTES.append(note)
    return [r for r in rows if not all(r[n] == n for n in names)]


# ------------------------------------------------------------------------------------------------
# Parquet footers (pyarrow does not expose column orders): a minimal Thrift compact reader


class _Compact:
    def __init__(self, data: bytes, at: int = 0):
        self.data, self.at = data, at

    def byte(self) -> int:
        b = self.data[self.at]
        self.at += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int):
        if kind in (1, 2):  # bool inside a struct: in the field header
            return kind == 1
        if kind == 3:
            return self.byte()
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind == 7:
            self.at += 8
            return None
        if kind == 8:
            n = self.varint()
            self.at += n
            return self.data[self.at - n:self.at]
        if kind in (9, 10):
            header = self.byte()
            size, elem = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            if elem in (1, 2):
                return [self.byte() == 1 for _ in range(size)]
            return [self.value(elem) for _ in range(size)]
        if kind == 11:
            size = self.varint()
            if size == 0:
                return {}
            kv = self.byte()
            return {self.value(kv >> 4): self.value(kv & 0x0F) for _ in range(size)}
        if kind == 12:
            return self.struct()
        raise ValueError(f"thrift compact type {kind}")

    def struct(self) -> dict:
        fields, last = {}, 0
        while True:
            header = self.byte()
            if header == 0:
                return fields
            delta, kind = header >> 4, header & 0x0F
            fid = last + delta if delta else self.zigzag()
            fields[fid] = self.value(kind)
            last = fid


def page_types(data: bytes, column) -> list[int]:
    """The page types of one column chunk (pyarrow ColumnChunkMetaData), read from the page
    headers: 0 DATA_PAGE, 2 DICTIONARY_PAGE, 3 DATA_PAGE_V2."""
    at = column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset
    end = at + column.total_compressed_size
    types = []
    while at < end:
        reader = _Compact(data, at)
        header = reader.struct()
        types.append(header[1])
        at = reader.at + header[3]  # past the header, then compressed_page_size bytes
    return types


def footer(path: Path) -> dict:
    data = path.read_bytes()
    assert data[:4] == b"PAR1" and data[-4:] == b"PAR1", f"{path}: not Parquet"
    (length,) = struct.unpack("<I", data[-8:-4])
    return _Compact(data, len(data) - 8 - length).struct()


# ------------------------------------------------------------------------------------------------
# the tests


def test_ddl_is_the_templates_tables(spark, tables, table_inputs, partition_keys):
    """What the metastore holds is what the template says: columns and types in order, the
    partition keys, EXTERNAL, the SerDe and its properties (escapeChar a CR), the formats and
    the table properties Glue gives every engine."""
    for lake, names in tables.items():
        for resource, qualified in names.items():
            ti = table_inputs[resource]
            sd = ti["StorageDescriptor"]
            described = spark.sql(f"DESCRIBE FORMATTED {qualified}").collect()
            info = {r["col_name"].strip(): (r["data_type"] or "").strip() for r in described}
            assert info.get("Type") == "EXTERNAL", f"{qualified}: {info.get('Type')}"
            assert info.get("Serde Library") == sd["SerdeInfo"]["SerializationLibrary"]
            assert info.get("InputFormat") == sd["InputFormat"]
            assert info.get("OutputFormat") == sd["OutputFormat"]
            schema = spark.table(qualified).schema
            want = [(c["Name"], c["Type"]) for c in sd["Columns"]] + [
                (k["Name"], k["Type"]) for k in ti["PartitionKeys"]
            ]
            got = [(f.name, f.dataType.simpleString()) for f in schema]
            assert got == want, f"{qualified}: columns differ from template.yaml"
            props = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {qualified}").collect()}
            for k, v in ti["Parameters"].items():
                if template_ddl.ATHENA_ONLY_PARAMETERS.match(k) or k == "EXTERNAL":
                    continue
                assert props.get(k) == v, f"{qualified}: TBLPROPERTIES {k}={props.get(k)!r}, template {v!r}"
            ddl = spark.sql(f"SHOW CREATE TABLE {qualified} AS SERDE").collect()[0][0]
            serde_block = re.search(r"WITH SERDEPROPERTIES \((.*?)\)\s*STORED AS", ddl, re.S)
            serde_props = dict(re.findall(r"'((?:[^'\\]|\\.)*)' = '((?:[^'\\]|\\.)*)'",
                                          serde_block.group(1), re.S)) if serde_block else {}
            for k, v in (sd["SerdeInfo"].get("Parameters") or {}).items():
                assert serde_props.get(k) == v, (
                    f"{qualified}: SERDEPROPERTIES {k}={serde_props.get(k)!r}, template {v!r}"
                )


def test_csv_table_is_the_typed_table_as_strings(table_inputs):
    """OpenCSVSerde maps fields by position: events_csv must list events' columns in the same
    order (all strings), with the same partition keys."""
    typed = table_inputs["EventsTable"]
    text = table_inputs["EventsCsvTable"]
    assert [c["Name"] for c in text["StorageDescriptor"]["Columns"]] == [
        c["Name"] for c in typed["StorageDescriptor"]["Columns"]
    ]
    assert {c["Type"] for c in text["StorageDescriptor"]["Columns"]} == {"string"}
    assert text["PartitionKeys"] == typed["PartitionKeys"]


def test_layout_is_what_the_projection_describes(table_inputs, partition_keys):
    """MSCK REPAIR finds `<Location>key=value/...` folders; Athena's projection reads
    storage.location.template: the two must describe the same layout."""
    for resource, ti in table_inputs.items():
        location = template_ddl.relative_location(ti["StorageDescriptor"]["Location"])
        projected = ti["Parameters"]["storage.location.template"]
        text = projected["Fn::Sub"] if isinstance(projected, dict) else projected
        suffix = "/".join(f"{k}=${{!{k}}}" for k in partition_keys)
        assert re.fullmatch(r"s3://[^/]+/" + re.escape(location + suffix), text), (
            f"{resource}: storage.location.template {text!r} is not {location}{suffix}"
        )


def test_row_counts(lakes, tables, spark, batch_files, typed_columns, partition_keys):
    """Rows: what the fixtures hold (events minus pings, once per identity) = what pyarrow
    counts = what each engine reads."""
    expected = expected_identities(batch_files)
    csv_columns = [(n, "string") for n, _ in typed_columns]
    for name, lake in lakes.items():
        assert len(lake.truth) == len(expected), (
            f"{name}: pyarrow reads {len(lake.truth)} rows, the fixtures hold {len(expected)} events"
        )
        ids = [identity(r, False) for r in lake.truth]
        dupes = {i for i in ids if ids.count(i) > 1}
        assert not dupes, f"{name}: identities written more than once: {sorted(dupes, key=repr)[:10]}"
        with phase(f"count rows, 3 engines ({name})"):
            for engine in ENGINES:
                if engine == "hive-serde" and name == "millis":
                    continue  # cannot read the timestamp columns (test_millis_hive_serde_...)
                if engine == "opencsv":
                    spark.conf.set("spark.sql.hive.convertMetastoreParquet", "true")
                    rows = spark.sql(
                        f"SELECT * FROM {tables[name]['EventsCsvTable']}"
                    ).collect()
                    n = len(strip_header_rows([r.asDict() for r in rows], csv_columns, lake, engine))
                else:
                    spark.conf.set("spark.sql.hive.convertMetastoreParquet",
                                   "false" if engine == "hive-serde" else "true")
                    n = spark.sql(f"SELECT count(*) FROM {tables[name]['EventsTable']}").collect()[0][0]
                assert n == len(lake.truth), f"{name}/{engine}: {n} rows, pyarrow {len(lake.truth)}"


def test_parquet_files_match_the_template(lakes, typed_columns):
    """Every file: the template's columns in its order and types (Hive maps Parquet columns by
    name, CSV by position), timestamps INT96 or INT64 TIMESTAMP(MILLIS, UTC) as asked, every
    column's footer column order TYPE_DEFINED_ORDER (readers that predate the newer orders,
    parquet-mr in Hive 2.3 among them, refuse a file that declares one: the parquet-mr inside
    this Spark is newer, so its reads alone would not show it), one row group, and only data
    pages v1 (and dictionary pages). The generated volume file must span several data pages
    and fall back from dictionary encoding, or it tests nothing more than the fixtures."""
    arrow_types = {"string": (pa.string(), pa.large_string()), "bigint": (pa.int64(),),
                   "double": (pa.float64(),), "boolean": (pa.bool_(),)}
    problems = []
    for name, lake in lakes.items():
        volume_pages = {}
        for path in lake.parquet_files:
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
            names = [f.name for f in schema]
            if names != [n for n, _ in typed_columns]:
                problems.append(f"{path}: columns {names} are not the template's")
                continue
            for i, (column, glue_type) in enumerate(typed_columns):
                physical = pf.schema.column(i).physical_type
                if glue_type == "timestamp":
                    logical = str(pf.schema.column(i).logical_type)
                    ok = (physical == "INT96") if name == "int96" else (
                        physical == "INT64" and "milliseconds" in logical and "isAdjustedToUTC=true" in logical
                    )
                    if not ok:
                        problems.append(f"{path}: {column} is {physical} {logical}")
                elif schema.field(column).type not in arrow_types[glue_type]:
                    problems.append(f"{path}: {column} is {schema.field(column).type}, template {glue_type}")
            data = path.read_bytes()
            if pf.metadata.num_row_groups != 1:
                problems.append(f"{path}: {pf.metadata.num_row_groups} row groups, not one")
            group = pf.metadata.row_group(0)
            is_volume = "vol-00000" in pf.read(columns=["event_id"]).column(0).to_pylist()
            for i, (column, _) in enumerate(typed_columns):
                pages = page_types(data, group.column(i))
                if not set(pages) <= {0, 2}:
                    problems.append(f"{path}: {column} has pages of types {pages} (not data pages v1)")
                if is_volume:
                    volume_pages[column] = (pages, group.column(i).encodings)
            meta = footer(path)
            orders = meta.get(7)
            if orders is None or len(orders) != len(typed_columns):
                problems.append(f"{path}: column_orders {orders!r}")
            else:
                for (column, _), order in zip(typed_columns, orders):
                    if set(order) != {1}:  # ColumnOrder is a union; 1 = TYPE_ORDER
                        problems.append(f"{path}: {column} declares column order {order!r}")
        # The generated volume batch does what it is there for (write_volume_batch).
        raw_pages, _ = volume_pages["raw"]
        subject_pages, subject_encodings = volume_pages["subject"]
        if raw_pages.count(0) < 2:
            problems.append(f"{name}: the volume file's raw column has pages {raw_pages}, not several")
        if not ("PLAIN" in subject_encodings and {"RLE_DICTIONARY", "PLAIN_DICTIONARY"} & set(subject_encodings)):
            problems.append(f"{name}: the volume file's subject has encodings {subject_encodings}: no dictionary fallback")
    assert not problems, "\n".join(problems[:40])


def test_partition_folders_round_trip(lakes, template):
    """The folder's event_type (unescaped as Hive does) is the type column, and dt is the
    UTC date of the timestamp, or of the receive time for an unreadable or implausible one."""
    problems = []
    for name, lake in lakes.items():
        for row in lake.truth:
            label = f"{name}: {event_label(row)} in {row['_file']}"
            if row["event_type"] != row["type"]:
                problems.append(f"{label}: folder event_type {row['event_type']!r} != type {row['type']!r}")
            ts, received = row["timestamp"], row["received_at"]
            implausible = ts is not None and not (
                TIMESTAMP_FLOOR_MILLIS <= ts <= received + MAX_AHEAD_MILLIS
            )
            if row["timestamp_unparsed"] != (ts is None):
                problems.append(f"{label}: timestamp_unparsed {row['timestamp_unparsed']} with timestamp {ts}")
            if row["timestamp_implausible"] != implausible:
                problems.append(f"{label}: timestamp_implausible {row['timestamp_implausible']} with timestamp {ts}")
            placed = received if ts is None or implausible else ts
            if row["dt"] != format_millis(placed)[:10]:
                problems.append(f"{label}: dt {row['dt']} but placed at {format_millis(placed)}")
    assert not problems, "\n".join(problems[:40])
    # Not an engine matter, but where Athena looks: event_type folders of SparkPost's documented
    # classes that the template's default ProjectedEventTypes does not list are invisible there.
    projected = set(str(template["Parameters"]["ProjectedEventTypes"]["Default"]).split(","))
    documented = {"message_event", "track_event", "gen_event", "unsubscribe_event", "relay_event",
                  "ab_test_event", "ingest_event"}
    folders = {
        Path(row["_file"]).parts[1].split("=", 1)[1]  # parquet/event_type=<value>/dt=.../x
        for row in lakes["int96"].truth
        if row["event_class"] in documented and (row["event_id"] or "").startswith("cls-")
    }
    unprojected = sorted(folders - projected)
    if unprojected:
        NOTES.append(
            "classes.json: documented event types written to folders the default "
            f"ProjectedEventTypes does not list (invisible to Athena): event_type={unprojected}"
        )


def test_fixture_values(lakes, typed_columns):
    """Spot checks of what the hostile fixtures must become (fixtures/compat/expected/
    values.json): the engines are compared with pyarrow, so pyarrow's values are pinned here."""
    types = dict(typed_columns)
    expected = json.loads(EXPECTED_VALUES.read_text(encoding="utf-8"))
    problems = []
    for name, lake in lakes.items():
        by_id = {row["event_id"]: row for row in lake.truth if row["event_id"] is not None}
        for event_id, columns in expected.items():
            if event_id.startswith("//"):
                continue
            row = by_id.get(event_id)
            if row is None:
                problems.append(f"{name}: no row for event {event_id!r}")
                continue
            for column, want in columns.items():
                assert column in row, f"values.json: {event_id}: no column {column}"
                got = row[column]
                if types.get(column) == "timestamp" and got is not None:
                    got = format_millis(got)
                if isinstance(want, float) or isinstance(got, float):
                    ok = (
                        isinstance(got, float) and isinstance(want, (int, float))
                        and got == want and math.copysign(1.0, got) == math.copysign(1.0, want)
                    )
                else:
                    ok = got == want and type(got) is type(want)
                if not ok:
                    problems.append(f"{name}: {event_id} {column}: {show(got)}, expected {show(want)}")
    assert not problems, "\n".join(problems)


# Event members whose column has another name (core/src/event.rs): the ingest events' batch_id
# and href (`batch_id` is the webhook's X-MessageSystems-Batch-ID header).
RENAMED = {"batch_id": "ingest_batch_id", "href": "ingest_href"}


def test_columns_hold_the_posted_values(lakes, batch_files, typed_columns):
    """Each row against its fixture element: `raw` is the element exactly as posted,
    event_class its class, every string column named like a member holds that member's string
    exactly (a lone surrogate: null), and every JSON column the same JSON value."""
    types = dict(typed_columns)
    posted = {}
    for path in batch_files:
        for raw, value in elements(path.read_text(encoding="utf-8")):
            if not value["msys"]:
                continue
            ((cls, event),) = value["msys"].items()
            if event.get("event_id") is None:
                key = ("raw", event["type"], raw)
            else:
                key = ("id", event["type"], event["event_id"])
            posted[key] = (raw, cls, event)
    problems = []
    for name, lake in lakes.items():
        for row in lake.truth:
            found = posted.get(identity(row, False))
            if found is None:
                problems.append(f"{name}: {event_label(row)}: no such fixture element")
                continue
            raw, cls, event = found
            label = f"{name}: {event_label(row)}"
            if row["raw"] != raw:
                problems.append(f"{label}: raw {show(row['raw'])} is not the element {show(raw)}")
            if row["event_class"] != cls:
                problems.append(f"{label}: event_class {row['event_class']!r}, posted {cls!r}")
            for member, value in event.items():
                column = RENAMED.get(member, member)
                if types.get(column) != "string":
                    continue
                got = row[column]
                if column in JSON_COLUMNS:
                    if value is None or (column == "ab_test" and not isinstance(value, dict)):
                        ok = got is None
                    else:
                        ok = got is not None and json.loads(got) == value
                elif isinstance(value, str):
                    try:
                        value.encode("utf-8")
                    except UnicodeEncodeError:  # a lone surrogate: not text
                        value = None
                    ok = got == value
                else:
                    continue  # numbers (kept as their text), booleans, null, structures
                if not ok:
                    problems.append(f"{label}: {column} {show(got)}, posted {show(value)}")
    assert not problems, "\n".join(problems[:40])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("lake_name", LAKES)
def test_engine_reads_every_value(engine, lake_name, spark, lakes, tables, typed_columns, partition_keys):
    """Every column of every row, read by `engine`, equals pyarrow's value (CSV: its rendering)."""
    if engine == "hive-serde" and lake_name == "millis":
        pytest.skip("Hive 2.3's SerDe cannot read INT64 timestamps: see test_millis_hive_serde_*")
    lake = lakes[lake_name]
    report = Report(engine, lake_name)
    if engine == "opencsv":
        columns = [(n, "string") for n, _ in typed_columns]
        with phase(f"read every row: {engine} ({lake_name})"):
            rows = read_engine(spark, tables[lake_name]["EventsCsvTable"], engine, columns, partition_keys)
        rows = strip_header_rows(rows, columns, lake, engine)
        with phase(f"compare: {engine} ({lake_name})"):
            compare_rows(report, lake.truth, rows, typed_columns, partition_keys, csv_form=True)
    else:
        with phase(f"read every row: {engine} ({lake_name})"):
            rows = read_engine(spark, tables[lake_name]["EventsTable"], engine, typed_columns, partition_keys)
        with phase(f"compare: {engine} ({lake_name})"):
            compare_rows(report, lake.truth, rows, typed_columns, partition_keys, csv_form=False)
    # The Hive escaping round trip: the partition value read back is the row's type (in CSV,
    # as the CSV writes the type).
    for row in rows:
        want = csv_rendering("type", "string", row["event_type"]) if engine == "opencsv" else row["event_type"]
        if row["type"] != want:
            report.add(event_label(row), "type=event_type", want, row["type"])
    report.fail_if_any()


def test_csv_files_read_by_python(lakes, typed_columns, partition_keys):
    """The CSV files themselves, read with Python's csv module (RFC 4180): the header is the
    template's column list, rows end in CRLF, no field holds a raw line break, and every value
    is the rendering of its Parquet value. (Tells a writer problem from an OpenCSVSerde one.)"""
    names = [n for n, _ in typed_columns]
    for name, lake in lakes.items():
        report = Report("python-csv", name)
        rows = []
        for path in lake.csv_files:
            data = path.read_bytes()
            assert data.endswith(b"\r\n"), f"{path}: does not end in CRLF"
            assert b"\n" not in data.replace(b"\r\n", b""), f"{path}: a bare LF"
            assert b"\r" not in data.replace(b"\r\n", b""), f"{path}: a bare CR"
            records = list(csv.reader(data.decode("utf-8").split("\r\n")[:-1]))
            assert records[0] == names, f"{path}: header {records[0]} is not the template's columns"
            part = partition_of(path, lake.data / "csv", partition_keys)
            for record in records[1:]:
                assert len(record) == len(names), f"{path}: a record of {len(record)} fields"
                row = dict(zip(names, record))
                row.update(part)
                rows.append(row)
        compare_rows(report, lake.truth, rows, typed_columns, partition_keys, csv_form=True)
        report.fail_if_any()


def test_millis_hive_serde_fails_on_timestamps(spark, lakes, tables, typed_columns, partition_keys):
    """With INT64 TIMESTAMP(MILLIS) files, Hive 2.3's ParquetHiveSerDe fails on each timestamp
    column (the limitation the INT96 default exists for: Hive before 4.0 reads timestamps only as
    INT96), while every other column still reads back equal to pyarrow's."""
    lake = lakes["millis"]
    table = tables["millis"]["EventsTable"]
    timestamp_columns = [n for n, t in typed_columns if t == "timestamp"]
    assert timestamp_columns
    spark.conf.set("spark.sql.hive.convertMetastoreParquet", "false")
    not_failing, causes = [], set()
    with phase("hive-serde (millis): each timestamp column must fail"):
        for column in timestamp_columns:
            try:
                spark.sql(f"SELECT `{column}` FROM {table} WHERE `{column}` IS NOT NULL").collect()
            except Exception as e:  # noqa: BLE001 (py4j / pyspark wrap the JVM's error)
                message = str(e)
                cause = re.search(r"(\S*(?:ClassCastException|UnsupportedOperationException)[^\n]*)", message)
                assert cause, f"{column}: failed, but not as expected: {message[:2000]}"
                causes.add(re.sub(r" \(.*", "", cause.group(1))[:200])
            else:
                not_failing.append(column)
    assert not not_failing, (
        f"Hive's Parquet SerDe read INT64 TIMESTAMP(MILLIS) columns {not_failing}: the known "
        "limitation is gone (or the files are not INT64 millis); revisit the int96 default"
    )
    NOTES.append(
        f"hive-serde (millis): each of {len(timestamp_columns)} timestamp columns failed as "
        f"expected (Hive 2.3 reads Parquet timestamps only as INT96): {'; '.join(sorted(causes))}"
    )
    others = [(n, t) for n, t in typed_columns if t != "timestamp"]
    report = Report("hive-serde", "millis")
    with phase("read + compare: hive-serde, non-timestamp columns (millis)"):
        rows = read_engine(spark, table, "hive-serde", others, partition_keys)
        compare_rows(report, lake.truth, rows, others, partition_keys, csv_form=False)
    report.fail_if_any()


LEGACY = ROOT / "fixtures" / "legacy"


def test_a_lake_of_older_and_newer_objects_reads_through_both_tables(binary, workdir, spark, template,
                                                                     typed_columns, partition_keys):
    """Objects written before the 2026-12 columns (fixtures/legacy: 47 columns, INT64 millis
    timestamps) beside new ones in the same partitions: Spark's native reader and OpenCSVSerde read
    both through the template's tables, the old objects' new columns null (Parquet by name, CSV by
    position) and their other columns equal to the same events written today. (Hive's own SerDe
    cannot read the old objects' INT64 timestamps at all: the reason for the INT96 default.)"""
    data = workdir / "data-mixed"
    with phase("sparklake import (mixed lake)"):
        import_lake(binary, data, None, [ROOT / "fixtures" / "sparkpost" / "batch.json"])
        legacy_files = sorted(p for p in LEGACY.rglob("*") if p.suffix in (".parquet", ".csv"))
        assert legacy_files, f"no objects under {LEGACY}"
        for path in legacy_files:
            target = data / path.relative_to(LEGACY)
            assert not target.exists(), f"{target}: a legacy object's name collides with a new one"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    names = [n for n, _ in typed_columns]
    old_names = names[: names.index("raw") + 1]
    new_names = names[names.index("raw") + 1 :]
    assert len(old_names) == 47 and new_names
    legacy_types = {p.relative_to(LEGACY).parts[1].split("=", 1)[1] for p in legacy_files}
    with phase("create tables + MSCK REPAIR (mixed lake)"):
        spark.sql("CREATE DATABASE lake_mixed")
        qualified = {}
        for resource, ddl in template_ddl.all_ddl(data, template, "lake_mixed").items():
            spark.sql(ddl)
            table = template_ddl.table_inputs(template)[resource]["Name"]
            qualified[resource] = f"`lake_mixed`.`{table}`"
            spark.sql(f"MSCK REPAIR TABLE {qualified[resource]}")
    spark.conf.set("spark.sql.hive.convertMetastoreParquet", "true")
    problems = []
    for resource, kind in (("EventsTable", "parquet"), ("EventsCsvTable", "csv")):
        with phase(f"read + compare (mixed lake, {kind})"):
            df = spark.sql(f"SELECT *, input_file_name() AS _file FROM {qualified[resource]}")
            rows = [r.asDict() for r in df.collect() if r["event_id"] != "event_id" or r["type"] != "type"]
        old = [r for r in rows if _is_legacy(r["_file"], legacy_files)]
        new = [r for r in rows if not _is_legacy(r["_file"], legacy_files)]
        assert len(new) == 19 and len(old) == len(legacy_types), (
            f"{kind}: {len(new)} new rows and {len(old)} old ones, expected 19 and {len(legacy_types)}"
        )
        by_identity = {(r["type"], r["event_id"]): r for r in new}
        for row in old:
            label = f"{kind} legacy {row['type']}"
            for column in new_names:
                if row[column] is not None:
                    problems.append(f"{label}: {column} = {row[column]!r}, expected null")
            twin = by_identity[(row["type"], row["event_id"])]
            for column in old_names:
                if column in ("received_at", "batch_id"):
                    continue  # when and how the copy arrived
                if row[column] != twin[column]:
                    problems.append(f"{label}: {column} {row[column]!r}, written today {twin[column]!r}")
            if row["event_type"] != row["type"]:
                problems.append(f"{label}: event_type {row['event_type']!r}")
    assert not problems, "\n".join(problems[:40])


def _is_legacy(file_uri: str, legacy_files: list[Path]) -> bool:
    return any(file_uri.endswith(p.name) for p in legacy_files)
