-- 6: how far each watermarked export feed has delivered, in the store's own order
CREATE TABLE export_watermarks (
    feed     TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    run_id   INTEGER NOT NULL REFERENCES runs(id),
    updated  TEXT NOT NULL
);
