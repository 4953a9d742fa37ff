DROP INDEX jobs_due;
DROP TABLE campaign_schedules;
ALTER TABLE campaigns DROP COLUMN late;
