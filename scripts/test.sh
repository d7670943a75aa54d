#!/usr/bin/env bash
# `make test`: every check and test, with the servers they need started on free ports
# and stopped again on exit, pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
trap stop_all EXIT INT TERM

mkdir -p target/test-logs
export PATH="$VENV_BIN:$PATH"
export SAM_CLI_TELEMETRY=0
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
export MOTO_SERVER="$VENV_BIN/moto_server"

echo "== template lint (cfn-lint, sam validate --lint)"
cfn-lint template.yaml
sam validate --lint --template-file template.yaml --region us-east-1 >/dev/null

MOTO_PORT=$(free_port)
echo "== moto server on 127.0.0.1:$MOTO_PORT"
start_moto "$MOTO_PORT" target/test-logs/moto.log
export MOTO_ENDPOINT="http://127.0.0.1:$MOTO_PORT"

echo "== cargo test --workspace"
# Test threads: cargo's default, one per core (2 on CI). The integration binary is bound by
# the one shared moto server, not by CPU: on a 2-core machine it took 122 s at 2 threads and
# 112 s at 4, so more threads buy little and add contention on moto.
cargo test --workspace --locked 2>&1 | tee target/test-logs/cargo-test.log

echo "== e-mail previews rendered and opened in headless Chromium"
if command -v chromium >/dev/null 2>&1; then
  scripts/render-emails.sh target/emails-preview
else
  echo "SKIPPED: chromium is not installed (apt-get install chromium); CI installs it in .ci/run"
fi

# One closing line over every test binary (cargo prints one per binary, doc tests last).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' target/test-logs/cargo-test.log
