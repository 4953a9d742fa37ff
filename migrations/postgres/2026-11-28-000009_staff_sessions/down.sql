DROP TABLE staff_sign_ins;
DROP INDEX sessions_staff_user;
ALTER TABLE sessions DROP COLUMN auth_context;
ALTER TABLE sessions DROP COLUMN last_seen_at;
ALTER TABLE sessions DROP COLUMN role;
