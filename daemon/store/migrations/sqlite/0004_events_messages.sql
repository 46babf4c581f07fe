-- 4: engagement events (activity feeds) and the organisation's message log (messages feeds)
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
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
    id              INTEGER PRIMARY KEY,
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
