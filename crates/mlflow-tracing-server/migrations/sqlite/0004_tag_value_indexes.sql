-- Tag and metadata lookups by value, so a search by a rare tag (`tags.user = 'x'`) reads its few traces
-- instead of scanning an experiment's traces in time order.

CREATE INDEX trace_tags_by_value ON trace_tags (key, value);
CREATE INDEX trace_metadata_by_value ON trace_metadata (key, value);
