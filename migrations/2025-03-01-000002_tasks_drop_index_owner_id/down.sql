CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_owner_id_idx ON tasks (owner_id);
