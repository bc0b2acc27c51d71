-- Expand: accounts get email_normalized = lower(email), without downtime.
--
-- 1. The column is added nullable and without a default: a catalog-only change that takes
--    its ACCESS EXCLUSIVE lock for milliseconds (guarded by lock_timeout) and rewrites
--    nothing.
-- 2. A trigger keeps the column in sync for every row the running application (which knows
--    nothing about the column) inserts or whose email it changes. From now on no new row can
--    miss the value, so the backfill only has to fill the rows that existed before.
-- The backfill job jobs/accounts_email_normalized.toml fills those; the contract migration
-- waits for it.

ALTER TABLE accounts ADD COLUMN email_normalized text;

CREATE FUNCTION accounts_email_normalized_sync() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.email_normalized := lower(NEW.email);
    RETURN NEW;
END
$$;

-- Only on INSERT and on UPDATEs that touch email: the backfill's own UPDATE (which sets
-- email_normalized) does not fire it.
CREATE TRIGGER accounts_email_normalized_sync
    BEFORE INSERT OR UPDATE OF email ON accounts
    FOR EACH ROW EXECUTE FUNCTION accounts_email_normalized_sync();
