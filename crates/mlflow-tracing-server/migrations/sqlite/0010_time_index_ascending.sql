-- The time index of traces ascends. Descending, every new trace (the newest time) went in at the index's left
-- edge, and SQLite packs the pages it splits from the left: the leftmost leaf was full again after each
-- split, so every trace split it anew and rewrote three leaves and their parent (3 to 4 pages per commit
-- under ingest). Ascending, new traces append at the right edge. The newest-first order that search uses by
-- default (request_time DESC, then trace_id ascending) is this index read backwards, hence trace_id DESC.

DROP INDEX traces_by_experiment_time;
CREATE INDEX traces_by_experiment_time ON traces (experiment_id, request_time, trace_id DESC);
