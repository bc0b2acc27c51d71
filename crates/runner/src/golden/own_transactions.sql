-- 0007_o'brien (0007_o'brien.up.sql): statement by statement, its own BEGIN ... COMMIT blocks each as one unit; progress recorded (on the lock's connection) after each statement outside a BEGIN ... COMMIT block of the file, and after each such block
RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; DISCARD TEMP; CLOSE ALL; UNLISTEN *; DEALLOCATE ALL; SELECT CASE WHEN current_setting('server_version_num')::int >= 140000 THEN set_config('client_connection_check_interval', '1000', false) END;
SET lock_timeout = '750ms'; SET statement_timeout = '900000ms';
BEGIN;
SET lock_timeout = '750ms'; SET statement_timeout = '900000ms';
CREATE TABLE t (id int);
SET lock_timeout = '750ms'; SET statement_timeout = '900000ms';
COMMIT;
SET lock_timeout = '750ms'; SET statement_timeout = '900000ms';
-- if an earlier failed build of the next statement left an INVALID index "t_id", it is dropped first (DROP INDEX CONCURRENTLY)
CREATE INDEX CONCURRENTLY t_id ON t (id);
INSERT INTO "sluice"."migrations" (version, name, checksum, ...) VALUES (7, 'o''brien', '18a98d891151ccebd58c4970b91c4c447243a879c5b899d3ecfb932042a6c4a0', ...); -- and an audit row in "sluice"."audit" -- on the lock's connection