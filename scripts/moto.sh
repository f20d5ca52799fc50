#!/usr/bin/env bash
# Starts a real AWS API emulator (moto's server, from pip) on a free 127.0.0.1 port, for tests.
# Source it: `. scripts/moto.sh && moto_start`; it exports the endpoint and dummy credentials,
# and `moto_stop` (also run on exit) stops it. The virtualenv is cached between runs.

SPARKLAKE_VENV="${SPARKLAKE_VENV:-$HOME/.cache/sparklake/venv}"
MOTO_VERSION="${MOTO_VERSION:-5.2.1}"

moto_install() {
  if [ ! -x "$SPARKLAKE_VENV/bin/python" ]; then
    python3 -m venv "$SPARKLAKE_VENV"
  fi
  if ! "$SPARKLAKE_VENV/bin/python" -c "import moto, flask; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
    echo "== installing moto[server]==$MOTO_VERSION into $SPARKLAKE_VENV"
    "$SPARKLAKE_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
}

moto_start() {
  moto_install
  local port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  MOTO_LOG="$(mktemp)"
  "$SPARKLAKE_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$MOTO_LOG" 2>&1 &
  MOTO_PID=$!
  trap moto_stop EXIT
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "moto_server exited:" >&2; cat "$MOTO_LOG" >&2; return 1
    fi
    sleep 0.2
  done
  export SPARKLAKE_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
  export AWS_ENDPOINT_URL="$SPARKLAKE_TEST_AWS_ENDPOINT"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  export SPARKLAKE_S3_FORCE_PATH_STYLE=true
  echo "== moto_server $MOTO_VERSION on $SPARKLAKE_TEST_AWS_ENDPOINT (pid $MOTO_PID)"
}

moto_stop() {
  if [ -n "${MOTO_PID:-}" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    MOTO_PID=""
  fi
  [ -n "${MOTO_LOG:-}" ] && rm -f "$MOTO_LOG"
  return 0
}
