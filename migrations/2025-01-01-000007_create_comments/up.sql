-- Polymorphic association: a comment belongs to a task or a team. One real foreign key per
-- parent kind (so the database checks them and cascades), and a CHECK for exactly one.
CREATE TABLE comments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- RESTRICT: a user with comments cannot be deleted; the discussion keeps its authors.
    author_id BIGINT NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    task_id BIGINT REFERENCES tasks (id) ON DELETE CASCADE,
    team_id BIGINT REFERENCES teams (id) ON DELETE CASCADE,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT comments_one_parent CHECK (num_nonnulls(task_id, team_id) = 1),
    CONSTRAINT comments_body_length CHECK (length(btrim(body)) BETWEEN 1 AND 10000)
);

CREATE INDEX comments_author_id_idx ON comments (author_id);
CREATE INDEX comments_task_id_idx ON comments (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX comments_team_id_idx ON comments (team_id) WHERE team_id IS NOT NULL;

SELECT diesel_manage_updated_at('comments');
