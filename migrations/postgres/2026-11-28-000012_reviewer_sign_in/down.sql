ALTER TABLE staff_sign_ins DROP COLUMN reviewer_id;
