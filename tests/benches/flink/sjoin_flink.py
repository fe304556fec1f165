#!/usr/bin/env python3
"""SJoin on Apache Flink: the baseline of streamhost's tests/benches/sjoin.rs.

Impressions LEFT interval-join clicks on `request_id`, a click matching an
impression when `imp.ts <= click.ts <= imp.ts + window` (both bounds
inclusive), in event time (watermarks with a bounded out-of-orderness on both
inputs), with PyFlink's Table API / SQL in a local mini-cluster. Both inputs
are JSON-lines files read through the filesystem connector; the join's rows
(one per impression-click pair, or one with NULL click columns for an
impression without clicks) go through the filesystem connector to a
temporary folder. The script then reads that folder back and writes the
canonical file `--out`: `request_id<TAB>matched_clicks` per impression,
sorted by request id (what sjoin_reference.py writes).

Run with the venv that setup.sh prints:

    PY=$(bash tests/benches/flink/setup.sh | tail -1)
    $PY tests/benches/flink/sjoin_flink.py --impressions DIR/impressions.jsonl \
        --clicks DIR/clicks.jsonl --out DIR/flink.tsv --parallelism 2 [--check]

Prints one line `RESULT {json}` (see README.md for the fields).
"""
import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

from flink_env import file_uri, table_env

T_START = time.monotonic()
HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import orjson

    loads = orjson.loads
except ImportError:  # pragma: no cover
    loads = json.loads

# Impression and click fields as the join-impression / join-click generators
# write them (host/src/source/generator.rs).
FEATURES_TYPE = (
    "ROW<`u_age` INT, `u_city` STRING, `u_active_days` INT, `i_category` STRING, `i_price` DOUBLE, "
    "`i_ctr_7d` DOUBLE, `ui_affinity` DOUBLE, `emb` ARRAY<DOUBLE>>"
)
# The fields both generators write first, in their order.
SHARED_FIELDS = [
    ("event", "STRING"),
    ("ts", "BIGINT"),
    ("request_id", "STRING"),
    ("user_id", "STRING"),
    ("item_id", "STRING"),
    ("device", "STRING"),
]
IMPRESSION_FIELDS = SHARED_FIELDS + [
    ("app_version", "STRING"),
    ("page", "STRING"),
    ("position", "INT"),
    ("features", FEATURES_TYPE),
]
CLICK_FIELDS = SHARED_FIELDS + [
    ("page", "STRING"),
    ("click_type", "STRING"),
    ("dwell_ms", "INT"),
    ("session_id", "STRING"),
    ("x", "INT"),
    ("y", "INT"),
    ("user_agent", "STRING"),
]
KEY_FIELDS = [("ts", "BIGINT"), ("request_id", "STRING")]


def sql_interval(ms):
    """A DAY TO SECOND(3) interval literal of `ms` milliseconds (exact)."""
    if ms < 0:
        raise ValueError("negative interval")
    s, milli = divmod(int(ms), 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    return f"INTERVAL '{d} {h:02}:{m:02}:{s:02}.{milli:03}' DAY TO SECOND(3)"


def source_ddl(name, path, fields, out_of_orderness_ms):
    cols = ",\n  ".join(f"`{n}` {t}" for n, t in fields)
    return f"""CREATE TEMPORARY TABLE `{name}` (
  {cols},
  `rt` AS TO_TIMESTAMP_LTZ(`ts`, 3),
  WATERMARK FOR `rt` AS `rt` - {sql_interval(out_of_orderness_ms)}
) WITH (
  'connector' = 'filesystem',
  'path' = '{file_uri(path)}',
  'format' = 'json',
  'json.fail-on-missing-field' = 'false',
  'json.ignore-parse-errors' = 'false'
)"""


def output_columns(payload):
    """(sink column, type, select expression); request_id and click_ts first."""
    cols = [("request_id", "STRING", "i.`request_id`"), ("ts", "BIGINT", "i.`ts`"), ("click_ts", "BIGINT", "c.`ts`")]
    if payload == "full":
        cols += [(n, t, f"i.`{n}`") for n, t in IMPRESSION_FIELDS if n not in ("ts", "request_id")]
        cols += [(f"click_{n}" if not n.startswith("click_") else n, t, f"c.`{n}`") for n, t in CLICK_FIELDS if n != "ts"]
    return cols


def sink_ddl(path, payload):
    cols = ",\n  ".join(f"`{n}` {t}" for n, t, _ in output_columns(payload))
    return f"""CREATE TEMPORARY TABLE `joined` (
  {cols}
) WITH (
  'connector' = 'filesystem',
  'path' = '{file_uri(path)}',
  'format' = 'json'
)"""


def join_sql(window_ms, payload):
    select = ",\n  ".join(f"{e} AS `{n}`" for n, _, e in output_columns(payload))
    return f"""INSERT INTO `joined`
SELECT
  {select}
FROM `imp` AS i
LEFT JOIN `clk` AS c
  ON i.`request_id` = c.`request_id`
 AND c.`rt` BETWEEN i.`rt` AND i.`rt` + {sql_interval(window_ms)}"""


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 22)
            if not b:
                return n
            n += b.count(b"\n")


def proc_children(pid):
    """Every descendant process id of `pid` (from /proc)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def proc_usage(pid):
    """(cpu seconds, peak RSS in MiB) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as f:
            hwm = next((int(l.split()[1]) for l in f if l.startswith("VmHWM:")), 0)
        tck = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tck, hwm / 1024
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_seconds():
    """CPU seconds all CPUs spent busy since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_seconds():
    """CPU seconds of this process and every process it started."""
    total = 0.0
    for pid in [os.getpid()] + proc_children(os.getpid()):
        u = proc_usage(pid)
        if u:
            total += u[0]
    return total


def read_flink_output(out_dir):
    """Per request id: [rows with a click, rows without one]; and stats."""
    per = {}
    files = committed = 0
    uncommitted = []
    rows = 0
    for path in sorted(glob.glob(os.path.join(out_dir, "**", "*"), recursive=True)):
        if os.path.isdir(path):
            continue
        base = os.path.basename(path)
        files += 1
        if base.startswith(".") or base.startswith("_"):
            # In-progress or pending files of the file sink: not committed.
            uncommitted.append(base)
            continue
        committed += 1
        with open(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                v = loads(line)
                rows += 1
                slot = per.get(v["request_id"])
                if slot is None:
                    slot = per[v["request_id"]] = [0, 0]
                slot[0 if v.get("click_ts") is not None else 1] += 1
    return per, {"files": files, "committed_files": committed, "uncommitted_files": uncommitted, "rows": rows}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impressions", required=True, help="JSON lines of join-impression records")
    p.add_argument("--clicks", required=True, help="JSON lines of join-click records")
    p.add_argument("--out", required=True, help="canonical output: request_id<TAB>matched_clicks, sorted")
    p.add_argument("--parallelism", type=int, default=1, help="parallelism of every operator = task slots (default 1)")
    p.add_argument("--window-ms", type=int, default=3_600_000)
    p.add_argument("--out-of-orderness-ms", type=int, default=5_000)
    p.add_argument(
        "--payload",
        choices=["full", "keys"],
        default="full",
        help="full: read every field and write the impression's fields with the click's (the training rows; "
        "default); keys: read and write only request_id and ts",
    )
    p.add_argument("--state-backend", choices=["hashmap", "rocksdb"], default="hashmap", help="default: hashmap, Flink's own default")
    p.add_argument("--heap", default="4g", help="-Xmx of the JVM that runs the mini-cluster (default 4g; JVM_ARGS overrides)")
    p.add_argument("--tmp-dir", default=None, help="where Flink's output, logs and state go (default: a new temporary folder)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (Flink's raw output and logs)")
    p.add_argument("--check", action="store_true", help="also compute the reference (sjoin_reference.py) and report exact: true/false")
    a = p.parse_args()
    for f in (a.impressions, a.clicks):
        if not os.path.isfile(f):
            p.error(f"no such file: {f}")

    work = tempfile.mkdtemp(prefix="sjoin-flink-", dir=a.tmp_dir)
    out_dir = os.path.join(work, "out")
    log_dir = os.path.join(work, "log")
    os.makedirs(log_dir)
    os.environ.setdefault("FLINK_LOG_DIR", log_dir)
    jdk = "/usr/lib/jvm/java-17-openjdk-amd64"
    if "JAVA_HOME" not in os.environ and os.path.isdir(jdk):
        os.environ["JAVA_HOME"] = jdk
    # The gateway JVM runs the whole mini-cluster (job manager and task
    # manager threads): its heap is the job's memory.
    os.environ.setdefault("JVM_ARGS", f"-Xms{a.heap} -Xmx{a.heap}")
    ok = False
    try:
        result = run(a, work, out_dir, log_dir)
        ok = result["exact"] is not False and not result["uncommitted_files"]
        print("RESULT " + json.dumps(result), flush=True)
    finally:
        if a.keep_tmp or not ok:
            print(f"kept {work} (Flink's output and logs)", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


def run(a, work, out_dir, log_dir):
    import pyflink.table  # noqa: F401 (its import is timed as seconds_import)
    from pyflink.version import __version__ as flink_version

    t_import = time.monotonic()
    load_before = os.getloadavg()
    t_env = table_env(a.parallelism, work, {"state.backend.type": a.state_backend})
    t_env_ready = time.monotonic()

    fields_imp = IMPRESSION_FIELDS if a.payload == "full" else KEY_FIELDS
    fields_clk = CLICK_FIELDS if a.payload == "full" else KEY_FIELDS
    t_env.execute_sql(source_ddl("imp", a.impressions, fields_imp, a.out_of_orderness_ms))
    t_env.execute_sql(source_ddl("clk", a.clicks, fields_clk, a.out_of_orderness_ms))
    t_env.execute_sql(sink_ddl(out_dir, a.payload))
    query = join_sql(a.window_ms, a.payload)
    plan = t_env.explain_sql(query)
    join_op = "IntervalJoin" in plan

    t_submit = time.monotonic()
    busy_submit, own_submit = machine_busy_seconds(), own_cpu_seconds()
    table_result = t_env.execute_sql(query)
    job_client = table_result.get_job_client()
    table_result.wait()
    t_done = time.monotonic()
    busy_done, own_done = machine_busy_seconds(), own_cpu_seconds()
    net_runtime_ms = None
    try:
        net_runtime_ms = job_client.get_job_execution_result().result().get_net_runtime()
    except Exception as e:  # best effort: reported as null
        print(f"(no net runtime: {e})", file=sys.stderr)

    # CPU and peak RSS of the JVM(s) this script started, before they exit.
    jvm = [u for u in (proc_usage(c) for c in proc_children(os.getpid())) if u]
    jvm_cpu = sum(u[0] for u in jvm)
    jvm_rss = max((u[1] for u in jvm), default=0.0)

    per, out_stats = read_flink_output(out_dir)
    counts = {rid: c[0] for rid, c in per.items()}
    mixed = sum(1 for c in per.values() if c[0] and c[1])  # a NULL row and matches
    repeated_null = sum(1 for c in per.values() if c[1] > 1)
    with open(a.out, "w", encoding="utf-8", newline="\n") as f:
        for rid in sorted(counts, key=lambda s: s.encode("utf-8")):
            f.write(f"{rid}\t{counts[rid]}\n")
    t_canonical = time.monotonic()

    result = {
        "engine": "flink",
        "flink_version": flink_version,
        "api": "pyflink table api / sql (streaming mode, interval join)",
        "parallelism": a.parallelism,
        "state_backend": a.state_backend,
        "payload": a.payload,
        "jvm_args": os.environ.get("JVM_ARGS", ""),
        "window_ms": a.window_ms,
        "out_of_orderness_ms": a.out_of_orderness_ms,
        "interval_join_in_plan": join_op,
        "seconds_total": round(t_done - T_START, 3),
        "seconds_startup": round(t_env_ready - T_START, 3),
        "seconds_import": round(t_import - T_START, 3),
        "seconds_job": round(t_done - t_submit, 3),
        "seconds_job_net_runtime": None if net_runtime_ms is None else net_runtime_ms / 1000,
        "seconds_read_back": round(t_canonical - t_done, 3),
        "seconds_to_canonical_out": round(t_canonical - T_START, 3),
        "impressions_in": count_lines(a.impressions),
        "clicks_in": count_lines(a.clicks),
        "output_rows": out_stats["rows"],
        "impressions_out": len(per),
        "matched_pairs": sum(counts.values()),
        "matched_impressions": sum(1 for c in counts.values() if c),
        "unmatched_rows": sum(c[1] for c in per.values()),
        "impressions_with_null_and_matches": mixed,
        "impressions_with_repeated_null_row": repeated_null,
        "output_files": out_stats["committed_files"],
        "uncommitted_files": out_stats["uncommitted_files"],
        "jvm_cpu_seconds": round(jvm_cpu, 2),
        "jvm_peak_rss_mib": round(jvm_rss, 1),
        # Other work on the machine skews wall times: the 1-minute load
        # average at the start and the end of the run, and the JVM's CPU time.
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        # CPU seconds that other processes used on this machine while the job
        # ran (all CPUs busy time minus this script's and its JVM's): near 0
        # when the machine was quiet.
        "other_cpu_seconds_during_job": None
        if busy_submit is None or busy_done is None
        else round(max(0.0, (busy_done - busy_submit) - (own_done - own_submit)), 1),
        "exact": None,
    }
    result["input_events_per_s_job"] = round((result["impressions_in"] + result["clicks_in"]) / max(result["seconds_job"], 1e-9))
    if a.check:
        sys.path.insert(0, HERE)
        import sjoin_reference

        t0 = time.monotonic()
        expected = sjoin_reference.reference(a.impressions, a.clicks, a.window_ms)
        diff = [rid for rid in expected.keys() | counts.keys() if expected.get(rid) != counts.get(rid)]
        result["exact"] = not diff and not mixed and not repeated_null
        result["mismatched_request_ids"] = len(diff)
        result["mismatch_examples"] = sorted(diff)[:5]
        result["expected_matched_pairs"] = sum(expected.values())
        result["seconds_check"] = round(time.monotonic() - t0, 3)
    return result


if __name__ == "__main__":
    sys.exit(main())
