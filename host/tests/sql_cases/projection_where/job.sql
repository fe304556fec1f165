CREATE TABLE events (id STRING, status STRING, dur BIGINT, user JSON)
  WITH ('connector' = 'file', 'path' = 'events.jsonl');
CREATE TABLE out (id STRING, uid STRING, dur_s DOUBLE, kind STRING) WITH ('connector' = 'file', 'path' = 'out.jsonl');
INSERT INTO out
SELECT e.id, e.user.id AS uid, dur / 1000.0 AS dur_s,
       CASE WHEN dur > 100 THEN 'slow' ELSE 'fast' END AS kind
FROM events AS e
WHERE status = 'ok' AND CAST(dur AS BIGINT) > 10;
