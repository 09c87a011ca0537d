-- One row the daemon rewrites to prove that the store takes writes and that other
-- connections see them: for readiness, and to tell when a store outage is over.
CREATE TABLE store_checks (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    token INTEGER NOT NULL
);
