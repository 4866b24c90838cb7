-- Assessments (feedback, expectations, issues) of traces, stored as the JSON the API speaks.

CREATE TABLE assessments (
    assessment_id TEXT    PRIMARY KEY,
    trace_id      TEXT    NOT NULL REFERENCES traces (trace_id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    create_time   INTEGER NOT NULL,
    content       TEXT    NOT NULL
);

CREATE INDEX assessments_by_trace ON assessments (trace_id, create_time);
