#!/usr/bin/env bash
# Builds streamhost and runs the example pipeline on embedded defaults:
# JSON-lines files in and out, an impression cleaner written in Rust and a
# click cleaner written in Python, each built from source into a component.
# Installs what is missing first (scripts/setup.sh; a no-op when all is there).
set -euo pipefail
cd "$(dirname "$0")/.."
env_lines=$(scripts/setup.sh)
eval "$env_lines"
cargo build --release -p streamhost
example=examples/clean-logs
./target/release/streamhost run "$example/pipeline.json"
echo
echo "Output:       $example/out/ (clean-impressions.jsonl, clean-clicks.jsonl)"
echo "Dead letters: $example/out/dead-letter.jsonl (every refused record, with its line and reason)"
