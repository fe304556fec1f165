#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs what is missing
# (scripts/setup.sh; a no-op when all is there), then the SDKs' own unit tests
# (Python, Go), then every Rust test of the workspace in release mode (wasmtime
# compiles components far faster optimised; plugins are built from source by
# the tests). Every runner's output is shown whole.
set -euo pipefail
cd "$(dirname "$0")/.."
env_lines=$(scripts/setup.sh)
eval "$env_lines"

echo "== Python SDK unit tests"
python3 -m unittest discover -s sdk/python/tests -t sdk/python

echo "== Go SDK unit tests"
(cd sdk/go && GOFLAGS=-mod=mod GOPROXY=off go test ./...)

echo "== Rust tests (release)"
cargo test --release --workspace --no-fail-fast
