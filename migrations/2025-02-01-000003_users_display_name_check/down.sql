ALTER TABLE users DROP CONSTRAINT users_display_name_not_blank;
ALTER TABLE users DROP CONSTRAINT users_display_name_not_null;
