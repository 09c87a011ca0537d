-- One row per run: a tick (or a manual trigger, or a retry) of one connection,
-- from the moment it is claimed to the job's end. Times are epoch milliseconds.
CREATE TABLE runs (
    id             INTEGER PRIMARY KEY,
    connection     TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    trigger        TEXT    NOT NULL,
    scheduled_for  INTEGER NOT NULL,
    claimed_at     INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER,
    status         TEXT    NOT NULL,
    job_id         INTEGER,
    attempts       INTEGER NOT NULL DEFAULT 0,
    records_synced INTEGER,
    bytes_synced   INTEGER,
    error          TEXT,
    retry_of       INTEGER REFERENCES runs (id)
);

-- A tick is claimed once, whatever happens to the daemon between ticks; so is a
-- run started because the connections it comes after succeeded.
CREATE UNIQUE INDEX runs_one_per_tick ON runs (connection, scheduled_for)
    WHERE trigger IN ('schedule', 'dependency');

-- Retries of a run, to count them.
CREATE INDEX runs_by_first ON runs (retry_of) WHERE retry_of IS NOT NULL;

-- `history --connection X`, newest first.
CREATE INDEX runs_by_connection ON runs (connection, id);

-- Which run follows a job.
CREATE INDEX runs_by_job ON runs (job_id) WHERE job_id IS NOT NULL;

-- What the daemon must take up again at start.
CREATE INDEX runs_open ON runs (status) WHERE status IN ('pending', 'running');

-- Windows of recent outcomes (success ratio).
CREATE INDEX runs_by_finish ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- Connections an operator paused: their ticks are not claimed until resumed.
CREATE TABLE pauses (
    connection TEXT PRIMARY KEY,
    paused_at  INTEGER NOT NULL
);
