-- 1: contacts, runs, row errors, file ledger, window claims
CREATE TABLE contacts (
    id            INTEGER PRIMARY KEY,
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
    source_hash   BLOB,
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
    id            INTEGER PRIMARY KEY,
    partner       TEXT NOT NULL,
    feed          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    file          TEXT,
    sha256        TEXT,
    rows_in_file  INTEGER,
    rows_applied  INTEGER,
    rows_rejected INTEGER,
    started       TEXT NOT NULL,
    finished      TEXT,
    status        TEXT NOT NULL CHECK (status IN ('success', 'running', 'skipped', 'failed')),
    reason        TEXT,
    details       TEXT NOT NULL DEFAULT '{}',
    error_file    TEXT
);
CREATE INDEX runs_by_feed ON runs(feed, id);
CREATE TABLE run_errors (
    run_id       INTEGER NOT NULL REFERENCES runs(id),
    row_number   INTEGER NOT NULL,
    code         TEXT NOT NULL,
    failure_type TEXT NOT NULL,
    message      TEXT NOT NULL
);
CREATE INDEX run_errors_by_run ON run_errors(run_id);
CREATE TABLE imported_files (
    feed        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    file        TEXT NOT NULL,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    imported_at TEXT NOT NULL,
    PRIMARY KEY (feed, sha256)
);
CREATE TABLE window_claims (
    feed       TEXT NOT NULL,
    window     TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (feed, window)
);
