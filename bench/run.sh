#!/usr/bin/env bash
# `make bench`: set up (Python venv, release builds, best-effort arm64 package build), then run
# the bench binary, which starts and stops its own servers on free loopback ports and writes
# BENCHMARKS.md. Benchmarks, not tests: this never runs under `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
mkdir -p target/bench

# 1. The Python stack being replaced, pinned (bench/requirements-python.txt), in its own venv.
PYVENV=bench/.venv-python
STAMP="$PYVENV/.installed-$(sha256sum bench/requirements-python.txt | cut -c1-12)"
if [[ ! -f $STAMP ]]; then
    python3 -m venv "$PYVENV"
    "$PYVENV/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements-python.txt
    rm -f "$PYVENV"/.installed-*; touch "$STAMP"
fi

# 2. The release binaries (lto, codegen-units = 1: slow the first time, then reused).
# The empty lambda_runtime binary is the floor the functions' init is measured against.
cargo build --release -p admin-api -p stripe-webhook -p expiry-jobs -p empty-runtime

# 3. The Lambda packages for arm64 (cargo-lambda + zig from .venv). Best effort: the bench
#    reports the host binaries instead, and why, when this cannot be built here.
STATUS=target/bench/lambda-build.status
if [[ ${BENCH_ARM64:-1} == 0 ]]; then
    echo "skipped (BENCH_ARM64=0); sizes below are of the host (x86_64) release binaries, same profile" >"$STATUS"
    rm -f target/lambda/{admin-api,stripe-webhook,expiry-jobs}/bootstrap
elif [[ -x .venv/bin/cargo-lambda ]]; then
    export PATH="$ROOT/.venv/bin:$PATH"
    if timeout 3600 .venv/bin/cargo-lambda lambda build --release --arm64 -p admin-api -p stripe-webhook -p expiry-jobs \
        >target/bench/lambda-build.log 2>&1; then
        echo "built for arm64 (aarch64-unknown-linux-gnu) with cargo-lambda + zig" >"$STATUS"
    else
        reason=$(grep -m1 -iE "error|not installed|target may not be installed" target/bench/lambda-build.log || tail -n1 target/bench/lambda-build.log)
        echo "failed: ${reason//|/\\|} (full log: target/bench/lambda-build.log); sizes below are of the host (x86_64) release binaries, same profile" >"$STATUS"
        rm -f target/lambda/{admin-api,stripe-webhook,expiry-jobs}/bootstrap
    fi
else
    echo "failed: .venv/bin/cargo-lambda missing (run make venv); sizes below are of the host release binaries" >"$STATUS"
fi
echo "arm64 package build: $(cat "$STATUS")"

# 4. The bench itself: opt-level 3 like the functions (the webhook CPU loop is timed in it), but
#    without fat LTO, which would only add minutes of linking to a tool (so its loop is, if
#    anything, slower than the function's own code). Its own target dir: the profile override
#    must not replace the functions' LTO artifacts in target/release (each run would relink them).
CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_TARGET_DIR=target/bench-build \
    cargo build --release -p bench
# moto's own log (requests, tracebacks of any 500) beside the functions' logs.
export MOTO_LOG=${MOTO_LOG:-$ROOT/target/bench/moto.log}
exec target/bench-build/release/bench
