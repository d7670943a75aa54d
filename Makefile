# LogiScore subscriptions. The two commands a new developer needs:
#   make dev    run the whole system locally (moto server, stripe-sim, every function under cargo lambda watch)
#   make test   run every test (starts and stops its own servers on free ports)
SHELL := /bin/bash
VENV  := .venv
STAMP := $(VENV)/.installed-$(shell sha256sum requirements-dev.txt | cut -c1-12)
# stripe-sim's conformance test: Stripe's Node client and the TypeScript compiler (reads the
# client's published types), installed from the npm registry into a git-ignored folder.
CONFORMANCE := tests/stripe-sim/conformance
NODE_STAMP  := $(CONFORMANCE)/node_modules/.installed-$(shell sha256sum $(CONFORMANCE)/package-lock.json | cut -c1-12)

.PHONY: dev test torture venv lint emails bench fmt clippy clean metrics sam-build

venv: $(STAMP) $(NODE_STAMP)

$(STAMP): requirements-dev.txt
	@command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*; touch $@

$(NODE_STAMP): $(CONFORMANCE)/package.json $(CONFORMANCE)/package-lock.json
	@command -v npm >/dev/null || { echo "node and npm are required (stripe-sim's conformance test)"; exit 1; }
	npm ci --prefix $(CONFORMANCE) --no-audit --no-fund --loglevel=error
	@rm -f $(CONFORMANCE)/node_modules/.installed-*; touch $@

dev: venv
	scripts/dev.sh

test: venv
	scripts/test.sh

# The hostile-input suite with its heavier knobs: 5x schemathesis examples, 10x proptest
# cases (TORTURE=1, see tests/it/hostile/mod.rs); HOSTILE_SEED=n picks another seed.
torture: venv
	TORTURE=1 MOTO_SERVER=$(VENV)/bin/moto_server cargo test -p integration-tests --test it hostile -- --nocapture

lint: venv
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --lint --template-file template.yaml --region us-east-1

# Summarise the EMF metrics of the last `make dev` run (target/dev-logs/*.log) as a table;
# `make metrics FILE=some.log` (or FILE=- for stdin) reads another capture.
metrics:
	python3 scripts/metrics.py $(FILE)

emails:
	scripts/render-emails.sh emails-preview

# Cross-compiles every function for arm64 with cargo-lambda (zig from the venv). Slow: release + LTO.
sam-build: venv
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam build --template-file template.yaml --beta-features

fmt:
	cargo fmt --all

bench: venv
	bench/run.sh

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	cargo clean
	rm -rf $(VENV) .aws-sam emails-preview
