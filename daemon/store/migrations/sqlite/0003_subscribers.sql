-- 3: subscriber lists; removed subscribers stay, with removed_at set
CREATE TABLE subscribers (
    id           INTEGER PRIMARY KEY,
    partner      TEXT NOT NULL,
    email_key    TEXT NOT NULL,
    email        TEXT NOT NULL,
    first_name   TEXT,
    last_name    TEXT,
    segment_code TEXT,
    opted_out    INTEGER NOT NULL DEFAULT 0,
    seen_in      INTEGER,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    removed_at   TEXT
);
CREATE UNIQUE INDEX subscribers_by_email ON subscribers(partner, email_key);
