-- A table and a concurrent build in one transactional file: the build cannot run in the
-- transaction sluice wraps the file in.
CREATE TABLE accounts (id bigint PRIMARY KEY, email text);
CREATE INDEX CONCURRENTLY accounts_email ON accounts (email);
