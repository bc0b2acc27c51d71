-- 0007_o'brien (0007_o'brien.down.sql): one transaction
RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; DISCARD TEMP; CLOSE ALL; UNLISTEN *; DEALLOCATE ALL;
BEGIN;
SET LOCAL lock_timeout = '750ms'; SET LOCAL statement_timeout = '900000ms';
DROP TABLE t;
RESET SESSION AUTHORIZATION; RESET ROLE;
DELETE FROM "sluice"."migrations" WHERE version = 7; -- and an audit row in "sluice"."audit"
COMMIT;