DROP INDEX grant_versions_source_id;
DROP INDEX reviewers_campaign;
DROP INDEX review_items_campaign_state;
ALTER TABLE campaigns DROP COLUMN close_held_at;
ALTER TABLE review_items DROP COLUMN no_response_outcome;
