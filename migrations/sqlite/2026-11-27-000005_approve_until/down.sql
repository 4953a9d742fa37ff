DROP INDEX review_items_approved_until;
ALTER TABLE review_items DROP COLUMN expired_at;
ALTER TABLE review_items DROP COLUMN approved_until;
ALTER TABLE decisions DROP COLUMN approved_until;
