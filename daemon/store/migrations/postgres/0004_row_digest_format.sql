-- 4: a feed's row digests are kept sorted, each with the store key of its record (contact or
-- subscriber) in `record_keys`; sets in the old format (an open-addressing table without keys)
-- are dropped: each feed's next import checks every row once and saves a new set.
DELETE FROM feed_row_digests;
ALTER TABLE feed_row_digests ADD COLUMN record_keys BYTEA NOT NULL DEFAULT '';
-- Subscriber feeds keep digest sets too, valid while the partner's list is at the same version.
ALTER TABLE partner_versions ADD COLUMN list_version BIGINT NOT NULL DEFAULT 0;
-- A full replacement reads the keys of the partner's active subscribers from this index alone
-- (removed_at is in it so that SQLite sees it covers the query).
CREATE INDEX subscribers_active ON subscribers(partner, removed_at, id) WHERE removed_at IS NULL;
