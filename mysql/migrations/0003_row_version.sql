-- A row version for entity tags (ETag / If-Match, docs/api.md v1.1): every write gives its row a new
-- random version, so a tag names one state of one item (a restore brings a state back with its own
-- tag). Each statement can run again (IF NOT EXISTS, WHERE version = 0), as after a failure half-way.
--
-- The column: at the end with a constant default, INSTANT (no rebuild, no lock wait).
ALTER TABLE items
    ADD COLUMN IF NOT EXISTS version BIGINT UNSIGNED NOT NULL DEFAULT 0,
    ALGORITHM = INSTANT;
-- A row inserted without a version (the seed, SQL by hand, a worker of the release before) gets a
-- random one: no two items share a tag, so one item's tag never matches another. Metadata only.
ALTER TABLE items
    ALTER COLUMN version SET DEFAULT (CAST(CONV(LEFT(MD5(UUID()), 16), 16, 10) AS UNSIGNED)),
    ALGORITHM = INSTANT;
-- The rows already there: one pass (row locks for its duration; the entrypoint runs it before the
-- server serves).
UPDATE items SET version = DEFAULT(version) WHERE version = 0;
-- A write that leaves the version as it was (a worker of the release before, during a rolling
-- update or after a rollback of the api alone; an UPDATE by hand) still gives the row a new one, so
-- its old tag stops matching. The workers of this release always set a new version themselves.
CREATE TRIGGER IF NOT EXISTS items_new_version BEFORE UPDATE ON items FOR EACH ROW
    SET NEW.version = IF(NEW.version = OLD.version,
                         CAST(CONV(LEFT(MD5(UUID()), 16), 16, 10) AS UNSIGNED), NEW.version);
