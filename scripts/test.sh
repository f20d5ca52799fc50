#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test of the workspace.
# Needs the Rust toolchain (cargo, rustfmt, clippy) and python3; installs moto[server] into a
# cached virtualenv and starts it on a free 127.0.0.1 port for the AWS tests.
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
# AWS APIs are served by a real emulator on loopback; the AWS tests fail without it.
. scripts/moto.sh
moto_start

echo "== cargo test"
log="$(mktemp)"
trap 'rm -f "$log"; moto_stop' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line over every test binary (cargo prints one per binary, doc-tests last).
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
