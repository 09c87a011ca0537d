-- Several Airbyte instances: job ids are unique only within one, so a run names the
-- instance its job is on, and what `apply` recorded is keyed by instance too. Rows
-- written before are the instance named 'default', which `[airbyte]` stands for.
ALTER TABLE runs ADD COLUMN instance TEXT NOT NULL DEFAULT 'default';

DROP INDEX runs_by_job;
CREATE INDEX runs_by_job ON runs (instance, job_id) WHERE job_id IS NOT NULL;

CREATE TABLE airbyte_objects_by_instance (
    instance   TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    airbyte_id TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (instance, kind, name)
);
INSERT INTO airbyte_objects_by_instance (instance, kind, name, airbyte_id, updated_at)
    SELECT 'default', kind, name, airbyte_id, updated_at FROM airbyte_objects;
DROP TABLE airbyte_objects;
ALTER TABLE airbyte_objects_by_instance RENAME TO airbyte_objects;
