-- At close, every item nobody decided gets its definition's no-response outcome (keep,
-- revoke or flag) and the state `no_response`; the decided ones keep theirs.
ALTER TABLE review_items ADD COLUMN no_response_outcome TEXT;

-- A close at the due date that would revoke more than the definition allows without an
-- admin's confirmation is held: the campaign stays open and says since when.
ALTER TABLE campaigns ADD COLUMN close_held_at TIMESTAMP;
