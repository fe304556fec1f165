#!/usr/bin/env bash
# Hot swap on a running pipeline, step by step (see docs/hot-swap.md).
#
# pipeline.json: a generator of raw impressions (2000/s, 30000 of them, so
# the run ends by itself after about 15 s) -> transform `cleaner`
# (plugins/impression-cleaner, built from source) -> out/clean.jsonl, with
# the admin API on (`settings.admin`, address in out/admin.addr).
#
# The demo starts it in the background, lists its plugins, swaps `cleaner`
# for a new version while events flow (tests/plugins/hostile with the config
# {"tag": "v2"}: it echoes each event with "tag": "v2", so the lines written
# after the swap show which version made them; the impression cleaner takes
# no config, so another build of it would look the same), rolls it back,
# waits for the run to end and prints a summary: which version wrote which
# lines, and that no line was written twice.
#
# Usage: examples/hot-swap/demo.sh   (STREAMHOST=path/to/streamhost to use a
# given binary; otherwise target/release/streamhost, built if needed)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x scripts/setup.sh ] && eval "$(scripts/setup.sh --env)"
# The CLI's own log: warnings only (the pipeline's log goes to out/run.log).
export STREAMHOST_LOG=${STREAMHOST_LOG:-warn}

ex=examples/hot-swap
pipeline=$ex/pipeline.json
out=$ex/out
lines_file=$out/clean.jsonl
new_version=tests/plugins/hostile
# Phases last this many output lines (2000 per second).
phase_lines=${DEMO_PHASE_LINES:-4000}

name=demo
. scripts/example-lib.sh

step "building the new version ($new_version) before the run, so the swap itself is quick"
"$bin" plugin build "$new_version"

# Lines of the output so far; tagged (v2) lines; lines after the last tagged one.
count() { [ -f "$lines_file" ] && wc -l < "$lines_file" || echo 0; }
tagged() { [ -f "$lines_file" ] && grep -c '"tag":"v2"' "$lines_file" || true; }
after_last_tag() { [ -f "$lines_file" ] && awk '/"tag":"v2"/ { last = NR } END { print (last ? NR - last : 0) }' "$lines_file" || echo 0; }

# Waits until `$2` (a command printing a number) reaches $3.
wait_for() {
    local what=$1 probe=$2 want=$3 deadline=$((SECONDS + ${DEMO_TIMEOUT:-300}))
    until [ "$($probe)" -ge "$want" ]; do
        kill -0 "$pid" 2>/dev/null || fail "the pipeline ended before $what (see $out/run.log)"
        [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
        sleep 0.1
    done
}

rm -rf "$out"
mkdir -p "$out"
step "starting the pipeline: $bin run $pipeline (log: $out/run.log)"
STREAMHOST_LOG=info "$bin" run --no-progress "$pipeline" 2> "$out/run.log" &
pid=$!
# Stop the pipeline if the demo fails half-way (it is ours: stopped by its pid).
trap '[ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT

addr_file=$out/admin.addr
addr_ready() { [ -s "$addr_file" ] && echo 1 || echo 0; }
wait_for "the admin API (the cleaner is built and loaded first)" addr_ready 1
echo "admin API on http://$(cat "$addr_file")"
wait_for "$phase_lines cleaned lines" count "$phase_lines"

step "streamhost plugin list"
"$bin" plugin list --pipeline "$pipeline"
echo
echo "a cleaned line (version 1, impression-cleaner):"
head -n 1 "$lines_file"

step "streamhost plugin swap cleaner $new_version --config '{\"tag\":\"v2\"}'"
"$bin" plugin swap cleaner "$new_version" --config '{"tag":"v2"}' --pipeline "$pipeline"
wait_for "$phase_lines lines of the new version" tagged "$phase_lines"
echo "a line written after the swap (version 2):"
grep -m 1 '"tag":"v2"' "$lines_file"
echo
"$bin" plugin list --pipeline "$pipeline"

step "streamhost plugin rollback cleaner"
"$bin" plugin rollback cleaner --pipeline "$pipeline"
wait_for "$phase_lines lines after the rollback" after_last_tag "$phase_lines"
echo "a line written after the rollback (version 1 again):"
tail -n 1 "$lines_file"

step "waiting for the run to end (the generator stops after its count)"
status=0
wait "$pid" || status=$?
pid=
[ "$status" -eq 0 ] || { cat "$out/run.log" >&2; fail "streamhost run exited with $status"; }
# What the pipeline logged about the plugin's slot, then its summary.
sed 's/\x1b\[[0-9;]*m//g' "$out/run.log" | grep -E 'slot changed|^streamhost:|^  ' || true

step "summary"
# Consecutive runs of lines by version, and duplicates of request_id.
awk '
    { v = ($0 ~ /"tag":"v2"/) ? "v2 (hostile, tagged)" : "v1 (impression-cleaner)" }
    v != prev { if (prev != "") printf "  %-26s %6d lines\n", prev, n; prev = v; n = 0 }
    { n++ }
    END { if (prev != "") printf "  %-26s %6d lines\n", prev, n }
' "$lines_file"
total=$(count)
unique=$(grep -o '"request_id":"[^"]*"' "$lines_file" | sort -u | wc -l)
dead=$( [ -f "$out/dead-letter.jsonl" ] && wc -l < "$out/dead-letter.jsonl" || echo 0)
echo "  $total lines, $unique distinct request ids (duplicates: $((total - unique))), $dead dead letters (dirty records the cleaner refused)"
[ "$total" -eq "$unique" ] || fail "some events were written twice"
[ ! -e "$addr_file" ] || fail "$addr_file was not removed at the end of the run"
echo "demo: ok (output in $lines_file)"
