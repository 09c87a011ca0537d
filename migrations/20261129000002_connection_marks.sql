-- What each connection's past says that the engine needs at start, kept by triggers
-- as runs are claimed and end: a start reads one row per connection instead of
-- grouping the whole history, and a failure streak outlives the process that saw it
-- (so the first success after a restart is still told as a recovery).
CREATE TABLE connection_marks (
    connection   TEXT    PRIMARY KEY,
    -- The newest instant claimed for a `schedule` run (epoch ms).
    last_tick    INTEGER,
    -- When its newest run of any kind was claimed.
    last_claimed INTEGER,
    -- When its newest succeeded run ended.
    last_success INTEGER,
    -- Runs that ended failed, timed_out or trigger_failed since the last success.
    failures     INTEGER NOT NULL DEFAULT 0
);

INSERT INTO connection_marks (connection, last_tick, last_claimed, last_success, failures)
SELECT r.connection,
       max(CASE WHEN r.trigger = 'schedule' THEN r.scheduled_for END),
       max(r.claimed_at),
       s.last_success,
       sum(r.status IN ('failed', 'timed_out', 'trigger_failed')
           AND r.finished_at > coalesce(s.last_success, -1))
FROM runs r
LEFT JOIN (SELECT connection, max(finished_at) AS last_success FROM runs
           WHERE status = 'succeeded' GROUP BY connection) s
       ON s.connection = r.connection
GROUP BY r.connection;

-- A claim; a row written already ended (imports, tools) counts as its end too.
CREATE TRIGGER connection_marks_on_claim AFTER INSERT ON runs
BEGIN
    INSERT INTO connection_marks (connection, last_tick, last_claimed, last_success, failures)
    VALUES (new.connection,
            CASE WHEN new.trigger = 'schedule' THEN new.scheduled_for END,
            new.claimed_at,
            CASE WHEN new.status = 'succeeded' THEN new.finished_at END,
            new.status IN ('failed', 'timed_out', 'trigger_failed'))
    ON CONFLICT (connection) DO UPDATE SET
        last_tick = max(coalesce(last_tick, excluded.last_tick),
                        coalesce(excluded.last_tick, last_tick)),
        last_claimed = max(coalesce(last_claimed, excluded.last_claimed), excluded.last_claimed),
        last_success = max(coalesce(last_success, excluded.last_success),
                           coalesce(excluded.last_success, last_success)),
        failures = CASE WHEN new.status = 'succeeded' THEN 0
                        ELSE failures + excluded.failures END;
END;

CREATE TRIGGER connection_marks_on_end AFTER UPDATE OF status ON runs
WHEN old.status IN ('pending', 'running') AND new.status NOT IN ('pending', 'running')
BEGIN
    UPDATE connection_marks SET
        last_success = CASE WHEN new.status = 'succeeded'
                            THEN max(coalesce(last_success, new.finished_at), new.finished_at)
                            ELSE last_success END,
        failures = CASE WHEN new.status = 'succeeded' THEN 0
                        WHEN new.status IN ('failed', 'timed_out', 'trigger_failed') THEN failures + 1
                        ELSE failures END
    WHERE connection = new.connection;
END;
