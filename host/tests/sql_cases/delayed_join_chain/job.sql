-- A 3-way delayed join (one window-join over three inputs), and an INNER delayed join on the same sources.
CREATE TABLE impressions (request_id STRING NOT NULL, ts BIGINT, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'impressions.jsonl');
CREATE TABLE clicks (rid STRING NOT NULL, ts BIGINT, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'clicks.jsonl');
CREATE TABLE likes (rid STRING NOT NULL, ts BIGINT, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'likes.jsonl');
CREATE TABLE chain WITH ('connector' = 'file', 'path' = 'chain.jsonl');
CREATE TABLE matched WITH ('connector' = 'file', 'path' = 'matched.jsonl');

INSERT INTO chain
SELECT i.request_id, c.count AS clicks, l.count AS likes, c.count + l.count > 0 AS engaged
FROM impressions AS i
  LEFT INTERVAL '10' SECOND WINDOW JOIN clicks AS c ON i.request_id = c.rid
  LEFT INTERVAL '10' SECOND WINDOW JOIN likes AS l ON i.request_id = l.rid;

INSERT INTO matched
SELECT * FROM impressions AS i
  INNER INTERVAL '10' SECOND WINDOW JOIN clicks AS c ON i.request_id = c.rid;
