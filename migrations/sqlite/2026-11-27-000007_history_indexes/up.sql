-- Each item's decisions in history order (the evidence pack reads every item's latest
-- decision, a page of items at a time), and a campaign's decisions in history order with
-- the id that breaks ties between decisions made in one bulk.
CREATE INDEX decisions_item ON decisions (item_id, decided_at, id);
DROP INDEX decisions_campaign;
CREATE INDEX decisions_campaign ON decisions (campaign_id, decided_at, id);
-- A reviewer's undecided items (a bulk decision, the review page's progress) without
-- walking every undecided item of the campaign.
DROP INDEX review_items_reviewer;
CREATE INDEX review_items_reviewer_state ON review_items (reviewer_id, state);
-- A campaign's items of one state in id order, a page at a time (the evidence pack), without
-- sorting every item of the campaign for each page; still counts a campaign's items by state.
DROP INDEX review_items_campaign_state;
CREATE INDEX review_items_campaign_state ON review_items (campaign_id, state, id);
-- A campaign's events in log order (the evidence pack, the campaign's history).
CREATE INDEX events_subject ON events (subject, seq);
