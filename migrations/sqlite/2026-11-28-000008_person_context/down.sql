ALTER TABLE identity_versions DROP COLUMN department;
ALTER TABLE identity_versions DROP COLUMN title;
