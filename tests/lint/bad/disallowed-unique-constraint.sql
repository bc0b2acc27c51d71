ALTER TABLE accounts ADD CONSTRAINT email_unique UNIQUE (email);
