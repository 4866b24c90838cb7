-- A span whose indexed content changes twice before the writer re-indexes it is listed once. The trigger of
-- 0006 (recreated in 0007) said INSERT OR IGNORE, but a trigger's conflict clause gives way to that of the
-- statement firing it, and storing spans is an upsert that aborts on conflicts: the second change failed
-- with a UNIQUE error, and the whole request with it.

DROP TRIGGER span_text_after_update;

CREATE TRIGGER span_text_after_update AFTER UPDATE OF content ON spans
WHEN old.content IS NOT new.content AND old.rowid <= (SELECT indexed_through FROM span_text_progress)
     AND NOT EXISTS (SELECT 1 FROM span_text_stale WHERE span_rowid = old.rowid) BEGIN
    INSERT INTO span_text_stale (span_rowid) VALUES (old.rowid);
END;
