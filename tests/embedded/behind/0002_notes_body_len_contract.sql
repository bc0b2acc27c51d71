-- Contract: only once every row has its length.
-- sluice:requires-backfill notes_body_len
ALTER TABLE notes ALTER COLUMN body_len SET NOT NULL;
