#!/usr/bin/env bash
# Builds the four Lambda functions (ingest, fanout, writer, compact) as `bootstrap` zips for the
# provided.al2023 runtime, with cargo-lambda.
#
#   scripts/build-lambda.sh [--arch arm64|x86_64] [--compiler zig|cargo] [--out DIR]
#
#   --arch      arm64 (default; Graviton, cross-compiled with zig) or x86_64.
#   --compiler  zig (default; cargo-lambda's cargo-zigbuild backend, any host) or cargo
#               (plain cargo and the host linker: only for the host's own arch).
#   --out       where the zips go (default target/lambda-zips), as OUT/ARCH/BIN/bootstrap.zip.
#
# Installs cargo-lambda itself: `pip install cargo-lambda` (which brings the `ziglang` package)
# into a virtualenv at ${SPARKLAKE_VENV:-$HOME/.cache/sparklake/venv}, reused when present.
# The arm64 build needs the aarch64-unknown-linux-gnu Rust target: added via rustup if missing.
# Honours CARGO_TARGET_DIR (default $HOME/.cache/sparklake/target, as scripts/test.sh).
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true

BINS=(ingest fanout writer compact)
CARGO_LAMBDA_VERSION="${SPARKLAKE_CARGO_LAMBDA_VERSION:-1.9.2}"

die() { echo "build-lambda: error: $*" >&2; exit 1; }
usage() { sed -n '2,15s/^# \{0,1\}//p' "$0"; }

arch=arm64
compiler=zig
out=""
while (($#)); do
  case "$1" in
    --arch) (($# >= 2)) || die "--arch needs a value (arm64 or x86_64)"; arch="$2"; shift 2 ;;
    --arch=*) arch="${1#*=}"; shift ;;
    --compiler) (($# >= 2)) || die "--compiler needs a value (zig or cargo)"; compiler="$2"; shift 2 ;;
    --compiler=*) compiler="${1#*=}"; shift ;;
    --out) (($# >= 2)) || die "--out needs a directory"; out="$2"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

case "$arch" in
  arm64 | aarch64) arch=arm64 triple=aarch64-unknown-linux-gnu arch_flag=--arm64 ;;
  x86_64 | x86-64 | amd64) arch=x86_64 triple=x86_64-unknown-linux-gnu arch_flag=--x86-64 ;;
  *) die "unknown --arch '$arch' (expected arm64 or x86_64)" ;;
esac
case "$compiler" in
  zig | cargo-zigbuild) compiler=cargo-zigbuild ;;
  cargo) ;;
  *) die "unknown --compiler '$compiler' (expected zig or cargo)" ;;
esac
case "$(uname -m)" in
  x86_64) host_arch=x86_64 ;;
  aarch64 | arm64) host_arch=arm64 ;;
  *) host_arch="$(uname -m)" ;;
esac
if [[ "$compiler" == cargo && "$arch" != "$host_arch" ]]; then
  die "--compiler cargo builds only for the host arch ($host_arch), not $arch: use --compiler zig to cross-compile"
fi

# A relative --out is taken from where the script was called; the default from the repo root.
if [[ -n "$out" && "$out" != /* ]]; then out="$PWD/$out"; fi
cd "$(dirname "$0")/.."
out="${out:-$PWD/target/lambda-zips}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sparklake/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# cargo-lambda (and, through its ziglang dependency, zig) in our own virtualenv.
venv="${SPARKLAKE_VENV:-$HOME/.cache/sparklake/venv}"
if [[ ! -x "$venv/bin/cargo-lambda" ]]; then
  command -v python3 >/dev/null || die "python3 is needed to create the virtualenv $venv"
  if [[ ! -x "$venv/bin/pip" ]]; then
    echo "== creating virtualenv $venv"
    python3 -m venv "$venv" || die "could not create the virtualenv $venv (python3 -m venv)"
  fi
  echo "== pip install cargo-lambda==$CARGO_LAMBDA_VERSION into $venv"
  "$venv/bin/pip" install --quiet "cargo-lambda==$CARGO_LAMBDA_VERSION" \
    || die "pip could not install cargo-lambda==$CARGO_LAMBDA_VERSION into $venv"
fi
export PATH="$venv/bin:$PATH"
echo "== $(cargo-lambda lambda --version)"

if [[ "$compiler" == cargo-zigbuild ]]; then
  # cargo-zigbuild runs `zig`, or `python3 -m ziglang` (the venv's python3 is first on PATH).
  zig_version="$(python3 -m ziglang version 2>/dev/null)" \
    || die "zig is missing: the ziglang package should have come with cargo-lambda in $venv (try: $venv/bin/pip install ziglang)"
  echo "== zig $zig_version (ziglang from PyPI)"
fi

if ! rustup target list --installed | grep -qx "$triple"; then
  echo "== Rust target $triple is not installed: rustup target add $triple"
  rustup target add "$triple" \
    || die "rustup could not add the target $triple (it downloads the target's standard library)"
fi

bin_args=()
for bin in "${BINS[@]}"; do bin_args+=(--bin "$bin"); done
lambda_dir="$out/$arch"
mkdir -p "$lambda_dir"
echo "== cargo lambda build ($arch, $compiler) into $lambda_dir"
cargo lambda build --release --locked "$arch_flag" --compiler "$compiler" \
  --output-format zip --lambda-dir "$lambda_dir" "${bin_args[@]}"

echo "== Lambda zips ($arch, provided.al2023)"
for bin in "${BINS[@]}"; do
  zip="$lambda_dir/$bin/bootstrap.zip"
  [[ -f "$zip" ]] || die "cargo lambda build left no $zip"
  bytes="$(stat -c %s "$zip")"
  awk -v p="$zip" -v b="$bytes" 'BEGIN { printf "%s\t%d bytes\t%.1f KiB\n", p, b, b / 1024 }'
done
