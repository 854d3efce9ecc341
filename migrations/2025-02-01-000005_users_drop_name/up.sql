-- Phase 4 of 4: contract. Deploy code that reads and writes only display_name first;
-- then nothing needs the old column or the trigger that fed it.
DROP TRIGGER users_sync_display_name ON users;
-- squawk-ignore ban-drop-function -- only the trigger above used it
DROP FUNCTION users_sync_display_name();
-- squawk-ignore ban-drop-column -- contract phase: no deployed code reads users.name any more
ALTER TABLE users DROP COLUMN name;
