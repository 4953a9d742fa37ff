DROP TRIGGER decisions_no_truncate ON decisions;
DROP TRIGGER decisions_no_update ON decisions;
DROP TRIGGER events_no_truncate ON events;
DROP FUNCTION evidence_is_append_only();
