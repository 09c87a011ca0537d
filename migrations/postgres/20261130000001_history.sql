-- The history on PostgreSQL: the same tables as the SQLite migrations build up to
-- 20261130000001, in one step (no PostgreSQL store predates them). Instants are
-- timestamptz at millisecond precision, the SQLite store's, so both backends read
-- back what they were given alike.

CREATE TABLE runs (
    id                  BIGSERIAL   PRIMARY KEY,
    connection          TEXT        NOT NULL,
    connection_id       TEXT        NOT NULL,
    instance            TEXT        NOT NULL DEFAULT 'default',
    trigger             TEXT        NOT NULL,
    scheduled_for       TIMESTAMPTZ NOT NULL,
    claimed_at          TIMESTAMPTZ NOT NULL,
    started_at          TIMESTAMPTZ,
    finished_at         TIMESTAMPTZ,
    status              TEXT        NOT NULL,
    job_id              BIGINT,
    attempts            INTEGER     NOT NULL DEFAULT 0,
    records_synced      BIGINT,
    bytes_synced        BIGINT,
    error               TEXT,
    retry_of            BIGINT      REFERENCES runs (id),
    cancel_requested_at TIMESTAMPTZ
);

-- One claim per (connection, tick): what makes a tick fire once across restarts and
-- replicas. Claims insert with ON CONFLICT ... DO NOTHING on it.
CREATE UNIQUE INDEX runs_one_per_tick ON runs (connection, scheduled_for)
    WHERE trigger IN ('schedule', 'dependency');
CREATE INDEX runs_by_first ON runs (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX runs_by_connection ON runs (connection, id);
CREATE INDEX runs_by_job ON runs (instance, job_id) WHERE job_id IS NOT NULL;
CREATE INDEX runs_open ON runs (status) WHERE status IN ('pending', 'running');
CREATE INDEX runs_by_finish ON runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE pauses (
    connection TEXT        PRIMARY KEY,
    paused_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE airbyte_objects (
    instance   TEXT        NOT NULL,
    kind       TEXT        NOT NULL,
    name       TEXT        NOT NULL,
    airbyte_id TEXT        NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (instance, kind, name)
);

CREATE TABLE store_checks (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    token BIGINT  NOT NULL
);

-- Sums per connection and final status, kept as runs end, so start-up reads a row
-- per pair instead of scanning the history.
CREATE TABLE run_totals (
    connection   TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    runs         BIGINT NOT NULL,
    records      BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    zero_records BIGINT NOT NULL,
    PRIMARY KEY (connection, status)
);

-- What the engine needs of each connection's past at start (newest tick, claim and
-- success; failures since that success), kept as runs are claimed and end.
CREATE TABLE connection_marks (
    connection   TEXT        PRIMARY KEY,
    last_tick    TIMESTAMPTZ,
    last_claimed TIMESTAMPTZ,
    last_success TIMESTAMPTZ,
    failures     INTEGER     NOT NULL DEFAULT 0
);

CREATE FUNCTION runs_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_totals AS t (connection, status, runs, records, bytes, zero_records)
    VALUES (NEW.connection, NEW.status, 1, coalesce(NEW.records_synced, 0),
            coalesce(NEW.bytes_synced, 0),
            CASE WHEN coalesce(NEW.records_synced, 0) = 0 THEN 1 ELSE 0 END)
    ON CONFLICT (connection, status) DO UPDATE SET
        runs = t.runs + 1,
        records = t.records + excluded.records,
        bytes = t.bytes + excluded.bytes,
        zero_records = t.zero_records + excluded.zero_records;
    RETURN NULL;
END $$;

CREATE TRIGGER run_totals_on_end AFTER UPDATE OF status ON runs
    FOR EACH ROW
    WHEN (OLD.status IN ('pending', 'running') AND NEW.status NOT IN ('pending', 'running'))
    EXECUTE FUNCTION runs_counted();

CREATE TRIGGER run_totals_on_insert AFTER INSERT ON runs
    FOR EACH ROW
    WHEN (NEW.status NOT IN ('pending', 'running'))
    EXECUTE FUNCTION runs_counted();

CREATE FUNCTION marks_on_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO connection_marks AS m (connection, last_tick, last_claimed, last_success, failures)
    VALUES (NEW.connection,
            CASE WHEN NEW.trigger = 'schedule' THEN NEW.scheduled_for END,
            NEW.claimed_at,
            CASE WHEN NEW.status = 'succeeded' THEN NEW.finished_at END,
            CASE WHEN NEW.status IN ('failed', 'timed_out', 'trigger_failed') THEN 1 ELSE 0 END)
    ON CONFLICT (connection) DO UPDATE SET
        last_tick = greatest(m.last_tick, excluded.last_tick),
        last_claimed = greatest(m.last_claimed, excluded.last_claimed),
        last_success = greatest(m.last_success, excluded.last_success),
        failures = CASE WHEN NEW.status = 'succeeded' THEN 0
                        ELSE m.failures + excluded.failures END;
    RETURN NULL;
END $$;

CREATE TRIGGER connection_marks_on_claim AFTER INSERT ON runs
    FOR EACH ROW EXECUTE FUNCTION marks_on_claim();

CREATE FUNCTION marks_on_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE connection_marks SET
        last_success = CASE WHEN NEW.status = 'succeeded'
                            THEN greatest(last_success, NEW.finished_at)
                            ELSE last_success END,
        failures = CASE WHEN NEW.status = 'succeeded' THEN 0
                        WHEN NEW.status IN ('failed', 'timed_out', 'trigger_failed') THEN failures + 1
                        ELSE failures END
    WHERE connection = NEW.connection;
    RETURN NULL;
END $$;

CREATE TRIGGER connection_marks_on_end AFTER UPDATE OF status ON runs
    FOR EACH ROW
    WHEN (OLD.status IN ('pending', 'running') AND NEW.status NOT IN ('pending', 'running'))
    EXECUTE FUNCTION marks_on_end();
