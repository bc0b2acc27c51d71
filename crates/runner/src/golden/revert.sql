-- 0007_o'brien (0007_o'brien.down.sql): one transaction
RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; DISCARD TEMP; CLOSE ALL; UNLISTEN *; DEALLOCATE ALL; SELECT CASE WHEN current_setting('server_version_num')::int >= 140000 THEN set_config('client_connection_check_interval', '1000', false) END;
BEGIN;
SET LOCAL lock_timeout = '750ms'; SET LOCAL statement_timeout = '900000ms';
DROP TABLE t;
RESET SESSION AUTHORIZATION; RESET ROLE;
DELETE FROM "sluice"."migrations" WHERE version = 7; -- and an audit row in "sluice"."audit"
COMMIT;