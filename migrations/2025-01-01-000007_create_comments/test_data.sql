-- `migrate test` runs this right after the migration: rows that later migrations must keep.
INSERT INTO users (email, name) VALUES ('early.bird@example.com', 'Early Bird');
INSERT INTO teams (name) VALUES ('Early Team');
INSERT INTO comments (author_id, team_id, body)
SELECT u.id, t.id, 'Written before the rename'
FROM users u, teams t WHERE u.email = 'early.bird@example.com' AND t.name = 'Early Team';
