-- 0007_o'brien (0007_o'brien.up.sql): no transaction, statement by statement; progress recorded (on the lock's connection) after each statement outside a BEGIN ... COMMIT block of the file, and after each such block
RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; DISCARD TEMP; CLOSE ALL; UNLISTEN *; DEALLOCATE ALL; SELECT CASE WHEN current_setting('server_version_num')::int >= 140000 THEN set_config('client_connection_check_interval', '1000', false) END;
SET lock_timeout = '750ms'; SET statement_timeout = '900000ms';
-- if an earlier failed build of the next statement left an INVALID index "t_a", it is dropped first (DROP INDEX CONCURRENTLY)
CREATE INDEX CONCURRENTLY t_a ON t (a);
SET lock_timeout = '750ms'; SET statement_timeout = '900000ms';
-- if an earlier failed build of the next statement left an INVALID index "t_b", it is dropped first (DROP INDEX CONCURRENTLY)
CREATE INDEX CONCURRENTLY t_b ON t (b);
SET lock_timeout = '750ms'; SET statement_timeout = '900000ms';
ANALYZE t;
INSERT INTO "sluice"."migrations" (version, name, checksum, ...) VALUES (7, 'o''brien', 'f639afb3ca75365fc8898c85753b6707b0e621f9486dda821a7f4f36c3ac8b05', ...); -- and an audit row in "sluice"."audit" -- on the lock's connection