-- sluice:approve ban-drop-column reason: legacy_flag unused since release 42 (checked in code search)
ALTER TABLE accounts DROP COLUMN legacy_flag;
