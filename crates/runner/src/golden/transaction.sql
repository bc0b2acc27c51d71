-- 0007_o'brien (0007_o'brien.up.sql): one transaction
RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; DISCARD TEMP; CLOSE ALL; UNLISTEN *; DEALLOCATE ALL; SELECT CASE WHEN current_setting('server_version_num')::int >= 140000 THEN set_config('client_connection_check_interval', '1000', false) END;
BEGIN;
SET LOCAL lock_timeout = '750ms'; SET LOCAL statement_timeout = '900000ms';
CREATE TABLE t (id int);
CREATE INDEX t_id ON t (id);
RESET SESSION AUTHORIZATION; RESET ROLE;
INSERT INTO "sluice"."migrations" (version, name, checksum, ...) VALUES (7, 'o''brien', '7058abb066f68a3b4b4dac0974224a891507e2277773ea3cbdaf7ad22133cb7b', ...); -- and an audit row in "sluice"."audit"
COMMIT;