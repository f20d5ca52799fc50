#!/usr/bin/env bash
# Checks template.yaml offline: cfn-lint, `sam validate --lint`, then the pytest checks in
# tests/template (queues, event sources, IAM, bucket, Glue columns against `sparklake schema`).
#
#   scripts/lint-template.sh [pytest args...]
#
# Installs cfn-lint, aws-sam-cli and pytest into the virtualenv scripts/moto.sh uses
# (${SPARKLAKE_VENV:-$HOME/.cache/sparklake/venv}); no AWS account or network call is made
# (sam validate gets a region and dummy credentials). Builds `sparklake` for the schema test
# unless SPARKLAKE_BIN names a binary. Honours CARGO_TARGET_DIR (default as scripts/test.sh).
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sparklake/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

SPARKLAKE_VENV="${SPARKLAKE_VENV:-$HOME/.cache/sparklake/venv}"
CFN_LINT_VERSION="${SPARKLAKE_CFN_LINT_VERSION:-1.58.0}"
SAM_CLI_VERSION="${SPARKLAKE_SAM_CLI_VERSION:-1.170.0}"
PYTEST_VERSION="${SPARKLAKE_PYTEST_VERSION:-9.2.0}"

if [[ ! -x "$SPARKLAKE_VENV/bin/python" ]]; then
  python3 -m venv "$SPARKLAKE_VENV"
fi
py="$SPARKLAKE_VENV/bin/python"
if ! "$py" - "$CFN_LINT_VERSION" "$SAM_CLI_VERSION" "$PYTEST_VERSION" 2>/dev/null <<'EOF'
import sys
from importlib.metadata import version
want = dict(zip(["cfn-lint", "aws-sam-cli", "pytest"], sys.argv[1:]))
sys.exit(any(version(name) != v for name, v in want.items()))
EOF
then
  echo "== installing cfn-lint==$CFN_LINT_VERSION aws-sam-cli==$SAM_CLI_VERSION pytest==$PYTEST_VERSION into $SPARKLAKE_VENV"
  "$SPARKLAKE_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "cfn-lint==$CFN_LINT_VERSION" "aws-sam-cli==$SAM_CLI_VERSION" "pytest==$PYTEST_VERSION"
fi

echo "== cfn-lint $CFN_LINT_VERSION template.yaml"
"$SPARKLAKE_VENV/bin/cfn-lint" template.yaml

echo "== sam validate --lint (SAM CLI $SAM_CLI_VERSION)"
# Offline: a region and dummy credentials keep the SAM CLI from looking for real ones.
env -u AWS_PROFILE -u AWS_SESSION_TOKEN \
  AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" AWS_REGION="${AWS_REGION:-us-east-1}" \
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  SAM_CLI_TELEMETRY=0 \
  "$SPARKLAKE_VENV/bin/sam" validate --lint --template template.yaml

if [[ -z "${SPARKLAKE_BIN:-}" ]]; then
  echo "== cargo build -p sparklake (for the schema test)"
  cargo build --locked --quiet -p sparklake
fi

echo "== pytest tests/template"
AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
  "$py" -m pytest -q -p no:cacheprovider tests/template "$@"
