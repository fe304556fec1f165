-- Flink's inner interval join: a row per (view, click) pair whose times satisfy the bounds.
CREATE TABLE views (uid STRING NOT NULL, ts BIGINT, page STRING, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'views.jsonl');
CREATE TABLE clicks (uid STRING NOT NULL, ts BIGINT, what STRING, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'clicks.jsonl');
CREATE TABLE pairs WITH ('connector' = 'file', 'path' = 'pairs.jsonl');
CREATE TABLE strict WITH ('connector' = 'file', 'path' = 'strict.jsonl');

-- Both bounds inclusive: c.ts in [v.ts - 1 s, v.ts + 5 s].
INSERT INTO pairs
SELECT v.uid, v.ts AS view_ts, v.page, c.ts AS click_ts, c.what
FROM views AS v JOIN clicks AS c
  ON v.uid = c.uid AND c.ts BETWEEN v.ts - INTERVAL '1' SECOND AND v.ts + INTERVAL '5' SECOND;

-- Written the other way round, the upper bound strict: c.ts in [v.ts, v.ts + 5 s).
INSERT INTO strict
SELECT v.uid, v.ts AS view_ts, c.what
FROM views AS v INNER JOIN clicks AS c
  ON c.uid = v.uid AND v.ts <= c.ts AND c.ts < v.ts + INTERVAL '5' SECOND;
