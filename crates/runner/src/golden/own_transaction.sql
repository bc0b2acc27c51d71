-- 0007_o'brien (0007_o'brien.up.sql): one transaction (its own BEGIN ... COMMIT)
RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; DISCARD TEMP; CLOSE ALL; UNLISTEN *; DEALLOCATE ALL; SELECT CASE WHEN current_setting('server_version_num')::int >= 140000 THEN set_config('client_connection_check_interval', '1000', false) END;
BEGIN;
SET LOCAL lock_timeout = '750ms'; SET LOCAL statement_timeout = '900000ms';
SET search_path = app;
CREATE TABLE t (id int);
RESET SESSION AUTHORIZATION; RESET ROLE;
INSERT INTO "sluice"."migrations" (version, name, checksum, ...) VALUES (7, 'o''brien', '44381943adf7c16720886a4ecd3ff4957cf10c39769f5d71ea77e5785b76ad9e', ...); -- and an audit row in "sluice"."audit"
COMMIT;