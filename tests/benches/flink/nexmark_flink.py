#!/usr/bin/env python3
"""Nexmark q5, q7, q11, q15, q16 in Flink SQL: the baseline of streamhost's tests/benches/nexmark.rs.

The queries are nexmark/nexmark's (nexmark-flink/src/main/resources/queries/), on a
JSON-lines file of bids the bench writes once with the Rust `nexmark` crate 0.2.0
(`auction, bidder, price, channel, url, date_time (epoch ms), extra`), read through
the filesystem connector, with Nexmark's watermark (4 s of out-of-orderness):

    dateTime AS CAST(TO_TIMESTAMP_LTZ(date_time, 3) AS TIMESTAMP(3)),   -- UTC session time zone
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND

Changes from the official text, all so that outputs can be compared with streamhost's:
- sinks are the filesystem connector (json) instead of `blackhole`;
- q5 also selects AuctionBids.starttime and endtime (which window each row is of);
- q7 selects B.date_time (epoch ms) where the official selects B.dateTime (the same instant);
- q15 and q16 are unbounded GROUP BYs (an updating changelog the filesystem sink refuses):
  here they group by a 1-day TUMBLE window instead (append-only; `day` is the window's
  start formatted 'yyyy-MM-dd', the same day since all windows are aligned to UTC midnight);
  the aggregates, FILTERs and DISTINCTs are the official ones;
- `dateTime` is quoted (Flink 2.3's parser refuses it bare);
- q11 uses the legacy SESSION group window as the official text does (if this Flink
  refuses it, `--session-tvf` runs the SESSION table-valued function instead).

After the job (not timed) the part files are read back and written as JSON lines to
`--canonical`, timestamps as epoch ms, for the bench to compare.

    PY=$(bash tests/benches/flink/setup.sh | tail -1)
    $PY tests/benches/flink/nexmark_flink.py --query q5 --input DIR/bids.jsonl --out DIR/flink-out \\
        --canonical DIR/flink-q5.jsonl --parallelism 2

Prints one line `RESULT {json}`: seconds_total (from the script's start to the job's
end: Python, JVM and mini-cluster start included), seconds_job, output_rows.
"""
import argparse
import calendar
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time

from flink_env import file_uri, table_env

T_START = time.monotonic()

BID_DDL = """CREATE TEMPORARY TABLE `bid` (
  `auction` BIGINT,
  `bidder` BIGINT,
  `price` BIGINT,
  `channel` STRING,
  `url` STRING,
  `date_time` BIGINT,
  `extra` STRING,
  `dateTime` AS CAST(TO_TIMESTAMP_LTZ(`date_time`, 3) AS TIMESTAMP(3)),
  WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json')"""

Q15_AGGS = """count(*) AS total_bids,
  count(*) filter (where price < 10000) AS rank1_bids,
  count(*) filter (where price >= 10000 and price < 1000000) AS rank2_bids,
  count(*) filter (where price >= 1000000) AS rank3_bids,
  count(distinct bidder) AS total_bidders,
  count(distinct bidder) filter (where price < 10000) AS rank1_bidders,
  count(distinct bidder) filter (where price >= 10000 and price < 1000000) AS rank2_bidders,
  count(distinct bidder) filter (where price >= 1000000) AS rank3_bidders,
  count(distinct auction) AS total_auctions,
  count(distinct auction) filter (where price < 10000) AS rank1_auctions,
  count(distinct auction) filter (where price >= 10000 and price < 1000000) AS rank2_auctions,
  count(distinct auction) filter (where price >= 1000000) AS rank3_auctions"""
Q15_FIELDS = [(n, "BIGINT") for n in [
    "total_bids", "rank1_bids", "rank2_bids", "rank3_bids",
    "total_bidders", "rank1_bidders", "rank2_bidders", "rank3_bidders",
    "total_auctions", "rank1_auctions", "rank2_auctions", "rank3_auctions"]]

# query -> (output columns, INSERT statement)
QUERIES = {
    "q5": ([("auction", "BIGINT"), ("num", "BIGINT"), ("starttime", "TIMESTAMP(3)"), ("endtime", "TIMESTAMP(3)")], """
INSERT INTO `out`
SELECT AuctionBids.auction, AuctionBids.num, AuctionBids.starttime, AuctionBids.endtime FROM (
  SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
  GROUP BY auction, window_start, window_end) AS AuctionBids
JOIN (
  SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime FROM (
    SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
    FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
    GROUP BY auction, window_start, window_end) AS CountBids
  GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids
ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
   AND AuctionBids.num >= MaxBids.maxn"""),
    "q7": ([("auction", "BIGINT"), ("bidder", "BIGINT"), ("price", "BIGINT"), ("date_time", "BIGINT"), ("extra", "STRING")], """
INSERT INTO `out`
SELECT B.auction, B.bidder, B.price, B.date_time, B.extra FROM bid B
JOIN (SELECT MAX(price) AS maxprice, window_end as dateTime
      FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
      GROUP BY window_start, window_end) B1
ON B.price = B1.maxprice WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime"""),
    "q11": ([("bidder", "BIGINT"), ("bid_count", "BIGINT"), ("starttime", "TIMESTAMP(3)"), ("endtime", "TIMESTAMP(3)")], """
INSERT INTO `out`
SELECT B.bidder, count(*) as bid_count,
       SESSION_START(B.dateTime, INTERVAL '10' SECOND) as starttime,
       SESSION_END(B.dateTime, INTERVAL '10' SECOND) as endtime
FROM bid B GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND)"""),
    "q15": ([("day", "STRING")] + Q15_FIELDS, f"""
INSERT INTO `out`
SELECT DATE_FORMAT(window_start, 'yyyy-MM-dd') as `day`,
  {Q15_AGGS}
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' DAY))
GROUP BY window_start, window_end"""),
    "q16": ([("channel", "STRING"), ("day", "STRING"), ("minute", "STRING")] + Q15_FIELDS, f"""
INSERT INTO `out`
SELECT channel, DATE_FORMAT(window_start, 'yyyy-MM-dd') as `day`,
  max(DATE_FORMAT(dateTime, 'HH:mm')) as `minute`,
  {Q15_AGGS}
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' DAY))
GROUP BY channel, window_start, window_end"""),
}

Q11_SESSION_TVF = """
INSERT INTO `out`
SELECT bidder, count(*) as bid_count, window_start as starttime, window_end as endtime
FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end"""

TS = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z?$")


def to_ms(text):
    """A TIMESTAMP(3) of the json format ('yyyy-MM-dd HH:mm:ss[.fff]', UTC) as epoch ms."""
    m = TS.match(text)
    if not m:
        raise ValueError(f"not a timestamp: {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = (m.group(7) or "0").ljust(3, "0")[:3]
    return calendar.timegm((y, mo, d, h, mi, s)) * 1000 + int(frac)


def committed_files(out_dir):
    done, pending = [], []
    for path in sorted(glob.glob(os.path.join(out_dir, "**", "*"), recursive=True)):
        if os.path.isdir(path):
            continue
        base = os.path.basename(path)
        (pending if base.startswith((".", "_")) else done).append(path)
    return done, [os.path.basename(p) for p in pending]


def out_ddl(path, fields):
    cols = ",\n  ".join(f"`{n}` {t}" for n, t in fields)
    return f"CREATE TEMPORARY TABLE `out` (\n  {cols}\n) WITH ('connector' = 'filesystem', 'path' = '{file_uri(path)}', 'format' = 'json')"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--query", required=True, choices=sorted(QUERIES))
    p.add_argument("--input", required=True, help="JSON lines of bids")
    p.add_argument("--out", required=True, help="output folder (must not exist): Flink's part files")
    p.add_argument("--canonical", required=True, help="the rows as JSON lines, timestamps as epoch ms")
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--session-tvf", action="store_true", help="q11 with the SESSION table-valued function")
    p.add_argument("--heap", default="2g", help="-Xmx of the mini-cluster's JVM (JVM_ARGS overrides)")
    a = p.parse_args()
    if not os.path.isfile(a.input):
        p.error(f"no such file: {a.input}")
    if os.path.exists(a.out):
        p.error(f"{a.out} exists")

    work = tempfile.mkdtemp(prefix="nexmark-flink-")
    os.environ.setdefault("FLINK_LOG_DIR", os.path.join(work, "log"))
    jdk = "/usr/lib/jvm/java-17-openjdk-amd64"
    if "JAVA_HOME" not in os.environ and os.path.isdir(jdk):
        os.environ["JAVA_HOME"] = jdk
    os.environ.setdefault("JVM_ARGS", f"-Xms{a.heap} -Xmx{a.heap}")
    ok = False
    try:
        result = run(a, work)
        ok = not result["uncommitted_files"]
        print("RESULT " + json.dumps(result), flush=True)
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} (Flink's logs)", file=sys.stderr)
    return 0 if ok else 1


def run(a, work):
    from pyflink.version import __version__ as flink_version

    fields, query = QUERIES[a.query]
    if a.query == "q11" and a.session_tvf:
        query = Q11_SESSION_TVF
    # Flink 2.3's parser takes a bare `dateTime` as the start of a type name.
    query = query.replace("dateTime", "`dateTime`")
    t_env = table_env(a.parallelism, work, {"table.local-time-zone": "UTC"})
    t_env_ready = time.monotonic()
    t_env.execute_sql(BID_DDL.format(path=file_uri(a.input)))
    t_env.execute_sql(out_ddl(a.out, fields))
    plan = t_env.explain_sql(query)

    t_submit = time.monotonic()
    t_env.execute_sql(query).wait()
    t_done = time.monotonic()

    files, pending = committed_files(a.out)
    ts_fields = [n for n, t in fields if t.startswith("TIMESTAMP")]
    rows = 0
    with open(a.canonical, "w") as out:
        for path in files:
            with open(path) as f:
                for line in f:
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    for n in ts_fields:
                        row[n] = to_ms(row[n])
                    out.write(json.dumps(row, sort_keys=True) + "\n")
                    rows += 1
    # The physical plan's operators, for the report (e.g. a window join or a regular join in q5).
    physical = plan.split("== Optimized Physical Plan ==")[-1].split("== Optimized Execution Plan ==")[0]
    operators = sorted(set(re.findall(r"^\s*[+-]*\s*(\w+)\(", physical, re.M)))
    return {
        "engine": "flink",
        "flink_version": flink_version,
        "query": a.query,
        "session_tvf": bool(a.query == "q11" and a.session_tvf),
        "parallelism": a.parallelism,
        "jvm_args": os.environ.get("JVM_ARGS", ""),
        "seconds_total": round(t_done - T_START, 3),
        "seconds_startup": round(t_env_ready - T_START, 3),
        "seconds_job": round(t_done - t_submit, 3),
        "output_rows": rows,
        "output_files": len(files),
        "uncommitted_files": pending,
        "plan_operators": operators,
    }


if __name__ == "__main__":
    sys.exit(main())
