CREATE TABLE teams (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT teams_name_key UNIQUE (name),
    CONSTRAINT teams_name_not_blank CHECK (length(btrim(name)) BETWEEN 1 AND 200)
);

SELECT diesel_manage_updated_at('teams');

-- Many-to-many with a payload: when someone joined and in which role.
CREATE TABLE team_members (
    team_id BIGINT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL DEFAULT 'member',
    joined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id),
    CONSTRAINT team_members_role_check CHECK (role IN ('owner', 'admin', 'member'))
);

-- The primary key serves lookups by team; this one serves "teams of a user".
CREATE INDEX team_members_user_id_idx ON team_members (user_id);
