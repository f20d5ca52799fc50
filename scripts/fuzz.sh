#!/usr/bin/env bash
# Coverage-guided fuzzing of sparklake's parsers (cargo-fuzz + libFuzzer, fuzz/ crate):
#   ingest_validate  webhook body -> envelope validation (against a reference reading) -> join,
#                    split, Event::parse, rows, CSV, Arrow
#   alb_request      ALB event JSON -> lambda_http's ALB decoding -> ingest handler (in memory)
#   queue_message    SQS body + attributes -> zstd/base64 codec -> fanout -> writer (in memory)
#
#   scripts/fuzz.sh [--smoke]          build, replay the committed corpus, then a short bounded run
#                                      of each target (FUZZ_SMOKE_SECS, default 20 s, at most
#                                      200k runs each); fails on any crash, panic, leak or OOM.
#   scripts/fuzz.sh --long [--runs N]  N runs per target (default 3,400,000: 10.2 M in all), one
#                                      worker, then minimises each target's corpus (set cover) into
#                                      fuzz/corpus/<target>/ and writes the figures to
#                                      fuzz/results/long-<date>.txt (copied into fuzz/README.md).
#   scripts/fuzz.sh --replay           only build and replay the committed corpus.
#   --targets "a b"                    only these targets (any mode).
#   Extra arguments after `--` go to libFuzzer.
#
# Works on the stable toolchain: libFuzzer's instrumentation uses stable -C flags; only the
# sanitizers need nightly, so targets build with `--sanitizer none` (panics, failed assertions,
# overflow checks, timeouts and -rss_limit_mb still count as crashes). cargo-fuzz is installed
# (pinned) when missing. Build output: $FUZZ_TARGET_DIR (default ~/.cache/sparklake/fuzz-target).
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
root="$PWD"

CARGO_FUZZ_VERSION=0.13.2
TARGETS=(ingest_validate alb_request queue_message)
mode=smoke
runs_per_target=3400000
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) mode=smoke ;;
    --long) mode=long ;;
    --replay) mode=replay ;;
    --runs) runs_per_target="$2"; shift ;;
    --targets) read -r -a TARGETS <<<"$2"; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "usage: scripts/fuzz.sh [--smoke | --replay | --long [--runs N]] [-- libFuzzer flags]" >&2; exit 2 ;;
  esac
  shift
done

export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/sparklake/fuzz-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
work="${FUZZ_WORK_DIR:-$HOME/.cache/sparklake/fuzz-work}"

if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi

# The fuzz crate is outside the workspace: its own format check.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

# The fuzz crate's own lock file must already say everything (as `--locked` does elsewhere).
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

echo "== cargo fuzz build (release, debug assertions, no sanitizer)"
cargo fuzz build --sanitizer none --target-dir "$CARGO_TARGET_DIR"

# Seeds beside the committed corpus: the fixtures (read only; new inputs go to the first dir).
seeds() {
  case "$1" in
    alb_request) echo "$root/fixtures/alb" ;;
    *) echo "$root/fixtures/sparkpost $root/fixtures/drift $root/fixtures/malformed" ;;
  esac
}

# libFuzzer flags every run shares: one worker, bounded memory and input size.
common=(-rss_limit_mb=1024 -max_len=65536 -timeout=10 -print_final_stats=1)

run() { # target, corpus dirs..., --, libFuzzer args...
  local target="$1"; shift
  local dirs=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do dirs+=("$1"); shift; done
  shift
  mkdir -p "$work/artifacts/$target"
  cargo fuzz run --sanitizer none --target-dir "$CARGO_TARGET_DIR" "$target" "${dirs[@]}" -- \
    "${common[@]}" -artifact_prefix="$work/artifacts/$target/" "$@" "${extra[@]}"
}

summary() { # target, log file: runs, seconds, exec/s, coverage, features, corpus
  awk -v t="$1" '
    /^#[0-9]+/ { for (i = 1; i <= NF; i++) { if ($i == "cov:") cov = $(i+1); if ($i == "ft:") ft = $(i+1); if ($i == "corp:") corp = $(i+1) } }
    /^stat::number_of_executed_units:/ { runs = $2 }
    /^stat::average_exec_per_sec:/ { eps = $2 }
    /^stat::peak_rss_mb:/ { rss = $2 }
    /^Done [0-9]+ runs in [0-9]+ second/ { secs = $5 }
    END { printf "%-16s runs=%s secs=%s exec/s=%s cov=%s ft=%s corpus=%s peak_rss_mb=%s\n", t, runs, secs, eps, cov, ft, corp, rss }' "$2"
}

status=0
case "$mode" in
  replay | smoke)
    for t in "${TARGETS[@]}"; do
      echo "== $t: replay fuzz/corpus/$t"
      # -runs=0: run every corpus input once, then stop.
      run "$t" "fuzz/corpus/$t" -- -runs=0 || { status=1; continue; }
      [[ "$mode" == smoke ]] || continue
      echo "== $t: ${FUZZ_SMOKE_SECS:-20} s smoke"
      tmp="$(mktemp -d)"
      # shellcheck disable=SC2046
      run "$t" "$tmp" "fuzz/corpus/$t" $(seeds "$t") -- -max_total_time="${FUZZ_SMOKE_SECS:-20}" \
        -runs=200000 2>&1 | tail -n 25 || status=1
      rm -rf "$tmp"
    done
    ;;
  long)
    mkdir -p fuzz/results
    out="fuzz/results/long-$(date -u +%Y-%m-%d).txt"
    [[ -e "$out" ]] || {
      echo "# scripts/fuzz.sh --long --runs $runs_per_target ($(date -u +%Y-%m-%dT%H:%MZ))"
      echo "# $(rustc -V); cargo-fuzz $CARGO_FUZZ_VERSION; one worker; ${common[*]}"
    } >"$out"
    echo "# --runs $runs_per_target --targets \"${TARGETS[*]}\" ${extra[*]}" >>"$out"
    for t in "${TARGETS[@]}"; do
      mkdir -p "$work/corpus/$t"
      cp -n "fuzz/corpus/$t"/* "$work/corpus/$t/" 2>/dev/null || true
      log="$work/$t.log"
      echo "== $t: $runs_per_target runs (log: $log)"
      start=$(date +%s)
      # shellcheck disable=SC2046
      if run "$t" "$work/corpus/$t" $(seeds "$t") -- -runs="$runs_per_target" >"$log" 2>&1; then
        crashes=0
      else
        crashes=1; status=1
      fi
      end=$(date +%s)
      tail -n 12 "$log"
      echo "$(summary "$t" "$log") wall_secs=$((end - start)) crashed=$crashes" | tee -a "$out"
      if [[ $crashes == 0 ]]; then
        # Minimised by greedy set cover over libFuzzer's features (-set_cover_merge: about half
        # the files `cargo fuzz cmin`'s -merge keeps, for the same coverage).
        echo "== $t: minimising the corpus into fuzz/corpus/$t"
        min="$work/min/$t"
        rm -rf "$min" && mkdir -p "$min"
        "$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release/$t" -set_cover_merge=1 \
          -rss_limit_mb=1024 -max_len=65536 "$min" "$work/corpus/$t" >"$work/$t.cmin.log" 2>&1
        # Inputs that found something (`regression-*`) stay whatever the set cover keeps.
        keep="$(mktemp -d)"
        cp "fuzz/corpus/$t"/regression-* "$keep/" 2>/dev/null || true
        rm -rf "fuzz/corpus/$t" && mkdir -p "fuzz/corpus/$t"
        cp "$min"/* "fuzz/corpus/$t/"
        # What is committed stays small: inputs over 8 KiB are left to the working corpus (the
        # fixtures, 21 KB and under, seed every run anyway).
        find "fuzz/corpus/$t" -type f -size +8k -delete
        cp "$keep"/* "fuzz/corpus/$t/" 2>/dev/null || true
        rm -rf "$keep"
        echo "$t corpus: $(ls "fuzz/corpus/$t" | wc -l) files, $(du -sh --apparent-size "fuzz/corpus/$t" | cut -f1)" | tee -a "$out"
      fi
    done
    echo "== figures in $out"
    ;;
esac
if [[ $status != 0 ]]; then
  echo "fuzz: a target crashed; the input is under $work/artifacts/" >&2
fi
exit "$status"
