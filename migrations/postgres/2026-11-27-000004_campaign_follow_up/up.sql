-- At close, every item nobody decided gets its definition's no-response outcome (keep,
-- revoke or flag) and the state `no_response`; the decided ones keep theirs.
ALTER TABLE review_items ADD COLUMN no_response_outcome TEXT;

-- A close at the due date that would revoke more than the definition allows without an
-- admin's confirmation is held: the campaign stays open and says since when.
ALTER TABLE campaigns ADD COLUMN close_held_at TIMESTAMP;

-- Closing, progress and reassignment read a campaign's items by state.
CREATE INDEX review_items_campaign_state ON review_items (campaign_id, state);
CREATE INDEX reviewers_campaign ON reviewers (campaign_id);

-- Generation reads a run's accesses in pages by id: (source, id) serves the range and the
-- order without sorting every remaining access for each page.
CREATE INDEX grant_versions_source_id ON grant_versions (source, id);
