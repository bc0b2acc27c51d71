ALTER TABLE accounts ADD COLUMN tenant_id bigint NOT NULL;
