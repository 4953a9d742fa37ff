-- Nothing changes on SQLite: its foreign key checks on review_items cost little (a lookup in
-- an index already in cache), unlike PostgreSQL's per-row triggers, which its twin replaces
-- with checks once per statement.
SELECT 1;
