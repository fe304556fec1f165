CREATE TABLE impressions (request_id STRING NOT NULL, uid STRING, ts BIGINT,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
  WITH ('connector' = 'file', 'path' = 'impressions.jsonl');
CREATE TABLE clicks (request_id STRING NOT NULL, dwell_ms BIGINT, ts BIGINT, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'clicks.jsonl');
CREATE TABLE samples (request_id STRING, uid STRING, clicked BOOLEAN, dwell_ms BIGINT)
  WITH ('connector' = 'file', 'path' = 'samples.jsonl');
INSERT INTO samples
SELECT i.request_id, i.uid, c.count > 0 AS clicked, c.dwell_ms
FROM impressions AS i
  LEFT INTERVAL '30' MINUTE WINDOW AND INTERVAL '1' MINUTE DELAY JOIN clicks AS c
  ON i.request_id = c.request_id;
