#!/usr/bin/env bash
# The recommender's training pipeline on a laptop (see README.md beside this script):
#   1. a redis-server on 127.0.0.1 (a free port, no persistence), stopped on exit;
#   2. dimension data loaded into it: data/users.jsonl as JSON strings `user:<id>`, data/items.jsonl as
#      hashes `item:<id>`;
#   3. pipeline.json, pointed at that server: examples/training-join's raw impressions and clicks -> clean
#      (Rust and Python plugins) -> impressions LEFT JOIN clicks within 1 h, emitted when the window ends ->
#      the user's features, the item's, and the item author's tier, from Redis -> out/samples.jsonl;
#   4. a few samples and the counts.
#
# Usage: examples/training-pipeline/run.sh   (STREAMHOST=path/to/streamhost to use a given binary; otherwise
# target/release/streamhost, built if needed). Everything it writes is under examples/training-pipeline/out/.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Installs what is missing (apt packages with redis-server, the plugin toolchains) and sets the env, as the quick start does.
env_lines=$(scripts/setup.sh)
eval "$env_lines"
export STREAMHOST_LOG=${STREAMHOST_LOG:-warn}

ex=examples/training-pipeline
out=$ex/out

name=training-pipeline
. scripts/example-lib.sh

rm -rf "$out"
mkdir -p "$out"

port=$(free_port)
step "starting redis-server on 127.0.0.1:$port (no persistence; log: $out/redis.log)"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no > "$out/redis.log" 2>&1 &
redis_pid=$!
# The server is ours: stopped by its pid, however the script ends.
trap 'kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    kill -0 "$redis_pid" 2>/dev/null || { cat "$out/redis.log" >&2; fail "redis-server exited"; }
    sleep 0.1
done
[ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] || fail "redis-server does not answer on $port"

step "loading the dimension tables (users as JSON strings, items as hashes)"
# One command per line in Redis's protocol, piped in one go (redis-cli --pipe).
python3 - "$ex/data" > "$out/load.resp" <<'PY'
import json, sys
def command(*args):
    parts = [f"*{len(args)}\r\n"]
    for a in args:
        a = str(a)
        parts.append(f"${len(a.encode())}\r\n{a}\r\n")
    return "".join(parts)
out = []
for line in open(f"{sys.argv[1]}/users.jsonl"):
    u = json.loads(line)
    out.append(command("SET", f"user:{u['id']}", json.dumps(u["features"], separators=(",", ":"))))
for line in open(f"{sys.argv[1]}/items.jsonl"):
    i = json.loads(line)
    fields = [x for kv in i["fields"].items() for x in kv]
    out.append(command("HSET", f"item:{i['id']}", *fields))
sys.stdout.write("".join(out))
PY
redis-cli -p "$port" --pipe < "$out/load.resp" | tail -n 1
echo "users: $(wc -l < "$ex/data/users.jsonl"), items: $(wc -l < "$ex/data/items.jsonl"); keys in Redis: $(redis-cli -p "$port" dbsize)"

# The pipeline as committed names a server on 127.0.0.1:6379: run a copy pointed at this one, its relative
# paths made absolute (they are relative to the folder of pipeline.json).
python3 - "$ex/pipeline.json" "$port" > "$out/pipeline.json" <<'PY'
import json, os, sys
path, port = sys.argv[1], sys.argv[2]
base = os.path.dirname(os.path.abspath(path))
p = json.load(open(path))
absolute = lambda rel: os.path.normpath(os.path.join(base, rel))
for plugin in p["plugins"].values():
    plugin["path"] = absolute(plugin["path"])
for node in list(p["sources"].values()) + list(p["sinks"].values()) + [p["dead_letter"]]:
    node["path"] = absolute(node["path"])
p["settings"]["state"]["dir"] = absolute(p["settings"]["state"]["dir"])
if "addr_file" in p["settings"].get("admin", {}):
    p["settings"]["admin"]["addr_file"] = absolute(p["settings"]["admin"]["addr_file"])
for step in p["steps"].values():
    for b in step.get("backends", []):
        b["url"] = b["url"].replace("127.0.0.1:6379", f"127.0.0.1:{port}")
json.dump(p, sys.stdout, indent=2)
PY
step "the pipeline (streamhost run $ex/pipeline.json, on this server; builds the two cleaners first)"
"$bin" run --no-progress "$out/pipeline.json" 2> "$out/run.log" || { cat "$out/run.log" >&2; fail "streamhost run failed"; }
sed 's/\x1b\[[0-9;]*m//g' "$out/run.log" | grep -E '^streamhost:|^  ' || true

samples=$out/samples.jsonl
[ -s "$samples" ] || fail "no samples"
step "a few samples"
echo "positive, with the user's, the item's and the author's features:"
grep -v -m 1 '"click_count":0[,}]' "$samples" | grep '"user_age"' | head -n 1 || true
echo "negative, of a user without features (the lookup missed: no user_ fields):"
grep -m 1 '"click_count":0[,}]' "$samples" | grep -v '"user_age"' | head -n 1 || grep -m 1 -v '"user_age"' "$samples" || true

step "counts"
total=$(wc -l < "$samples")
negatives=$(grep -c '"click_count":0[,}]' "$samples" || true)
with_user=$(grep -c '"user_age"' "$samples" || true)
with_item=$(grep -c '"item_category":"' "$samples" || true)
with_author=$(grep -c '"author_tier":"' "$samples" || true)
echo "samples out:     $total ($((total - negatives)) positives, $negatives negatives)"
echo "with features:   user $with_user, item $with_item, item author $with_author"
echo "dead letters:    $( [ -f "$out/dead-letter.jsonl" ] && wc -l < "$out/dead-letter.jsonl" || echo 0) (records the cleaners refused)"
echo "training-pipeline: ok (samples in $samples)"
