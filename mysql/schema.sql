-- The items table. Run inside the application database (the caller selects it).
-- utf8mb4 end to end: names and descriptions are stored exactly as sent, emoji included.
CREATE TABLE IF NOT EXISTS items (
    id          INT NOT NULL AUTO_INCREMENT,
    name        VARCHAR(255) NOT NULL,
    description TEXT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
