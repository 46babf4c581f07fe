-- 8: each contact's previous mobile number (seed 001: a file may not revert a number the
-- person changed since; contact-out-of-sync).
ALTER TABLE contacts ADD COLUMN previous_mobile_number TEXT;
