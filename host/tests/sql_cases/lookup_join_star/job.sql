CREATE TABLE events (uid STRING, n BIGINT) WITH ('connector' = 'file', 'path' = 'events.jsonl');
CREATE TABLE users (uid STRING, name STRING) WITH ('connector' = 'file', 'path' = 'users.jsonl');
CREATE TABLE out WITH ('connector' = 'file', 'path' = 'out.jsonl');
INSERT INTO out
SELECT * FROM events AS e
  LEFT JOIN users FOR SYSTEM_TIME AS OF PROCTIME() AS u ON e.uid = u.uid;
