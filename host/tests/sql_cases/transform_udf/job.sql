CREATE TRANSFORM impression_cleaner AS 'plugins/impression-cleaner';
CREATE FUNCTION domain AS 'plugins/url-udf';
CREATE TABLE raw_impressions (line STRING) WITH ('connector' = 'stdin');
CREATE TABLE out WITH ('connector' = 'stdout');
INSERT INTO out
SELECT c.*, domain(url) AS site FROM TABLE(impression_cleaner(raw_impressions)) AS c;
