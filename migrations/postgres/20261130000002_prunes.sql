-- The newest retention cut: runs that ended before `before` may have been deleted,
-- as of `at`. One row, so `cronbyte history` can say why older runs are gone.
CREATE TABLE prunes (
    id     INTEGER     PRIMARY KEY CHECK (id = 1),
    before TIMESTAMPTZ NOT NULL,
    at     TIMESTAMPTZ NOT NULL
);
