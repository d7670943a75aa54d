#!/usr/bin/env bash
# `make dev`: the whole system on this machine, on loopback only.
#   moto server (DynamoDB, SES, EventBridge) on 127.0.0.1:$MOTO_PORT       (5055)
#   stripe-sim (local Stripe API, signs webhooks)  127.0.0.1:$STRIPE_SIM_PORT (12111)
#   cargo lambda watch (every function)            127.0.0.1:$LAMBDA_PORT     (9000)
# Variables come from the environment when set, else from .env.example.
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

# Environment first, committed defaults second.
while IFS='=' read -r name value; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  [ -n "${!name:-}" ] || export "$name=$value"
done < .env.example
export PATH="$VENV_BIN:$PATH"

cleanup() { echo; echo "stopping local stack"; stop_all; }
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p target/dev-logs
echo "== moto server on 127.0.0.1:$MOTO_PORT (log: target/dev-logs/moto.log)"
start_moto "$MOTO_PORT" target/dev-logs/moto.log
# The Stripe key and the webhook's signing secret(s) go into moto's Secrets Manager, and
# the functions are given only their names (as in AWS, where they get the ARNs).
python scripts/local_stack.py bootstrap --endpoint "http://127.0.0.1:$MOTO_PORT" \
  --table "$TABLE_NAME" --bus "$EVENT_BUS_NAME" --bus "$JOB_CONTINUATION_BUS_NAME" --mail-from "$MAIL_FROM" \
  --secret "STRIPE_SECRET_KEY=$STRIPE_SECRET_ARN" --secret "STRIPE_WEBHOOK_SECRET=$STRIPE_WEBHOOK_SECRET_ARN"

echo "== building stripe-sim and the functions"
cargo build -p stripe-sim -p admin-api -p stripe-webhook -p expiry-jobs

WEBHOOK_URL="http://127.0.0.1:$LAMBDA_PORT/lambda-url/stripe-webhook/stripe/webhook"
echo "== stripe-sim on 127.0.0.1:$STRIPE_SIM_PORT, delivering webhooks to $WEBHOOK_URL"
# The first secret of the (comma-separated) list signs; the webhook accepts any of them.
start_bg target/dev-logs/stripe-sim.log "${CARGO_TARGET_DIR:-target}/debug/stripe-sim" \
  --port "$STRIPE_SIM_PORT" --seed-prices \
  --webhook-url "$WEBHOOK_URL" --webhook-secret "${STRIPE_WEBHOOK_SECRET%%,*}"

echo "== cargo lambda watch on 127.0.0.1:$LAMBDA_PORT (log: target/dev-logs/functions.log)"
# The functions find their secrets by name; the values are not in their environment.
start_bg target/dev-logs/functions.log env -u STRIPE_SECRET_KEY -u STRIPE_WEBHOOK_SECRET \
  cargo lambda watch -A 127.0.0.1 -P "$LAMBDA_PORT"

cat <<INFO

LogiScore subscriptions is running locally.
  admin API:    cargo lambda invoke admin-api --data-file events/admin/get-subscription.json -A 127.0.0.1 -P $LAMBDA_PORT
  webhook:      scripts/send-webhook.sh events/stripe/customer.subscription.updated.json
  jobs:         cargo lambda invoke expiry-jobs --data-file events/jobs/daily.json -A 127.0.0.1 -P $LAMBDA_PORT
  logs:         tail -f target/dev-logs/*.log
Press Ctrl-C to stop.
INFO
wait
