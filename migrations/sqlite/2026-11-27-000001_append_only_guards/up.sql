-- The decision history is evidence: rows are inserted, never changed or removed. (SQLite has
-- no TRUNCATE; a DELETE without WHERE fires these triggers too, since triggers disable
-- SQLite's truncate optimisation.)
CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
BEGIN
    SELECT RAISE(ABORT, 'decisions are append-only');
END;
CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
BEGIN
    SELECT RAISE(ABORT, 'decisions are append-only');
END;
