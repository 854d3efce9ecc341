-- Back to the state after the first half: both checks present but NOT VALID.
ALTER TABLE users ALTER COLUMN display_name DROP NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_display_name_not_null CHECK (display_name IS NOT NULL) NOT VALID;
ALTER TABLE users DROP CONSTRAINT users_display_name_not_blank;
ALTER TABLE users ADD CONSTRAINT users_display_name_not_blank
    CHECK (length(btrim(display_name)) BETWEEN 1 AND 200) NOT VALID;
