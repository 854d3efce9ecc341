-- Single-table inheritance: one table for every kind of channel, a discriminator (kind)
-- and kind-specific columns. The CHECK makes each kind carry exactly its own fields.
CREATE TABLE notification_channels (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    email TEXT,
    phone TEXT,
    webhook_url TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Composite unique: one channel of each kind per user.
    CONSTRAINT notification_channels_user_kind_key UNIQUE (user_id, kind),
    CONSTRAINT notification_channels_fields CHECK (
        (kind = 'email' AND email IS NOT NULL AND phone IS NULL AND webhook_url IS NULL) OR
        (kind = 'sms' AND phone IS NOT NULL AND email IS NULL AND webhook_url IS NULL) OR
        (kind = 'webhook' AND webhook_url IS NOT NULL AND email IS NULL AND phone IS NULL)
    ),
    CONSTRAINT notification_channels_phone_format CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    CONSTRAINT notification_channels_webhook_https CHECK (webhook_url LIKE 'https://%')
);
-- The unique constraint's index (user_id, kind) serves the foreign key.
