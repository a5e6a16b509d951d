-- created_at: TIMESTAMP ends on 2038-01-19 (inserts fail after it); DATETIME holds UTC to 9999.
-- The runner sets the session time zone to +00:00, so each TIMESTAMP converts to its UTC value
-- (what the API has always shown). A type change rebuilds the table: ALGORITHM=COPY with
-- LOCK=SHARED, so reads go on and writes wait for it (about 1 s per 100,000 rows here).
-- The default is UTC whatever a session's time zone (the workers always send created_at).
-- Running it again changes nothing.
ALTER TABLE items
    MODIFY COLUMN created_at DATETIME NOT NULL DEFAULT (UTC_TIMESTAMP()),
    ALGORITHM = COPY, LOCK = SHARED;
