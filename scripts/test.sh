#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs what is missing
# (scripts/setup.sh), then the SDKs' own unit tests (Python, Go), then every
# Rust test of the workspace in release mode (wasmtime compiles components
# far faster optimised; plugins are built from source by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh --env)"

echo "== Python SDK unit tests"
python3 -m unittest discover -s sdk/python/tests -t sdk/python 2>&1 | tail -3

echo "== Go SDK unit tests"
(cd sdk/go && GOFLAGS=-mod=mod GOPROXY=off go test ./... 2>&1 | tail -5)

echo "== Rust tests (release)"
cargo test --release --workspace --no-fail-fast 2>&1
