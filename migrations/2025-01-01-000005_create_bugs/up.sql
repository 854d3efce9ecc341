-- Joined-table inheritance: a bug is a task (same primary key) with columns of its own.
CREATE TABLE bugs (
    task_id BIGINT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    severity SMALLINT NOT NULL,
    reproduction TEXT,
    found_in_version TEXT,
    CONSTRAINT bugs_severity_range CHECK (severity BETWEEN 1 AND 4)
);
