#!/usr/bin/env bash
# Signs a Stripe event file with the local webhook secret and posts it to the webhook
# function served by `make dev` (cargo lambda watch on 127.0.0.1:$LAMBDA_PORT).
#   scripts/send-webhook.sh events/stripe/invoice.paid.json
set -euo pipefail
cd "$(dirname "$0")/.."
file="${1:?usage: scripts/send-webhook.sh EVENT_FILE}"
secret="${STRIPE_WEBHOOK_SECRET:-$(grep '^STRIPE_WEBHOOK_SECRET=' .env.example | cut -d= -f2-)}"
secret="${secret%%,*}"
port="${LAMBDA_PORT:-9000}"
t=$(date +%s)
sig=$(python3 - "$file" "$secret" "$t" <<'PY'
import hashlib, hmac, sys
body = open(sys.argv[1], "rb").read()
print(hmac.new(sys.argv[2].encode(), sys.argv[3].encode() + b"." + body, hashlib.sha256).hexdigest())
PY
)
curl -sS -X POST "http://127.0.0.1:$port/lambda-url/stripe-webhook/stripe/webhook" \
  -H "Content-Type: application/json" -H "Stripe-Signature: t=$t,v1=$sig" --data-binary "@$file"
echo
