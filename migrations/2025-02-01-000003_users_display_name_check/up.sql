-- Phase 3 of 4, first half: guard new writes. A CHECK added NOT VALID takes its brief lock
-- and returns: existing rows are not scanned, new and updated rows are checked at once.
ALTER TABLE users ADD CONSTRAINT users_display_name_not_null CHECK (display_name IS NOT NULL) NOT VALID;
ALTER TABLE users ADD CONSTRAINT users_display_name_not_blank
    CHECK (length(btrim(display_name)) BETWEEN 1 AND 200) NOT VALID;
