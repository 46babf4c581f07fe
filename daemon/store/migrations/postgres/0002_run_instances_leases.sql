-- 2: which instance runs a run, and until when its lease holds (renewed while it runs)
ALTER TABLE runs ADD COLUMN instance TEXT;
ALTER TABLE runs ADD COLUMN lease_until TEXT;
CREATE INDEX runs_running ON runs(status) WHERE status = 'running';
