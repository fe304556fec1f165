#!/usr/bin/env python3
"""The SJoin reference: per impression, how many clicks match it.

A click matches an impression when they have the same `request_id` and
`imp.ts <= click.ts <= imp.ts + window_ms` (both bounds inclusive).
Writes the canonical file sjoin_flink.py writes: one line per impression
request id, `request_id<TAB>number_of_matched_clicks`, sorted by request id
(byte order). A request id that several impressions share gets one line with
the sum of their counts (the generators never repeat one).

    python3 sjoin_reference.py --impressions imp.jsonl --clicks clk.jsonl --out expected.tsv
"""
import argparse
import bisect
import json
import sys
import time

try:  # much faster where it is installed (PyFlink's venv has it)
    import orjson

    loads = orjson.loads
except ImportError:  # pragma: no cover
    loads = json.loads


def read_keys(path):
    """(request_id, ts) of every JSON line of `path`."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            v = loads(line)
            out.append((v["request_id"], int(v["ts"])))
    return out


def expected_counts(impressions, clicks, window_ms):
    """request_id -> matched clicks, for every impression's request id."""
    by_request = {}
    for rid, ts in clicks:
        by_request.setdefault(rid, []).append(ts)
    for times in by_request.values():
        times.sort()
    counts = {}
    for rid, ts in impressions:
        times = by_request.get(rid)
        n = 0
        if times:
            n = bisect.bisect_right(times, ts + window_ms) - bisect.bisect_left(times, ts)
        counts[rid] = counts.get(rid, 0) + n
    return counts


def write_canonical(counts, path):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rid in sorted(counts, key=lambda s: s.encode("utf-8")):
            f.write(f"{rid}\t{counts[rid]}\n")


def reference(impressions_path, clicks_path, window_ms):
    return expected_counts(read_keys(impressions_path), read_keys(clicks_path), window_ms)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impressions", required=True)
    p.add_argument("--clicks", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--window-ms", type=int, default=3_600_000)
    a = p.parse_args()
    t0 = time.monotonic()
    counts = reference(a.impressions, a.clicks, a.window_ms)
    write_canonical(counts, a.out)
    print(
        "REFERENCE "
        + json.dumps(
            {
                "impressions": len(counts),
                "matched_impressions": sum(1 for n in counts.values() if n),
                "matched_pairs": sum(counts.values()),
                "seconds": round(time.monotonic() - t0, 3),
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
