-- Spans in insertion order (a rowid table) with a secondary index, so a new trace appends its spans to the
-- last pages instead of dirtying random leaf pages of a table keyed by random trace ids; the server-owned
-- location tags are derived when a record is read, not stored per trace.

CREATE TABLE spans_by_insertion (
    trace_id       TEXT    NOT NULL REFERENCES traces (trace_id) ON DELETE CASCADE,
    span_id        TEXT    NOT NULL,
    parent_span_id TEXT,
    name           TEXT    NOT NULL,
    span_type      TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    start_time     INTEGER NOT NULL,
    end_time       INTEGER,
    content        TEXT    NOT NULL
);

INSERT INTO spans_by_insertion (trace_id, span_id, parent_span_id, name, span_type, status, start_time, end_time, content)
SELECT trace_id, span_id, parent_span_id, name, span_type, status, start_time, end_time, content FROM spans;

DROP TABLE spans;
ALTER TABLE spans_by_insertion RENAME TO spans;
CREATE UNIQUE INDEX spans_by_trace ON spans (trace_id, span_id);

DELETE FROM trace_tags WHERE key IN ('mlflow.artifactLocation', 'mlflow.trace.spansLocation');
