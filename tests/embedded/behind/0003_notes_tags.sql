-- Ordered after the contract, so it waits for the backfill too.
ALTER TABLE notes ADD COLUMN tags text[];
