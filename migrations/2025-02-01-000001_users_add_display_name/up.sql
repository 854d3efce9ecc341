-- Zero-downtime rename of users.name to users.display_name, phase 1 of 4: expand.
-- A nullable column without default is instant: no rewrite, no long lock.
ALTER TABLE users ADD COLUMN display_name TEXT;

-- Until phase 4, old code writes `name` and new code writes `display_name`: keep both
-- filled on every write, whichever one the writer knows.
CREATE FUNCTION users_sync_display_name() RETURNS trigger AS $$
BEGIN
    NEW.display_name := COALESCE(NEW.display_name, NEW.name);
    NEW.name := COALESCE(NEW.name, NEW.display_name);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_sync_display_name BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_sync_display_name();
