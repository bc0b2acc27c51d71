-- Contract: email_normalized becomes NOT NULL, and the sync trigger goes.
--
-- sluice refuses to run this file until the backfill job below is complete and verified
-- (every row in its key range has the value). Deploy the application version that writes
-- email_normalized itself before this runs: the trigger is dropped here.
--
-- sluice:requires-backfill accounts_email_normalized
-- sluice:no-transaction
-- sluice:statement-timeout 1h
--
-- No transaction, so each step holds its lock only for itself:
-- 1. The CHECK is added NOT VALID: a brief ACCESS EXCLUSIVE lock, no scan.
-- 2. VALIDATE scans the table under SHARE UPDATE EXCLUSIVE, which does not block reads or
--    writes (hence the long statement timeout).
-- 3. SET NOT NULL finds the validated CHECK and skips its own full-table scan (PostgreSQL 12+),
--    so its ACCESS EXCLUSIVE lock is brief again.
-- 4. The CHECK is now redundant and is dropped, then the trigger and its function.

ALTER TABLE accounts ADD CONSTRAINT accounts_email_normalized_not_null
    CHECK (email_normalized IS NOT NULL) NOT VALID;

ALTER TABLE accounts VALIDATE CONSTRAINT accounts_email_normalized_not_null;

ALTER TABLE accounts ALTER COLUMN email_normalized SET NOT NULL;

ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_email_normalized_not_null;

DROP TRIGGER IF EXISTS accounts_email_normalized_sync ON accounts;

DROP FUNCTION IF EXISTS accounts_email_normalized_sync();
