#!/usr/bin/env python3
"""ETL filter/projection on Apache Flink: the baseline of streamhost's tests/benches/sql.rs.

The same query as the bench's SQL job, in Flink SQL (PyFlink's Table API,
streaming mode, local mini-cluster):

    SELECT request_id, user_id, item_id, LOWER(TRIM(device)) AS device, position + 1 AS pos
    FROM imps WHERE position <= 20 AND page = 'feed'

on a JSON-lines file of `impression` generator records (host/src/source/generator.rs)
read through the filesystem connector; the rows go through the filesystem
connector (json format) into the folder `--out`, as part files, which the
bench reads back (committed files only: names not starting with `.` or `_`).

Run with the venv that setup.sh prints:

    PY=$(bash tests/benches/flink/setup.sh | tail -1)
    $PY tests/benches/flink/etl_flink.py --input DIR/imps.jsonl --out DIR/flink-out --parallelism 2

Prints one line `RESULT {json}`: seconds_total (from the script's start to the
job's end: Python, JVM and mini-cluster start included), seconds_job (the
INSERT's submission to its end), output_rows and output_files.
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

# The columns the query reads, as the impression generator writes them.
INPUT_FIELDS = [
    ("request_id", "STRING"),
    ("user_id", "STRING"),
    ("item_id", "STRING"),
    ("device", "STRING"),
    ("position", "INT"),
    ("page", "STRING"),
]
OUTPUT_FIELDS = [
    ("request_id", "STRING"),
    ("user_id", "STRING"),
    ("item_id", "STRING"),
    ("device", "STRING"),
    ("pos", "INT"),
]
QUERY = """INSERT INTO `out`
SELECT `request_id`, `user_id`, `item_id`, LOWER(TRIM(`device`)) AS `device`, `position` + 1 AS `pos`
FROM `imps`
WHERE `position` <= 20 AND `page` = 'feed'"""


def table_ddl(name, path, fields, source):
    cols = ",\n  ".join(f"`{n}` {t}" for n, t in fields)
    options = {"connector": "filesystem", "path": file_uri(path), "format": "json"}
    if source:
        # A record without user_id (the generator's dirty records) reads as NULL.
        options.update({"json.fail-on-missing-field": "false", "json.ignore-parse-errors": "false"})
    with_ = ",\n  ".join(f"'{k}' = '{v}'" for k, v in options.items())
    return f"CREATE TEMPORARY TABLE `{name}` (\n  {cols}\n) WITH (\n  {with_}\n)"


def committed_files(out_dir):
    """(committed part files, names of uncommitted ones) under `out_dir`."""
    done, pending = [], []
    for path in sorted(glob.glob(os.path.join(out_dir, "**", "*"), recursive=True)):
        if os.path.isdir(path):
            continue
        base = os.path.basename(path)
        (pending if base.startswith((".", "_")) else done).append(path)
    return done, [os.path.basename(p) for p in pending]


def count_lines(paths):
    n = 0
    for path in paths:
        with open(path, "rb") as f:
            while True:
                b = f.read(1 << 22)
                if not b:
                    break
                n += b.count(b"\n")
    return n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="JSON lines of impression records")
    p.add_argument("--out", required=True, help="output folder (must not exist): Flink's part files")
    p.add_argument("--parallelism", type=int, default=1, help="parallelism of every operator = task slots (default 1)")
    p.add_argument("--heap", default="2g", help="-Xmx of the JVM that runs the mini-cluster (default 2g; JVM_ARGS overrides)")
    a = p.parse_args()
    if not os.path.isfile(a.input):
        p.error(f"no such file: {a.input}")
    if os.path.exists(a.out):
        p.error(f"{a.out} exists")

    work = tempfile.mkdtemp(prefix="etl-flink-")
    os.environ.setdefault("FLINK_LOG_DIR", os.path.join(work, "log"))
    jdk = "/usr/lib/jvm/java-17-openjdk-amd64"
    if "JAVA_HOME" not in os.environ and os.path.isdir(jdk):
        os.environ["JAVA_HOME"] = jdk
    os.environ.setdefault("JVM_ARGS", f"-Xms{a.heap} -Xmx{a.heap}")
    ok = False
    try:
        result = run(a, work)
        ok = not result["uncommitted_files"] and result["output_files"] > 0
        print("RESULT " + json.dumps(result), flush=True)
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} (Flink's logs)", file=sys.stderr)
    return 0 if ok else 1


def run(a, work):
    from pyflink.version import __version__ as flink_version

    t_env = table_env(a.parallelism, work)
    t_env_ready = time.monotonic()
    t_env.execute_sql(table_ddl("imps", a.input, INPUT_FIELDS, True))
    t_env.execute_sql(table_ddl("out", a.out, OUTPUT_FIELDS, False))

    t_submit = time.monotonic()
    t_env.execute_sql(QUERY).wait()
    t_done = time.monotonic()

    files, pending = committed_files(a.out)
    return {
        "engine": "flink",
        "flink_version": flink_version,
        "api": "pyflink table api / sql (streaming mode)",
        "parallelism": a.parallelism,
        "jvm_args": os.environ.get("JVM_ARGS", ""),
        "seconds_total": round(t_done - T_START, 3),
        "seconds_startup": round(t_env_ready - T_START, 3),
        "seconds_job": round(t_done - t_submit, 3),
        "output_rows": count_lines(files),
        "output_files": len(files),
        "uncommitted_files": pending,
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    sys.exit(main())
