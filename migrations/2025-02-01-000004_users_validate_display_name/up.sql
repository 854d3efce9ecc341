-- Phase 3 of 4, second half, in a transaction of its own (squawk: constraint-missing-not-valid).
-- VALIDATE scans existing rows under a lock that lets reads and writes go on.
ALTER TABLE users VALIDATE CONSTRAINT users_display_name_not_null;
ALTER TABLE users VALIDATE CONSTRAINT users_display_name_not_blank;
-- PostgreSQL 12+ sees the validated CHECK and sets NOT NULL without scanning again.
-- squawk-ignore adding-not-nullable-field -- the validated CHECK above makes this catalog-only
ALTER TABLE users ALTER COLUMN display_name SET NOT NULL;
-- squawk-ignore ban-drop-constraint -- NOT NULL now gives the same guarantee
ALTER TABLE users DROP CONSTRAINT users_display_name_not_null;
