-- The Airbyte objects `cronbyte apply` resolved or created, by kind and name, with the id
-- Airbyte gave them: what a declared name stands for. Times are epoch milliseconds.
CREATE TABLE airbyte_objects (
    kind       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    airbyte_id TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);
