-- 7: "window" is a reserved word in PostgreSQL; the claimed window is the slot (same in both backends)
ALTER TABLE window_claims RENAME COLUMN window TO slot;
