CREATE TABLE impressions (request_id STRING NOT NULL, ts BIGINT, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'impressions.jsonl');
CREATE TABLE clicks (rid STRING NOT NULL, ts BIGINT, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'clicks.jsonl');
CREATE TABLE samples WITH ('connector' = 'file', 'path' = 'samples.jsonl');
INSERT INTO samples
SELECT * FROM impressions AS i
  LEFT 10 SECOND WINDOW AND 1 SECOND DELAY JOIN clicks AS c ON i.request_id = c.rid;
