ALTER TABLE campaigns DROP COLUMN stage;
