-- 1: the whole schema as of SQLite migration 7 (the PostgreSQL backend starts here)
CREATE TABLE contacts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner       TEXT NOT NULL,
    contact_id    TEXT NOT NULL,
    crm_id        TEXT,
    first_name    TEXT,
    last_name     TEXT,
    mobile_number TEXT,
    email         TEXT,
    staff_id      TEXT,
    opted_out     INTEGER NOT NULL DEFAULT 0,
    custom        TEXT NOT NULL DEFAULT '{}',
    source_hash   BYTEA,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX contacts_by_contact_id ON contacts(partner, contact_id);
CREATE UNIQUE INDEX contacts_by_crm_id ON contacts(partner, crm_id) WHERE crm_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_by_phone ON contacts(partner, mobile_number) WHERE mobile_number IS NOT NULL;
CREATE TABLE custom_fields (
    partner   TEXT NOT NULL,
    field     TEXT NOT NULL,
    mergeable INTEGER NOT NULL,
    visible   INTEGER NOT NULL,
    PRIMARY KEY (partner, field)
);
CREATE TABLE runs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner       TEXT NOT NULL,
    feed          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    file          TEXT,
    sha256        TEXT,
    rows_in_file  BIGINT,
    rows_applied  BIGINT,
    rows_rejected BIGINT,
    started       TEXT NOT NULL,
    finished      TEXT,
    status        TEXT NOT NULL CHECK (status IN ('success', 'running', 'skipped', 'failed')),
    reason        TEXT,
    details       TEXT NOT NULL DEFAULT '{}',
    error_file    TEXT,
    size          BIGINT
);
CREATE INDEX runs_by_feed ON runs(feed, id);
CREATE TABLE run_errors (
    run_id       BIGINT NOT NULL REFERENCES runs(id),
    row_number   BIGINT NOT NULL,
    code         TEXT NOT NULL,
    failure_type TEXT NOT NULL,
    message      TEXT NOT NULL
);
CREATE INDEX run_errors_by_run ON run_errors(run_id);
CREATE TABLE imported_files (
    feed        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    file        TEXT NOT NULL,
    run_id      BIGINT NOT NULL REFERENCES runs(id),
    imported_at TEXT NOT NULL,
    PRIMARY KEY (feed, sha256)
);
CREATE TABLE window_claims (
    feed       TEXT NOT NULL,
    slot       TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (feed, slot)
);
CREATE TABLE partner_versions (
    partner TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
CREATE TABLE feed_row_digests (
    feed    TEXT PRIMARY KEY,
    partner TEXT NOT NULL,
    version BIGINT NOT NULL,
    digests BYTEA NOT NULL
);
CREATE TABLE subscribers (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner      TEXT NOT NULL,
    email_key    TEXT NOT NULL,
    email        TEXT NOT NULL,
    first_name   TEXT,
    last_name    TEXT,
    segment_code TEXT,
    opted_out    INTEGER NOT NULL DEFAULT 0,
    seen_in      BIGINT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    removed_at   TEXT
);
CREATE UNIQUE INDEX subscribers_by_email ON subscribers(partner, email_key);
CREATE TABLE events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    contact_id  TEXT NOT NULL,
    action      TEXT,
    time        TEXT NOT NULL,
    fields      TEXT NOT NULL DEFAULT '{}',
    imported_at TEXT NOT NULL
);
CREATE UNIQUE INDEX events_by_id ON events(partner, event_id);
CREATE INDEX events_by_contact ON events(partner, contact_id);
CREATE TABLE messages (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner         TEXT NOT NULL,
    message_key     TEXT NOT NULL,
    contact_id      TEXT NOT NULL,
    channel         TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    direction       TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
    body            TEXT NOT NULL,
    outgoing_source TEXT,
    campaign_id     TEXT,
    campaign_name   TEXT,
    script_id       TEXT,
    script_name     TEXT,
    media           TEXT,
    imported_at     TEXT NOT NULL
);
CREATE UNIQUE INDEX messages_by_key ON messages(partner, message_key);
CREATE INDEX messages_by_time ON messages(partner, timestamp);
CREATE TABLE outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    run_id       BIGINT REFERENCES runs(id),
    recipient    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    message      BYTEA NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt TEXT NOT NULL,
    last_error   TEXT,
    created      TEXT NOT NULL,
    sent_at      TEXT
);
CREATE UNIQUE INDEX outbox_once ON outbox(message_id, recipient);
CREATE INDEX outbox_due ON outbox(status, next_attempt);
CREATE TABLE alerts (
    condition TEXT PRIMARY KEY,
    summary   TEXT NOT NULL,
    raised_at TEXT NOT NULL
);
CREATE TABLE export_watermarks (
    feed     TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    run_id   BIGINT NOT NULL REFERENCES runs(id),
    updated  TEXT NOT NULL
);
