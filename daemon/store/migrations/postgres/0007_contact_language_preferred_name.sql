-- 7: seed 001's contact fields: a preferred name (set while blank) and an ISO 639-1 language.
ALTER TABLE contacts ADD COLUMN preferred_name TEXT;
ALTER TABLE contacts ADD COLUMN language TEXT;
