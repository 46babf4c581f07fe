-- 15: seed 001's per-channel messaging status: opted-in, opted-out or paused, per channel.
ALTER TABLE contacts ADD COLUMN messaging_status_sms TEXT;
ALTER TABLE contacts ADD COLUMN messaging_status_web_bot TEXT;
