-- "Approve until a date": the approval holds until then and expires into a revocation. The
-- decision keeps the date it was given; the item carries the date in force and, once it has
-- passed, when the approval expired.
ALTER TABLE decisions ADD COLUMN approved_until TIMESTAMP;
ALTER TABLE review_items ADD COLUMN approved_until TIMESTAMP;
ALTER TABLE review_items ADD COLUMN expired_at TIMESTAMP;

-- The expiry job reads the approvals whose date has come.
CREATE INDEX review_items_approved_until ON review_items (approved_until)
    WHERE approved_until IS NOT NULL;
