-- 2: what each feed's last import applied, and a version of each partner's contacts
CREATE TABLE partner_versions (
    partner TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE feed_row_digests (
    feed    TEXT PRIMARY KEY,
    partner TEXT NOT NULL,
    version INTEGER NOT NULL,
    digests BLOB NOT NULL
);
