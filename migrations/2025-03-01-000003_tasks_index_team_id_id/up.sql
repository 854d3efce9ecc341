-- Keyset pages of a team's tasks (Task::list_for_team: team_id = $1 AND id > $2 ORDER BY id
-- LIMIT n) walk this index in order and stop after one page, as tasks_owner_id_id_idx does
-- for owners. tasks_team_id_status_idx has status between team_id and id, so a page read all
-- of the team's tasks and sorted them; it stays, for a team's tasks in one status.
-- CONCURRENTLY, outside a transaction (metadata.toml), one statement in the file.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_team_id_id_idx ON tasks (team_id, id);
