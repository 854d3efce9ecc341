-- The column comes back last in the table (PostgreSQL cannot re-insert it in place), filled
-- from display_name, with its constraint and the sync trigger of phase 1.
ALTER TABLE users ADD COLUMN name TEXT;
UPDATE users SET name = display_name;
ALTER TABLE users ALTER COLUMN name SET NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_name_not_blank CHECK (length(btrim(name)) BETWEEN 1 AND 200);

CREATE FUNCTION users_sync_display_name() RETURNS trigger AS $$
BEGIN
    NEW.display_name := COALESCE(NEW.display_name, NEW.name);
    NEW.name := COALESCE(NEW.name, NEW.display_name);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_sync_display_name BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_sync_display_name();
