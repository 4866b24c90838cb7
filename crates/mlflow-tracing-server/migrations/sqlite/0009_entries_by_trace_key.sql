-- Tags and metadata name their trace by `trace_key` instead of its id.
-- - A search driven by a rare tag or metadata value reads the matching keys from the (key, value) index alone
--   and finds each trace by its integer key: one B-tree descent per candidate instead of two (id index, then
--   row).
-- - A new trace's entries append to the end of the primary key instead of dirtying a leaf at a random place
--   (trace ids are random).
-- Runs with foreign keys off (see `migrate`): dropping the old tables must not cascade.

CREATE TABLE trace_tags_keyed (
    trace_key INTEGER NOT NULL REFERENCES traces (trace_key) ON DELETE CASCADE,
    key       TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (trace_key, key)
) WITHOUT ROWID;

INSERT INTO trace_tags_keyed (trace_key, key, value)
SELECT t.trace_key, x.key, x.value FROM trace_tags x JOIN traces t ON t.trace_id = x.trace_id;

CREATE TABLE trace_metadata_keyed (
    trace_key INTEGER NOT NULL REFERENCES traces (trace_key) ON DELETE CASCADE,
    key       TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (trace_key, key)
) WITHOUT ROWID;

INSERT INTO trace_metadata_keyed (trace_key, key, value)
SELECT t.trace_key, x.key, x.value FROM trace_metadata x JOIN traces t ON t.trace_id = x.trace_id;

DROP TABLE trace_tags;
DROP TABLE trace_metadata;
ALTER TABLE trace_tags_keyed RENAME TO trace_tags;
ALTER TABLE trace_metadata_keyed RENAME TO trace_metadata;

CREATE INDEX trace_tags_by_value ON trace_tags (key, value);
CREATE INDEX trace_metadata_by_value ON trace_metadata (key, value);
