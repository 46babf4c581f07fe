-- 5: the mail outbox (one row per recipient), raised alerts, and the size of each run's file
ALTER TABLE runs ADD COLUMN size INTEGER;
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    run_id       INTEGER REFERENCES runs(id),
    recipient    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    message      BLOB NOT NULL,
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
