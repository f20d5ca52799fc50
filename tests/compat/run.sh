#!/usr/bin/env bash
# The engine-compatibility test (tests/compat/test_engines.py): `sparklake import` writes
# fixtures/compat/*.json into temporary data folders (INT96 and INT64-millis timestamps), and one
# local Spark with Hive support (local[2], embedded Derby metastore, UTC) creates the Glue tables
# from DDL generated from template.yaml, repairs their partitions and compares every column of
# every row, read through Hive's Parquet SerDe, Spark's native Parquet reader and OpenCSVSerde,
# with pyarrow's reading of the same files. About a minute on 2 cores; a run is stopped after
# SPARKLAKE_COMPAT_TIMEOUT_SECS (default 600 s), a guard against a hung JVM.
#
#   SPARKLAKE_BIN=path/to/sparklake tests/compat/run.sh [pytest args...]
#
# Installs pinned pyspark, pyarrow, pyyaml and pytest into the project's cached virtualenv
# (${SPARKLAKE_VENV:-$HOME/.cache/sparklake/venv}; pyspark is ~400 MB, downloaded once). Needs
# Java 17 or newer: when `java` (or $JAVA_HOME) is older or missing it installs Debian's
# openjdk-17-jre-headless with apt-get (through sudo unless root) and points JAVA_HOME at it.
# Builds nothing: SPARKLAKE_BIN must name the binary to test.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/../.."

if [[ -z "${SPARKLAKE_BIN:-}" ]]; then
  echo "tests/compat/run.sh: set SPARKLAKE_BIN to the sparklake binary to test" >&2
  exit 2
fi
if [[ ! -x "$SPARKLAKE_BIN" ]]; then
  echo "tests/compat/run.sh: SPARKLAKE_BIN=$SPARKLAKE_BIN is not an executable file" >&2
  exit 2
fi
SPARKLAKE_BIN="$(cd "$(dirname "$SPARKLAKE_BIN")" && pwd)/$(basename "$SPARKLAKE_BIN")"
export SPARKLAKE_BIN

SPARKLAKE_VENV="${SPARKLAKE_VENV:-$HOME/.cache/sparklake/venv}"
PYSPARK_VERSION="${SPARKLAKE_PYSPARK_VERSION:-4.3.0}"
PYARROW_VERSION="${SPARKLAKE_PYARROW_VERSION:-26.0.1}"
PYYAML_VERSION="${SPARKLAKE_PYYAML_VERSION:-6.0.4}"
PYTEST_VERSION="${SPARKLAKE_PYTEST_VERSION:-9.2.0}"

# --- Python packages -----------------------------------------------------------------------
if [[ ! -x "$SPARKLAKE_VENV/bin/python" ]]; then
  python3 -m venv "$SPARKLAKE_VENV"
fi
py="$SPARKLAKE_VENV/bin/python"
if ! "$py" - "$PYSPARK_VERSION" "$PYARROW_VERSION" "$PYYAML_VERSION" "$PYTEST_VERSION" 2>/dev/null <<'EOF'
import sys
from importlib.metadata import version
want = dict(zip(["pyspark", "pyarrow", "pyyaml", "pytest"], sys.argv[1:]))
sys.exit(any(version(name) != v for name, v in want.items()))
EOF
then
  echo "== installing pyspark==$PYSPARK_VERSION pyarrow==$PYARROW_VERSION pyyaml==$PYYAML_VERSION pytest==$PYTEST_VERSION into $SPARKLAKE_VENV"
  "$SPARKLAKE_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "pyspark==$PYSPARK_VERSION" "pyarrow==$PYARROW_VERSION" "pyyaml==$PYYAML_VERSION" \
    "pytest==$PYTEST_VERSION"
fi

# --- Java 17+ ------------------------------------------------------------------------------
# The major version of a java binary (1.8 -> 8, 17.0.15 -> 17), or 0.
java_major() {
  local v
  v="$("$1" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')" || true
  [[ -n "$v" ]] || { echo 0; return; }
  awk -F. '{ print ($1 == 1 ? $2 : $1) + 0 }' <<<"$v"
}

java_bin=""
if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  java_bin="$JAVA_HOME/bin/java"
elif command -v java >/dev/null 2>&1; then
  java_bin="$(command -v java)"
fi
if [[ -z "$java_bin" || "$(java_major "$java_bin")" -lt 17 ]]; then
  found=""
  for candidate in /usr/lib/jvm/java-17-openjdk-*/bin/java; do
    if [[ -x "$candidate" && "$(java_major "$candidate")" -ge 17 ]]; then
      found="$candidate"
      break
    fi
  done
  if [[ -z "$found" ]]; then
    echo "== Java 17+ not found (${java_bin:-no java}): installing openjdk-17-jre-headless"
    sudo=()
    [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
    # Debian's slim images lack the man folder the JRE's postinst writes into.
    "${sudo[@]}" mkdir -p /usr/share/man/man1
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      openjdk-17-jre-headless
    for candidate in /usr/lib/jvm/java-17-openjdk-*/bin/java; do
      [[ -x "$candidate" ]] && found="$candidate" && break
    done
    [[ -n "$found" ]] || { echo "openjdk-17-jre-headless installed no /usr/lib/jvm/java-17-openjdk-*" >&2; exit 1; }
  fi
  java_bin="$(readlink -f "$found")"
fi
if [[ -z "${JAVA_HOME:-}" || "$(readlink -f "$JAVA_HOME/bin/java" 2>/dev/null)" != "$(readlink -f "$java_bin")" ]]; then
  JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$java_bin")")")"
fi
export JAVA_HOME
echo "== Java $(java_major "$JAVA_HOME/bin/java") at $JAVA_HOME; $("$py" -c 'import pyspark; print("pyspark", pyspark.__version__)')"

# --- the test ------------------------------------------------------------------------------
echo "== pytest tests/compat (SPARKLAKE_BIN=$SPARKLAKE_BIN)"
PYTHONDONTWRITEBYTECODE=1 timeout --kill-after=30 "${SPARKLAKE_COMPAT_TIMEOUT_SECS:-600}" \
  "$py" -m pytest -q -p no:cacheprovider tests/compat "$@"
