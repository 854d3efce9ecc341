-- tasks_owner_id_id_idx (the migration before) leads with owner_id, so it serves the foreign
-- key and every owner_id lookup: this index would only cost writes.
DROP INDEX CONCURRENTLY IF EXISTS tasks_owner_id_idx;
