-- Per-connection sums of ended runs, kept by triggers as runs end, so the daemon
-- seeds its counters at start from a small table instead of scanning the history
-- (seconds on a million runs, milliseconds here).
CREATE TABLE run_totals (
    connection   TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    runs         INTEGER NOT NULL,
    records      INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    zero_records INTEGER NOT NULL,
    PRIMARY KEY (connection, status)
);

INSERT INTO run_totals (connection, status, runs, records, bytes, zero_records)
SELECT connection, status, count(*), coalesce(sum(records_synced), 0),
       coalesce(sum(bytes_synced), 0), sum(coalesce(records_synced, 0) = 0)
FROM runs
WHERE status NOT IN ('pending', 'running')
GROUP BY connection, status;

CREATE TRIGGER run_totals_on_end AFTER UPDATE OF status ON runs
WHEN old.status IN ('pending', 'running') AND new.status NOT IN ('pending', 'running')
BEGIN
    INSERT INTO run_totals (connection, status, runs, records, bytes, zero_records)
    VALUES (new.connection, new.status, 1, coalesce(new.records_synced, 0),
            coalesce(new.bytes_synced, 0), coalesce(new.records_synced, 0) = 0)
    ON CONFLICT (connection, status) DO UPDATE SET
        runs = runs + 1,
        records = records + excluded.records,
        bytes = bytes + excluded.bytes,
        zero_records = zero_records + excluded.zero_records;
END;

-- Rows written already ended (imports, tools) count too.
CREATE TRIGGER run_totals_on_insert AFTER INSERT ON runs
WHEN new.status NOT IN ('pending', 'running')
BEGIN
    INSERT INTO run_totals (connection, status, runs, records, bytes, zero_records)
    VALUES (new.connection, new.status, 1, coalesce(new.records_synced, 0),
            coalesce(new.bytes_synced, 0), coalesce(new.records_synced, 0) = 0)
    ON CONFLICT (connection, status) DO UPDATE SET
        runs = runs + 1,
        records = records + excluded.records,
        bytes = bytes + excluded.bytes,
        zero_records = zero_records + excluded.zero_records;
END;
