-- Two INSERTs with the same delayed join: one window-join step (its state kept once) feeds both projections.
CREATE TABLE impressions (request_id STRING NOT NULL, ts BIGINT, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'impressions.jsonl');
CREATE TABLE clicks (rid STRING NOT NULL, ts BIGINT, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'clicks.jsonl');
CREATE TABLE positives WITH ('connector' = 'file', 'path' = 'positives.jsonl');
CREATE TABLE labels WITH ('connector' = 'file', 'path' = 'labels.jsonl');
INSERT INTO positives
SELECT i.request_id, c.ts AS click_ts FROM impressions AS i
  LEFT 10 SECOND WINDOW AND 1 SECOND DELAY JOIN clicks AS c ON i.request_id = c.rid
WHERE c.count > 0;
INSERT INTO labels
SELECT i.request_id, CASE WHEN c.count > 0 THEN 1 ELSE 0 END AS label FROM impressions AS i
  LEFT 10 SECOND WINDOW AND 1 SECOND DELAY JOIN clicks AS c ON i.request_id = c.rid;
