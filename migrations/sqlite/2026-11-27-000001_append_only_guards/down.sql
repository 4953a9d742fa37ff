DROP TRIGGER decisions_no_delete;
DROP TRIGGER decisions_no_update;
