-- A delayed join keyed on a nested field, then a lookup keyed on the joined click's field.
CREATE TABLE impressions (req JSON NOT NULL, ts BIGINT, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'impressions.jsonl');
CREATE TABLE clicks (request_id STRING NOT NULL, uid STRING, ts BIGINT, WATERMARK FOR ts AS ts)
  WITH ('connector' = 'file', 'path' = 'clicks.jsonl');
CREATE TABLE users (uid STRING, name STRING) WITH ('connector' = 'file', 'path' = 'users.jsonl');
CREATE TABLE out WITH ('connector' = 'file', 'path' = 'out.jsonl');
INSERT INTO out
SELECT i.req.id AS request_id, c.count AS clicks, c.uid, u.name AS clicker
FROM impressions AS i
  LEFT INTERVAL '10' SECOND WINDOW JOIN clicks AS c ON i.req.id = c.request_id
  LEFT JOIN users FOR SYSTEM_TIME AS OF PROCTIME() AS u ON c.uid = u.uid;
