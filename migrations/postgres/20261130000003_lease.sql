-- Leadership among the replicas that share this database. One row: the replica
-- that holds it is the active one until `expires_at` (the database's clock, so
-- the hosts' clocks never have to agree). `epoch` grows at every taking, and
-- every write of an active replica checks it still reads its own (fencing).
CREATE TABLE lease (
    id         INTEGER     PRIMARY KEY CHECK (id = 1),
    holder     TEXT,
    epoch      BIGINT      NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
INSERT INTO lease (id, holder, epoch, expires_at) VALUES (1, NULL, 0, '-infinity');

-- Every replica says it is alive at each renewal interval, with a hash of its
-- connection settings, so replicas can be counted and told when they differ.
CREATE TABLE replicas (
    id            TEXT        PRIMARY KEY,
    host          TEXT        NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    seen_at       TIMESTAMPTZ NOT NULL,
    settings_hash TEXT        NOT NULL
);
