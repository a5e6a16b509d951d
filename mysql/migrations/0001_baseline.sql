-- Baseline: the items table as release v1 created it (mysql/schema.sql before migrations).
-- IF NOT EXISTS: on a database made by v1 this changes nothing and only records version 1;
-- on an empty one it builds the table, so both reach version 1 by the same path.
CREATE TABLE IF NOT EXISTS items (
    id          INT NOT NULL AUTO_INCREMENT,
    name        VARCHAR(255) NOT NULL,
    description TEXT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
