-- The audience: users, apps and their devices, subscriptions, named segments, sends and their schedules.
-- Constraint names are spelled out: core/audience/errors.py maps a violated constraint to the field it concerns.

CREATE TABLE users (
    id               text        PRIMARY KEY,                 -- the team's own user id
    timezone         text        NOT NULL,                    -- IANA name, checked with zoneinfo before it is written
    email            text,
    telegram_chat_id text,
    data             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_id_check CHECK (length(id) BETWEEN 1 AND 256),
    CONSTRAINT users_timezone_check CHECK (length(timezone) BETWEEN 1 AND 64),
    CONSTRAINT users_data_check CHECK (jsonb_typeof(data) = 'object')
);
-- Segment conditions on data (core/audience/segments.py): jsonb_path_ops indexes the containment (@>) and jsonpath
-- (@?, @@) operators only, and is smaller and faster for them than the default jsonb_ops; a condition compiled to
-- ->> comparisons does not use it. Whether a segment's query uses it is measured in bench/audience.py.
CREATE INDEX users_data_idx ON users USING gin (data jsonb_path_ops);
-- Local-time sends look users up by zone; segments may test the zone.
CREATE INDEX users_timezone_idx ON users (timezone);

CREATE TABLE apps (
    name                     text        PRIMARY KEY,
    platform                 text        NOT NULL,
    platform_application_arn text        NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT apps_platform_check CHECK (platform IN ('APNS', 'APNS_SANDBOX', 'GCM'))
);

CREATE TABLE devices (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      text        NOT NULL,
    app          text        NOT NULL,
    token        text        NOT NULL,
    endpoint_arn text        NOT NULL,                        -- the SNS platform endpoint of (app, token)
    enabled      boolean     NOT NULL DEFAULT true,           -- false once SNS answered EndpointDisabled
    last_seen    timestamptz NOT NULL DEFAULT now(),          -- the last registration of this token
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT devices_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    -- Deleting an app deletes its devices as SNS deletes the endpoints of a deleted platform application.
    CONSTRAINT devices_app_fkey FOREIGN KEY (app) REFERENCES apps (name) ON DELETE CASCADE,
    -- A token is one device of its app: registered again (by the same or another user) it is the same row.
    CONSTRAINT devices_app_token_key UNIQUE (app, token)
);
CREATE INDEX devices_user_id_idx ON devices (user_id);
CREATE INDEX devices_endpoint_arn_idx ON devices (endpoint_arn);

CREATE TABLE subscriptions (
    user_id    text        NOT NULL,
    channel    text        NOT NULL,
    topic      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subscriptions_pkey PRIMARY KEY (user_id, channel, topic),
    CONSTRAINT subscriptions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
-- The subscribers of a channel/topic, paged by user id (keyset).
CREATE INDEX subscriptions_topic_idx ON subscriptions (channel, topic, user_id);

CREATE TABLE segments (
    name       text        PRIMARY KEY,
    definition jsonb       NOT NULL,                          -- the request's {"where": …}, validated before it is written
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A send as POST /v1/sends records it, before any recipient is known: the expansion worker pages its audience from
-- here (users_page's keyset), resuming after expanded_through when a run dies.
CREATE TABLE sends (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    notification_id   text        NOT NULL,                   -- the ledger's notification record
    target            jsonb       NOT NULL,                   -- the request's "to"
    content           jsonb       NOT NULL,
    channels          text[]      NOT NULL,
    status            text        NOT NULL DEFAULT 'queued',
    expanded_through  text,                                   -- the last user id enqueued (keyset cursor)
    recipients        integer     NOT NULL DEFAULT 0,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sends_notification_id_key UNIQUE (notification_id),
    CONSTRAINT sends_status_check CHECK (status IN ('scheduled', 'queued', 'expanding', 'expanded', 'cancelled', 'failed'))
);
CREATE INDEX sends_status_idx ON sends (status, created_at) WHERE status IN ('queued', 'expanding');

-- When a send fires. The cron claims due rows in batches:
--   UPDATE scheduled_sends SET status = 'claimed', claimed_at = now(), attempts = attempts + 1
--   WHERE id IN (SELECT id FROM scheduled_sends
--                WHERE (status = 'scheduled' AND fire_at <= now())
--                   OR (status = 'claimed' AND claimed_at < now() - <claim timeout>)
--                ORDER BY fire_at LIMIT <batch> FOR UPDATE SKIP LOCKED)
-- then enqueues and marks each 'sent' (or back to 'scheduled' with last_error; never deleted). A run that dies
-- leaves its claims to the timeout. An instant send has one fire_at; a local-time one (local_time, local_at the
-- wall clock) fires zone by zone: fire_at is the next instant a zone reaches local_at, zones_done_until the instant
-- up to which zones were sent, and it is 'sent' once the last zone is.
CREATE TABLE scheduled_sends (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    send_id          uuid        NOT NULL,
    fire_at          timestamptz NOT NULL,
    local_time       boolean     NOT NULL DEFAULT false,
    local_at         timestamp,                               -- wall clock, in each recipient's zone
    zones_done_until timestamptz,
    status           text        NOT NULL DEFAULT 'scheduled',
    attempts         integer     NOT NULL DEFAULT 0,
    claimed_at       timestamptz,
    sent_at          timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scheduled_sends_send_id_fkey FOREIGN KEY (send_id) REFERENCES sends (id) ON DELETE CASCADE,
    CONSTRAINT scheduled_sends_send_id_key UNIQUE (send_id),
    CONSTRAINT scheduled_sends_status_check CHECK (status IN ('scheduled', 'claimed', 'sent', 'cancelled', 'failed')),
    CONSTRAINT scheduled_sends_local_at_check CHECK (local_time = (local_at IS NOT NULL)),
    CONSTRAINT scheduled_sends_claimed_check CHECK (status <> 'claimed' OR claimed_at IS NOT NULL),
    CONSTRAINT scheduled_sends_sent_check CHECK (status <> 'sent' OR sent_at IS NOT NULL),
    CONSTRAINT scheduled_sends_attempts_check CHECK (attempts >= 0)
);
-- The cron's two scans stay on small partial indexes however many rows were sent.
CREATE INDEX scheduled_sends_due_idx ON scheduled_sends (fire_at) WHERE status = 'scheduled';
CREATE INDEX scheduled_sends_claimed_idx ON scheduled_sends (claimed_at) WHERE status = 'claimed';
-- GET /v1/schedules?status=, newest first.
CREATE INDEX scheduled_sends_status_idx ON scheduled_sends (status, created_at DESC, id);
