DROP INDEX events_subject;
DROP INDEX review_items_campaign_state;
CREATE INDEX review_items_campaign_state ON review_items (campaign_id, state);
DROP INDEX review_items_reviewer_state;
CREATE INDEX review_items_reviewer ON review_items (reviewer_id);
DROP INDEX decisions_item;
DROP INDEX decisions_campaign;
CREATE INDEX decisions_campaign ON decisions (campaign_id, decided_at);
