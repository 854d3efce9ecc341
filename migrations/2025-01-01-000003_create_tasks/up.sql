CREATE TYPE task_status AS ENUM ('todo', 'in_progress', 'done');

CREATE TABLE tasks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Deleting a user deletes their tasks; deleting a team keeps its tasks, unassigned.
    owner_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    team_id BIGINT REFERENCES teams (id) ON DELETE SET NULL,
    -- Subtasks go with their parent.
    parent_id BIGINT REFERENCES tasks (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    description TEXT,
    status task_status NOT NULL DEFAULT 'todo',
    priority SMALLINT NOT NULL DEFAULT 3,
    due_date DATE,
    checklist TEXT[] NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Soft delete: set instead of deleting; default queries hide such rows.
    deleted_at TIMESTAMPTZ,
    CONSTRAINT tasks_title_length CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    CONSTRAINT tasks_priority_range CHECK (priority BETWEEN 1 AND 5),
    CONSTRAINT tasks_not_own_parent CHECK (parent_id <> id),
    CONSTRAINT tasks_checklist_no_nulls CHECK (array_position(checklist, NULL) IS NULL)
);

-- Every foreign key gets an index: joins, and ON DELETE on the parent side, need them.
CREATE INDEX tasks_owner_id_idx ON tasks (owner_id);
CREATE INDEX tasks_parent_id_idx ON tasks (parent_id);
-- Composite: a team's tasks by status; also serves the team_id foreign key (leading column).
CREATE INDEX tasks_team_id_status_idx ON tasks (team_id, status);
-- Single column: the guide's `title: str = Field(index=True)`.
CREATE INDEX tasks_title_idx ON tasks (title);
-- Partial: open, live tasks of an owner by due date; small, because done tasks pile up.
CREATE INDEX tasks_open_by_owner_idx ON tasks (owner_id, due_date)
    WHERE status <> 'done' AND deleted_at IS NULL;

SELECT diesel_manage_updated_at('tasks');
