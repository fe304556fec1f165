#!/usr/bin/env bash
# The training-data join between Kafka topics, end to end on a local broker
# (see README.md beside this script):
#   1. a Tansu broker on 127.0.0.1 (a free port, memory storage), stopped on exit;
#   2. topics `impressions`, `clicks` and `samples`, 3 partitions each;
#   3. pipelines/produce.json: examples/training-join's data (files) -> the two input topics;
#   4. pipelines/join.json: both topics -> clean (Rust and Python plugins) -> impressions LEFT JOIN clicks
#      within 1 h, emitted when the window ends -> topic `samples` (stop_at_end: it ends when the input does);
#   5. pipelines/read.json: topic `samples` -> out/samples.jsonl, then a few samples and the counts.
#
# Usage: examples/kafka-join/run.sh   (STREAMHOST=path/to/streamhost to use a given binary; otherwise
# target/release/streamhost, built if needed). Everything it writes is under examples/kafka-join/out/.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Installs what is missing (apt packages, the plugin toolchains, Tansu) and sets the env, as the quick start does.
env_lines=$(scripts/setup.sh)
eval "$env_lines"
export STREAMHOST_LOG=${STREAMHOST_LOG:-warn}

ex=examples/kafka-join
out=$ex/out
partitions=3

name=kafka-join
. scripts/example-lib.sh
tansu=${STREAMHOST_TANSU:?scripts/setup.sh sets STREAMHOST_TANSU}
[ -x "$tansu" ] || fail "no Tansu at $tansu (scripts/setup.sh fetches it)"

rm -rf "$out"
mkdir -p "$out"

port=$(free_port)
brokers=127.0.0.1:$port
step "starting Tansu on $brokers (memory storage; log: $out/tansu.log)"
"$tansu" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
    --storage-engine memory://tansu/ > "$out/tansu.log" 2>&1 &
tansu_pid=$!
# The broker is ours: stopped by its pid, however the script ends.
trap 'kill "$tansu_pid" 2>/dev/null || true; wait "$tansu_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$tansu_pid" 2>/dev/null || { cat "$out/tansu.log" >&2; fail "Tansu exited"; }
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || fail "Tansu does not listen on $brokers"

step "creating topics impressions, clicks, samples ($partitions partitions each; tansu topic create)"
for topic in impressions clicks samples; do
    "$tansu" topic create "$topic" --broker "tcp://$brokers" --partitions "$partitions" > /dev/null
done

# The pipelines as committed name a broker on 127.0.0.1:9092; run copies of them, at the same depth
# (out/ beside pipelines/), so their relative paths mean the same, pointed at this broker.
for p in produce join read; do
    sed "s/127\.0\.0\.1:9092/$brokers/g" "$ex/pipelines/$p.json" > "$out/$p.json"
done

run() {
    local job=$1
    "$bin" run --no-progress "$out/$job.json" 2> "$out/$job.log" || { cat "$out/$job.log" >&2; fail "streamhost run $ex/pipelines/$job.json failed"; }
    # The run's summary (its log is in out/NAME.log).
    sed 's/\x1b\[[0-9;]*m//g' "$out/$job.log" | grep -E '^streamhost:|^  ' || true
}

step "producing examples/training-join/data into impressions and clicks (streamhost run $ex/pipelines/produce.json)"
run produce

step "the join, Kafka to Kafka (streamhost run $ex/pipelines/join.json; builds the two cleaners first)"
run join

step "reading topic samples back (streamhost run $ex/pipelines/read.json -> $out/samples.jsonl)"
run read

samples=$out/samples.jsonl
[ -s "$samples" ] || fail "no samples in topic samples"
step "a few samples"
echo "positive (an impression with its clicks):"
grep -v -m 2 '"click_count":0[,}]' "$samples" || true
echo "negative (no click within the hour):"
grep -m 2 '"click_count":0[,}]' "$samples" || true

step "counts"
total=$(wc -l < "$samples")
negatives=$(grep -c '"click_count":0[,}]' "$samples" || true)
positives=$((total - negatives))
unique=$(grep -o '"request_id":"[^"]*"' "$samples" | sort -u | wc -l)
dead=$( [ -f "$out/dead-letter.jsonl" ] && wc -l < "$out/dead-letter.jsonl" || echo 0)
echo "impressions in:  $(wc -l < examples/training-join/data/impressions.jsonl)"
echo "clicks in:       $(wc -l < examples/training-join/data/clicks.jsonl)"
echo "samples out:     $total ($positives positives, $negatives negatives; $unique distinct request ids)"
echo "dead letters:    $dead (records the cleaners refused; $out/dead-letter.jsonl)"
[ "$total" -eq "$unique" ] || fail "an impression came out more than once"
echo "kafka-join: ok (samples in $samples)"
