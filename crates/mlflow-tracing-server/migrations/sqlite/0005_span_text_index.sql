-- A trigram index of span content for `trace.text` and `span.content` LIKE / ILIKE, so a search for a word
-- reads the few spans holding it instead of every span of every trace it scans.
-- Contentless (the text stays once, in spans.content) and without positions (detail = none): the index only
-- says which span rowids hold every trigram of a pattern, and the search checks those spans' content.
-- Indexing costs far more than storing a span, so the writer fills the index when it has no writes waiting,
-- oldest spans first; span_text_progress says how far it got, and a search reads the spans past that point
-- directly. The triggers keep what is already indexed in step with later changes.

CREATE VIRTUAL TABLE span_text USING fts5 (
    content,
    content = '',
    contentless_delete = 1,
    detail = none,
    tokenize = 'trigram'
);

CREATE TABLE span_text_progress (indexed_through INTEGER NOT NULL);
INSERT INTO span_text_progress (indexed_through) VALUES (0);

-- A rowid at or below the mark is reused only after the newest spans were deleted; index it at once.
CREATE TRIGGER span_text_after_insert AFTER INSERT ON spans
WHEN new.rowid <= (SELECT indexed_through FROM span_text_progress) BEGIN
    INSERT INTO span_text (rowid, content) VALUES (new.rowid, new.content);
END;

CREATE TRIGGER span_text_after_update AFTER UPDATE OF content ON spans
WHEN old.rowid <= (SELECT indexed_through FROM span_text_progress) BEGIN
    DELETE FROM span_text WHERE rowid = old.rowid;
    INSERT INTO span_text (rowid, content) VALUES (new.rowid, new.content);
END;

CREATE TRIGGER span_text_after_delete AFTER DELETE ON spans
WHEN old.rowid <= (SELECT indexed_through FROM span_text_progress) BEGIN
    DELETE FROM span_text WHERE rowid = old.rowid;
END;
