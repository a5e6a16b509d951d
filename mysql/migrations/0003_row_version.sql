-- A row version for entity tags (ETag / If-Match, docs/api.md v1.1): every write sets a new random
-- value, so a tag names one state of one item (a restore brings a state back with its own tag).
-- Rows from before this migration start at 0, their first state.
-- ADD COLUMN at the end with a constant default: INSTANT, no rebuild, no lock wait.
ALTER TABLE items
    ADD COLUMN version BIGINT UNSIGNED NOT NULL DEFAULT 0,
    ALGORITHM = INSTANT;
