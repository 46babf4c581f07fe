-- 16: the web console's sessions (one row per logged-in browser, found by the hash of its
-- cookie), and indexes for the console's run lists (by partner or status) and a run's first errors.
CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    staff      TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    credential TEXT NOT NULL,
    created    TEXT NOT NULL,
    expires    TEXT NOT NULL
);
CREATE INDEX web_sessions_by_expiry ON web_sessions(expires);
CREATE INDEX runs_by_partner ON runs(partner, id);
CREATE INDEX runs_by_status ON runs(status, id);
CREATE INDEX run_errors_by_row ON run_errors(run_id, row_number);
DROP INDEX run_errors_by_run;  -- the index above serves what it served
