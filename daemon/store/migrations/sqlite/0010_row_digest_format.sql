-- 10: row digests are kept as a sorted array of source-hash prefixes; sets in the old format
-- (an open-addressing table of raw-text digests) mean nothing now and are dropped: each feed's
-- next import takes the full path once and saves a new set.
DELETE FROM feed_row_digests;
-- Subscriber feeds keep digest sets too, valid while the partner's list is at the same version.
ALTER TABLE partner_versions ADD COLUMN list_version INTEGER NOT NULL DEFAULT 0;
-- A full replacement reads the keys of the partner's active subscribers from this index alone
-- (removed_at is in it so that SQLite sees it covers the query).
CREATE INDEX subscribers_active ON subscribers(partner, removed_at, id) WHERE removed_at IS NULL;
