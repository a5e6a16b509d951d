-- A row version for entity tags (ETag / If-Match, docs/api.md v1.1): every write sets a new random
-- value, so a tag names one state of one item (a restore brings a state back with its own tag).
-- ADD COLUMN at the end with a constant default: INSTANT, no rebuild, no lock wait.
ALTER TABLE items
    ADD COLUMN version BIGINT UNSIGNED NOT NULL DEFAULT 0,
    ALGORITHM = INSTANT;
-- The rows already there get random versions too, so that no two items share a tag (a client that
-- sent one item's tag for another would otherwise match). One pass over the table: on a large one,
-- row locks for its duration; the entrypoint runs it before the server serves.
UPDATE items SET version = CAST(CONV(LEFT(MD5(CONCAT(UUID(), '/', id)), 16), 16, 10) AS UNSIGNED)
    WHERE version = 0;
