-- Events copied as they are; the column list is the source's schema.
CREATE TABLE events (
  id STRING NOT NULL,
  n BIGINT,
  ts BIGINT,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'file', 'path' = 'events.jsonl');
CREATE TABLE out WITH ('connector' = 'file', 'path' = 'out.jsonl');
INSERT INTO out SELECT * FROM events;
