-- sluice:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS invoices_account_id ON invoices (account_id);
