-- sluice:no-transaction
ALTER TABLE accounts ADD CONSTRAINT email_not_null CHECK (email IS NOT NULL) NOT VALID;
ALTER TABLE accounts VALIDATE CONSTRAINT email_not_null;
ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;
