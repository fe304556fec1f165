-- Two INSERTs read one source: it is read once.
CREATE TABLE events (id STRING, n BIGINT) WITH ('connector' = 'file', 'path' = 'events.jsonl');
CREATE TABLE copy_a WITH ('connector' = 'file', 'path' = 'a.jsonl');
CREATE TABLE copy_b WITH ('connector' = 'file', 'path' = 'b.jsonl', 'format' = 'value');
INSERT INTO copy_a SELECT * FROM events;
INSERT INTO copy_b SELECT * FROM events;
