#!/usr/bin/env bash
# The project's test command: formatting and lints, the SAM template (cfn-lint, sam validate,
# its wiring tests), the day-one queries in DuckDB and the operator scripts, the engine-
# compatibility test (tests/compat: Spark's Hive SerDes and native reader, OpenCSVSerde and
# pyarrow over the same lake), the deploy rehearsal (scripts/rehearse with the Lambda zips, and
# the broken templates of tests/rehearsal), then every Rust test with the AWS tests against moto's server on
# a free 127.0.0.1 port, then a short smoke of the fuzz targets (scripts/fuzz.sh --smoke: build,
# replay fuzz/corpus, 20 s per target).
# Long runs only when asked: SPARKLAKE_FUZZ_LONG=1 runs `scripts/fuzz.sh --long` (10 million
# inputs, hours; results in fuzz/README.md) in place of the smoke, SPARKLAKE_LOAD=1 the load test
# (scripts/load; results in BENCHMARKS.md), SPARKLAKE_CRASH_ROUNDS / SPARKLAKE_FAULTS_EVENTS the
# longer crash and fault runs (RELIABILITY.md).
# Needs the Rust toolchain (cargo, rustfmt, clippy) and python3; everything else (moto[server],
# cfn-lint, aws-sam-cli, duckdb, pytest, pyspark, pyarrow, cargo-lambda) goes into a cached virtualenv,
# ~/.cache/sparklake/venv, and Java 17 from Debian's openjdk-17-jre-headless where missing.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sparklake/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The SAM template, offline: cfn-lint, sam validate --lint and its pytest checks.
log="$(mktemp)"
pylog="$(mktemp)"
trap 'rm -f "$log" "$pylog"' EXIT
echo "== scripts/lint-template.sh"
scripts/lint-template.sh 2>&1 | tee "$pylog"

# AWS APIs are served by a real emulator on loopback; the AWS tests fail without it.
. scripts/moto.sh
moto_start

# The day-one queries run unchanged in DuckDB over real output, and the operator scripts work
# on local data folders.
"$SPARKLAKE_VENV/bin/pip" install --quiet --disable-pip-version-check duckdb==2.0.1 pytest==9.2.0
cargo build -p sparklake --locked --quiet
echo "== pytest tests/queries tests/scripts"
SPARKLAKE_BIN="$CARGO_TARGET_DIR/debug/sparklake" PYTHONDONTWRITEBYTECODE=1 \
  "$SPARKLAKE_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/queries tests/scripts 2>&1 | tee -a "$pylog"

# Every engine reads every column: Spark with Hive's SerDes (pyspark, Java 17) over tables made
# from template.yaml's own DDL, against pyarrow (tests/compat/run.sh installs what it needs).
echo "== tests/compat (Spark, Hive SerDes, pyarrow)"
SPARKLAKE_BIN="$CARGO_TARGET_DIR/debug/sparklake" tests/compat/run.sh 2>&1 | tee -a "$pylog"

# The deploy rehearsal: the Lambda zips (this machine's arch, plain cargo) run under an emulated
# Lambda Runtime API with template.yaml's wiring and IAM in moto (scripts/rehearse), then each
# of the deliberately broken templates listed in tests/rehearsal must fail it.
case "$(uname -m)" in aarch64 | arm64) lambda_arch=arm64 ;; *) lambda_arch=x86_64 ;; esac
echo "== scripts/build-lambda.sh --arch $lambda_arch --compiler cargo"
scripts/build-lambda.sh --arch "$lambda_arch" --compiler cargo --out "$CARGO_TARGET_DIR/lambda-zips"
echo "== pytest tests/rehearsal (scripts/rehearse and its breakages)"
SPARKLAKE_LAMBDA_ZIPS="$CARGO_TARGET_DIR/lambda-zips/$lambda_arch" SPARKLAKE_BIN="$CARGO_TARGET_DIR/debug/sparklake" \
  PYTHONDONTWRITEBYTECODE=1 "$SPARKLAKE_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/rehearsal 2>&1 | tee -a "$pylog"

echo "== cargo test"
# The crash test checks the de-duplicating view in DuckDB through scripts/query; here the
# virtualenv has duckdb, so a missing one is a failure rather than a skipped check.
export SPARKLAKE_VENV SPARKLAKE_REQUIRE_DUCKDB=1
trap 'rm -f "$log" "$pylog"; moto_stop' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# The micro-benchmarks in criterion's test mode: each runs once, so CI checks they work without
# timing anything (`cargo bench -p sparklake --bench pipeline` measures).
echo "== benches (smoke)"
cargo test -p sparklake --bench pipeline --locked
cargo test -p ingest --bench auth --locked
# The load test takes minutes and a release build: only when asked (results in BENCHMARKS.md).
if [[ "${SPARKLAKE_LOAD:-}" == 1 ]]; then
  echo "== scripts/load"
  scripts/load
fi
# Coverage-guided fuzzing (its output stays out of the counts below): a smoke, or the long run
# when asked.
if [[ "${SPARKLAKE_FUZZ_LONG:-}" == 1 ]]; then
  echo "== fuzz (long)"
  scripts/fuzz.sh --long
else
  echo "== fuzz (smoke)"
  scripts/fuzz.sh --smoke
fi
# One closing line over every test binary (cargo prints one per binary, doc-tests last) and the
# template tests (pytest's closing line, e.g. "38 passed, 1 skipped in 1.0s").
awk 'FILENAME == ARGV[1] {
       if ($0 ~ /[0-9]+ (passed|failed|skipped|errors?)/ && $0 ~ / in [0-9.]+s/) {
         for (i = 2; i <= NF; i++) {
           n = $(i - 1) + 0
           if ($i ~ /^passed/) p += n
           else if ($i ~ /^(failed|errors?)/) f += n
           else if ($i ~ /^skipped/) s += n
         }
       }
       next
     }
     /^test result:/ { p += $4; f += $6; s += $8 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$pylog" "$log"
