-- Keyset pages of an owner's tasks (Task::list_for_owner: owner_id = $1 AND id > $2 ORDER
-- BY id LIMIT n) walk this index in order and stop after one page. With (owner_id) alone a
-- page read all of the owner's tasks and sorted them, or scanned the primary key past other
-- owners' rows. CONCURRENTLY, outside a transaction (metadata.toml): writes go on meanwhile.
-- One statement per file: diesel_cli sends a file as one query, which PostgreSQL runs as
-- one transaction, and CONCURRENTLY refuses that.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_owner_id_id_idx ON tasks (owner_id, id);
