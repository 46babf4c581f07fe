-- 9: failed logins and bans, shared by every instance using this store
CREATE TABLE login_failures (
    address TEXT NOT NULL,
    at      REAL NOT NULL
);
CREATE INDEX login_failures_by_address ON login_failures(address, at);
CREATE TABLE bans (
    address TEXT PRIMARY KEY,
    until   REAL NOT NULL
);
