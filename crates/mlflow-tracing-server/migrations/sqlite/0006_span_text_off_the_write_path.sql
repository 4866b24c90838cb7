-- Keeps the text index out of the statements that store spans. A statement that may fire a trigger writing
-- to span_text enlists the index in every transaction and savepoint it runs in, which cost the writer about
-- a tenth of its time even though those triggers almost never fire. Instead:
-- - a span whose indexed content changes is listed in span_text_stale; the writer re-indexes it between
--   writes, and a search reads listed spans directly until then;
-- - deleting the newest spans lowers the indexer's mark to the newest span left, so a rowid SQLite reuses is
--   above the mark and indexed in turn like any new span.

DROP TRIGGER span_text_after_insert;
DROP TRIGGER span_text_after_update;
DROP TRIGGER span_text_after_delete;

CREATE TABLE span_text_stale (span_rowid INTEGER PRIMARY KEY);

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
