#!/usr/bin/env bash
# Renders every notification e-mail with sample data into emails-preview/ (or $1)
# and, when chromium is installed, loads each page headless and fails if any
# page does not load or renders an empty body.
#
#   scripts/render-emails.sh [OUT_DIR]      (what `make emails` runs)
#
# APP_BASE_URL sets the links; EMAIL_TEMPLATES_DIR renders from a directory
# instead of the templates compiled into the binary.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/emails-preview}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

cargo run --quiet --manifest-path "$root/Cargo.toml" -p shared --example render_emails -- "$out"

chrome="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [[ -z "$chrome" ]]; then
    echo "render-emails: no chromium found; skipped the browser check (apt-get install chromium)" >&2
    echo "previews: $out/index.html"
    exit 0
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
failures=0
for page in "$out"/*.html; do
    name="$(basename "$page")"
    # --dump-dom prints the DOM after load; the --disable-* flags keep chromium off the network.
    if ! dom="$(timeout 60 "$chrome" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync --disable-extensions \
        --user-data-dir="$profile" --dump-dom "file://$page" 2>/dev/null)"; then
        echo "FAIL $name: chromium could not load it" >&2
        failures=$((failures + 1))
        continue
    fi
    # Visible text of <body>: strip tags, then whitespace.
    body_text="$(printf '%s' "$dom" | tr '\n' ' ' | sed -e 's/.*<body[^>]*>//' -e 's/<\/body>.*//' -e 's/<[^>]*>//g' | tr -d '[:space:]')"
    if [[ -z "$body_text" ]]; then
        echo "FAIL $name: empty body" >&2
        failures=$((failures + 1))
    else
        echo "ok   $name"
    fi
done

if (( failures > 0 )); then
    echo "render-emails: $failures page(s) failed" >&2
    exit 1
fi
echo "previews: $out/index.html"
