-- review_items' references to campaigns and reviewers are checked once per statement
-- instead of once per row. A generation inserts tens of thousands of items per statement,
-- and the per-row foreign key checks were a third of its time. The guarantee is the same:
--   * an insert checks, in one pass over the inserted rows, that every campaign and reviewer
--     they name exists, and locks those rows FOR KEY SHARE as a foreign key does, so that no
--     concurrent transaction deletes one before this one commits;
--   * an update that changes an item's campaign or reviewer is checked row by row (updates
--     are few; a decision changes neither);
--   * deleting a campaign or reviewer that an item still names, changing its id, or
--     truncating either table while items exist, fails.
-- Violations raise SQLSTATE 23503 (foreign_key_violation), as the constraints did. One limit:
-- a delete checks the items its statement sees, which under REPEATABLE READ or SERIALIZABLE
-- can miss an item committed since its snapshot; deletes of campaigns and reviewers are
-- therefore refused at those levels (attest itself works at READ COMMITTED). The functions
-- keep the search_path of this migration, so no other schema's table can stand in.
ALTER TABLE review_items DROP CONSTRAINT review_items_campaign_id_fkey;
ALTER TABLE review_items DROP CONSTRAINT review_items_reviewer_id_fkey;

CREATE FUNCTION attest_items_reference_check() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    campaign_ids TEXT[];
    reviewer_ids TEXT[];
    found INTEGER;
BEGIN
    SELECT array_agg(DISTINCT campaign_id), array_agg(DISTINCT reviewer_id)
      INTO campaign_ids, reviewer_ids FROM inserted_items;
    IF campaign_ids IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO found FROM (
        SELECT 1 FROM campaigns WHERE id = ANY (campaign_ids) FOR KEY SHARE
    ) locked;
    IF found <> cardinality(campaign_ids) THEN
        RAISE foreign_key_violation USING MESSAGE =
            'a review item names a campaign that does not exist';
    END IF;
    SELECT count(*) INTO found FROM (
        SELECT 1 FROM reviewers WHERE id = ANY (reviewer_ids) FOR KEY SHARE
    ) locked;
    IF found <> cardinality(reviewer_ids) THEN
        RAISE foreign_key_violation USING MESSAGE =
            'a review item names a reviewer that does not exist';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER review_items_references_inserted AFTER INSERT ON review_items
    REFERENCING NEW TABLE AS inserted_items
    FOR EACH STATEMENT EXECUTE FUNCTION attest_items_reference_check();

CREATE FUNCTION attest_item_reference_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.campaign_id IS DISTINCT FROM OLD.campaign_id THEN
        PERFORM 1 FROM campaigns WHERE id = NEW.campaign_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE foreign_key_violation USING MESSAGE =
                'a review item names a campaign that does not exist';
        END IF;
    END IF;
    IF NEW.reviewer_id IS DISTINCT FROM OLD.reviewer_id THEN
        PERFORM 1 FROM reviewers WHERE id = NEW.reviewer_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE foreign_key_violation USING MESSAGE =
                'a review item names a reviewer that does not exist';
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER review_items_references_updated AFTER UPDATE OF campaign_id, reviewer_id
    ON review_items FOR EACH ROW
    WHEN (OLD.campaign_id IS DISTINCT FROM NEW.campaign_id
          OR OLD.reviewer_id IS DISTINCT FROM NEW.reviewer_id)
    EXECUTE FUNCTION attest_item_reference_changed();

CREATE FUNCTION attest_campaigns_still_named() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE foreign_key_violation USING MESSAGE =
            'campaigns are deleted only at READ COMMITTED (items committed since a snapshot count)';
    END IF;
    IF EXISTS (SELECT 1 FROM review_items i JOIN removed_rows r ON i.campaign_id = r.id) THEN
        RAISE foreign_key_violation USING MESSAGE =
            'a campaign that review items name cannot be deleted';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION attest_reviewers_still_named() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE foreign_key_violation USING MESSAGE =
            'reviewers are deleted only at READ COMMITTED (items committed since a snapshot count)';
    END IF;
    IF EXISTS (SELECT 1 FROM review_items i JOIN removed_rows r ON i.reviewer_id = r.id) THEN
        RAISE foreign_key_violation USING MESSAGE =
            'a reviewer that review items name cannot be deleted';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER campaigns_deleted_named_by_items AFTER DELETE ON campaigns
    REFERENCING OLD TABLE AS removed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION attest_campaigns_still_named();
CREATE TRIGGER reviewers_deleted_named_by_items AFTER DELETE ON reviewers
    REFERENCING OLD TABLE AS removed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION attest_reviewers_still_named();

CREATE FUNCTION attest_refuse_id_change() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    RAISE foreign_key_violation USING MESSAGE = 'an id that review items may name cannot change';
END $$;

CREATE TRIGGER campaigns_id_unchanged BEFORE UPDATE OF id ON campaigns FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION attest_refuse_id_change();
CREATE TRIGGER reviewers_id_unchanged BEFORE UPDATE OF id ON reviewers FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION attest_refuse_id_change();

CREATE FUNCTION attest_refuse_truncate_named() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM review_items) THEN
        RAISE foreign_key_violation USING MESSAGE =
            'campaigns and reviewers cannot be truncated while review items name them';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER campaigns_not_truncated_under_items BEFORE TRUNCATE ON campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION attest_refuse_truncate_named();
CREATE TRIGGER reviewers_not_truncated_under_items BEFORE TRUNCATE ON reviewers
    FOR EACH STATEMENT EXECUTE FUNCTION attest_refuse_truncate_named();
