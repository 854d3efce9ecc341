CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The id to show outside (URLs, APIs): not guessable, not a row count.
    public_id UUID NOT NULL DEFAULT gen_random_uuid(),
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    -- Typed in Rust (models::Preferences); the CHECK keeps it an object for other clients.
    preferences JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_public_id_key UNIQUE (public_id),
    -- The application validates too (models::Email); this keeps other clients honest.
    CONSTRAINT users_email_format CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND length(email) <= 254),
    CONSTRAINT users_name_not_blank CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT users_preferences_object CHECK (jsonb_typeof(preferences) = 'object')
);

-- Expression index: case-insensitive uniqueness, Alice@x.org and alice@x.org are one user.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
-- GIN index for containment queries: preferences @> '{"theme": "dark"}'.
CREATE INDEX users_preferences_idx ON users USING GIN (preferences jsonb_path_ops);

SELECT diesel_manage_updated_at('users');
