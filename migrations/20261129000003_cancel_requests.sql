-- An operator's cancel of a run whose sync request is on its way: recorded on the
-- run, which keeps its slot until it is resolved (its job cancelled, or no job).
ALTER TABLE runs ADD COLUMN cancel_requested_at INTEGER;
