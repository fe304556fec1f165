CREATE TRANSFORM impression_cleaner AS 'plugins/impression-cleaner';
CREATE FUNCTION domain AS 'plugins/url-udf';
CREATE TABLE raw_impressions (line STRING) WITH ('connector' = 'stdin');
CREATE TABLE out WITH ('connector' = 'file', 'path' = 'out.jsonl');
INSERT INTO out
SELECT c.*, domain(extra.url) AS site FROM TABLE(impression_cleaner(raw_impressions)) AS c;
