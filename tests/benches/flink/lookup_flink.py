#!/usr/bin/env python3
"""Dimension lookups on Apache Flink: the baseline of streamhost's tests/benches/lookup.rs.

Each impression's user is looked up in Redis (`user:<user_id>`, a JSON string) and
the value added to the row, the way a PyFlink user without a Redis lookup
connector (none is reachable from PyPI) writes it: a vectorized (pandas) Python
UDF that asks Redis for a whole Arrow batch of keys with one MGET (redis-py),
in PyFlink's Table API, streaming mode, a local mini-cluster. The impressions
are a JSON-lines file read with the filesystem connector; the rows go to the
blackhole connector.

    PY=$(bash tests/benches/flink/setup.sh | tail -1)
    $PY tests/benches/flink/lookup_flink.py --impressions FILE --redis-port P --parallelism 2

Prints one line `RESULT {json}`: rows, seconds (from the job's submission to its
end, the JVM's start excluded), rows_per_s, found (rows the UDF found a value for,
counted by a second, summing job), and the whole process's wall seconds.
"""
import argparse
import json
import os
import sys
import tempfile
import time

T_START = time.monotonic()

IMP_DDL = """CREATE TEMPORARY TABLE imp (
  `event` STRING, `ts` BIGINT, `request_id` STRING, `user_id` STRING, `item_id` STRING,
  `device` STRING, `app_version` STRING, `page` STRING, `position` INT
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json', 'json.ignore-parse-errors' = 'false')"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impressions", required=True, help="JSON lines of join-impression records")
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--arrow-batch", type=int, default=1000, help="rows per Arrow batch handed to the UDF (python.fn-execution.arrow.batch.size)")
    p.add_argument("--heap", default="2g")
    a = p.parse_args()

    work = tempfile.mkdtemp(prefix="lookup-flink-")
    os.environ.setdefault("FLINK_LOG_DIR", os.path.join(work, "log"))
    os.environ.setdefault("JVM_ARGS", f"-Xmx{a.heap}")
    from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
    from pyflink.table.udf import udf

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("parallelism.default", str(a.parallelism))
    conf.set("python.fn-execution.arrow.batch.size", str(a.arrow_batch))
    conf.set("python.fn-execution.bundle.size", str(a.arrow_batch * 10))
    conf.set("python.executable", sys.executable)

    port = a.redis_port

    @udf(result_type=DataTypes.STRING(), func_type="pandas")
    def user_features(user_id):
        import pandas as pd
        import redis

        global _redis
        try:
            client = _redis
        except NameError:
            client = _redis = redis.Redis(host="127.0.0.1", port=port)
        values = client.mget([f"user:{u}" for u in user_id])
        return pd.Series([v.decode() if v is not None else None for v in values])

    env.create_temporary_system_function("user_features", user_features)
    path = "file://" + os.path.abspath(a.impressions)
    env.execute_sql(IMP_DDL.format(path=path))
    env.execute_sql("""CREATE TEMPORARY TABLE enriched (
  `request_id` STRING, `ts` BIGINT, `user_id` STRING, `item_id` STRING, `device` STRING,
  `page` STRING, `position` INT, `user_features` STRING
) WITH ('connector' = 'blackhole')""")

    # The job measured: every impression with its user's features.
    started = time.monotonic()
    env.execute_sql("""INSERT INTO enriched
SELECT `request_id`, `ts`, `user_id`, `item_id`, `device`, `page`, `position`, user_features(`user_id`) FROM imp""").wait()
    seconds = time.monotonic() - started

    # A second job, in batch mode (its count comes out once), counts what the
    # UDF finds (the first writes nowhere to read back).
    batch = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    batch.get_config().set("parallelism.default", str(a.parallelism))
    batch.get_config().set("python.executable", sys.executable)
    batch.create_temporary_system_function("user_features", user_features)
    batch.execute_sql(IMP_DDL.format(path=path))
    rows = found = 0
    with batch.execute_sql("SELECT COUNT(*), COUNT(`f`) FROM (SELECT user_features(`user_id`) AS `f` FROM imp)").collect() as results:
        for r in results:
            rows, found = r[0], r[1]
    print(
        "RESULT "
        + json.dumps(
            {
                "rows": rows,
                "found": found,
                "seconds": round(seconds, 3),
                "rows_per_s": round(rows / seconds, 1) if seconds > 0 else None,
                "parallelism": a.parallelism,
                "arrow_batch": a.arrow_batch,
                "wall_seconds": round(time.monotonic() - T_START, 3),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
