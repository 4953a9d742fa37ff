-- Reviewers sign in at the staff provider when review.require_sso is on: an attempt started
-- from a review page names its reviewer (staff attempts name none).
ALTER TABLE staff_sign_ins ADD COLUMN reviewer_id TEXT;
