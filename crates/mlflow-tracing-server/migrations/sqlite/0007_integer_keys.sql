-- Integer keys for traces and spans.
-- - Spans name their trace by `trace_key`, the trace row's integer key, which grows as traces arrive: a new
--   trace's spans append to the last leaf of `spans_by_trace` instead of dirtying a leaf at a random place
--   (trace ids are random), one page less written per trace and per checkpoint, and the index entries shrink
--   from 35-character ids to small integers.
-- - `span_key` makes the span rowid explicit. The text index (span_text) names spans by rowid, and VACUUM
--   may renumber the rowids of a table without an INTEGER PRIMARY KEY; now it cannot.
-- Existing rows keep their rowids as keys, so the text index and its mark stay valid. Runs with foreign keys
-- off (see `migrate`): dropping the old tables must not cascade.

CREATE TABLE traces_keyed (
    trace_key           INTEGER PRIMARY KEY,
    trace_id            TEXT    NOT NULL UNIQUE,
    experiment_id       INTEGER NOT NULL REFERENCES experiments (experiment_id),
    client_request_id   TEXT,
    request_time        INTEGER NOT NULL,
    -- Latest span end seen, to derive the duration while the client has not sent its record.
    end_time            INTEGER,
    execution_duration  INTEGER,
    state               TEXT    NOT NULL,
    request_preview     TEXT,
    response_preview    TEXT,
    -- 1 once the client's own record (StartTraceV3 / EndTrace) arrived; spans then no longer change it.
    info_finalized      INTEGER NOT NULL DEFAULT 0
);

INSERT INTO traces_keyed (trace_key, trace_id, experiment_id, client_request_id, request_time, end_time,
                          execution_duration, state, request_preview, response_preview, info_finalized)
SELECT rowid, trace_id, experiment_id, client_request_id, request_time, end_time, execution_duration, state,
       request_preview, response_preview, info_finalized
FROM traces;

CREATE TABLE spans_keyed (
    span_key       INTEGER PRIMARY KEY,
    trace_key      INTEGER NOT NULL REFERENCES traces (trace_key) ON DELETE CASCADE,
    span_id        TEXT    NOT NULL,
    parent_span_id TEXT,
    name           TEXT    NOT NULL,
    span_type      TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    start_time     INTEGER NOT NULL,
    end_time       INTEGER,
    content        TEXT    NOT NULL
);

INSERT INTO spans_keyed (span_key, trace_key, span_id, parent_span_id, name, span_type, status, start_time,
                         end_time, content)
SELECT s.rowid, t.trace_key, s.span_id, s.parent_span_id, s.name, s.span_type, s.status, s.start_time,
       s.end_time, s.content
FROM spans s JOIN traces_keyed t ON t.trace_id = s.trace_id
ORDER BY s.rowid;

DROP TABLE spans;
DROP TABLE traces;
ALTER TABLE traces_keyed RENAME TO traces;
ALTER TABLE spans_keyed RENAME TO spans;

CREATE INDEX traces_by_experiment_time ON traces (experiment_id, request_time DESC, trace_id);
CREATE UNIQUE INDEX spans_by_trace ON spans (trace_key, span_id);

-- The text index's triggers went with the old table (see 0006).
CREATE TRIGGER span_text_after_update AFTER UPDATE OF content ON spans
WHEN old.content IS NOT new.content AND old.rowid <= (SELECT indexed_through FROM span_text_progress) BEGIN
    INSERT OR IGNORE INTO span_text_stale (span_rowid) VALUES (old.rowid);
END;

CREATE TRIGGER span_text_after_delete AFTER DELETE ON spans
WHEN old.rowid <= (SELECT indexed_through FROM span_text_progress) BEGIN
    DELETE FROM span_text WHERE rowid = old.rowid;
    DELETE FROM span_text_stale WHERE span_rowid = old.rowid;
    UPDATE span_text_progress
    SET indexed_through = MIN(indexed_through, (SELECT COALESCE(MAX(rowid), 0) FROM spans));
END;
