-- R__views (R__views.sql): one transaction
RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; DISCARD TEMP; CLOSE ALL; UNLISTEN *; DEALLOCATE ALL; SELECT CASE WHEN current_setting('server_version_num')::int >= 140000 THEN set_config('client_connection_check_interval', '1000', false) END;
BEGIN;
SET LOCAL lock_timeout = '750ms'; SET LOCAL statement_timeout = '900000ms';
CREATE OR REPLACE VIEW v AS SELECT 1;
RESET SESSION AUTHORIZATION; RESET ROLE;
INSERT INTO "sluice"."repeatables" (description, checksum, ...) VALUES ('views', '5121c310b6411418291428cd0dce05bb5f8448aca84e4afa1a653a37f36a66a1', ...) ON CONFLICT (description) DO UPDATE ...; -- and an audit row in "sluice"."audit"
COMMIT;