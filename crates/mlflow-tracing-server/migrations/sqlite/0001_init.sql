-- Experiments, trace records (info, tags, metadata) and spans. Spans are stored once, as the REST v3 JSON
-- the API returns, beside the columns search needs.

CREATE TABLE experiments (
    experiment_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT    NOT NULL UNIQUE,
    artifact_location TEXT    NOT NULL,
    lifecycle_stage   TEXT    NOT NULL DEFAULT 'active',
    creation_time     INTEGER NOT NULL,
    last_update_time  INTEGER NOT NULL
);

CREATE TABLE experiment_tags (
    experiment_id INTEGER NOT NULL REFERENCES experiments (experiment_id) ON DELETE CASCADE,
    key           TEXT    NOT NULL,
    value         TEXT    NOT NULL,
    PRIMARY KEY (experiment_id, key)
) WITHOUT ROWID;

CREATE TABLE traces (
    trace_id            TEXT    PRIMARY KEY,
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

CREATE INDEX traces_by_experiment_time ON traces (experiment_id, request_time DESC, trace_id);

CREATE TABLE trace_tags (
    trace_id TEXT NOT NULL REFERENCES traces (trace_id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (trace_id, key)
) WITHOUT ROWID;

CREATE TABLE trace_metadata (
    trace_id TEXT NOT NULL REFERENCES traces (trace_id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (trace_id, key)
) WITHOUT ROWID;

CREATE TABLE spans (
    trace_id       TEXT    NOT NULL REFERENCES traces (trace_id) ON DELETE CASCADE,
    span_id        TEXT    NOT NULL,
    parent_span_id TEXT,
    name           TEXT    NOT NULL,
    span_type      TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    start_time     INTEGER NOT NULL,
    end_time       INTEGER,
    content        TEXT    NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;

INSERT INTO experiments (experiment_id, name, artifact_location, creation_time, last_update_time)
VALUES (0, 'Default', 'mlflow-artifacts:/0', CAST(unixepoch('subsec') * 1000 AS INTEGER), CAST(unixepoch('subsec') * 1000 AS INTEGER));
