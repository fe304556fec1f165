-- The recommender's training samples in SQL: the same job as pipeline.json beside it.
-- Run from this folder: streamhost sql job.sql   (pipeline.json: streamhost sql --explain job.sql)
--
-- Impressions and clicks are cleaned by their ETL plugins, then every clean impression waits one hour of event
-- time for the clicks of its request and comes out once: with `click_count` > 0 and the last click's fields as
-- `click_<field>` (a positive), or with `click_count` = 0 (a negative).

SET 'name' = 'training-join';
SET 'dead_letter.path' = 'out/dead-letter.jsonl';
SET 'settings.state.dir' = 'out/state';
SET 'settings.admin.addr_file' = 'out/admin.addr';

CREATE TRANSFORM impression_cleaner AS '../../plugins/impression-cleaner';
CREATE TRANSFORM click_cleaner AS '../../plugins/click-cleaner';

-- Raw log lines; the cleaners parse and check them (their output's columns are theirs).
CREATE TABLE impressions (ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE)
  WITH ('connector' = 'file', 'path' = 'data/impressions.jsonl');
CREATE TABLE clicks (ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE)
  WITH ('connector' = 'file', 'path' = 'data/clicks.jsonl');

CREATE TABLE samples WITH ('connector' = 'file', 'path' = 'out/samples.jsonl');

INSERT INTO samples
SELECT *
FROM TABLE(impression_cleaner(impressions)) AS i
  LEFT INTERVAL '1' HOUR WINDOW JOIN TABLE(click_cleaner(clicks)) AS click
  ON i.request_id = click.request_id;
