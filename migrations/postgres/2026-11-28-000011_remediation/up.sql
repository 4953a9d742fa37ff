-- Remediation of revoked access (issue 10): one task per revoked review item, carried out in
-- its source (LDAP write, signed webhook, or by IT by hand) and then proved by a later sync.
ALTER TABLE remediation_tasks ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE remediation_tasks ADD COLUMN mode TEXT NOT NULL DEFAULT 'manual';
-- Why the access is revoked: `decision`, `no_response` or `expired` (an approval until a date).
ALTER TABLE remediation_tasks ADD COLUMN reason TEXT NOT NULL DEFAULT 'decision';
-- What was done, or in a dry run would be done (JSON: the group written, the attribute, ...).
ALTER TABLE remediation_tasks ADD COLUMN action TEXT;
ALTER TABLE remediation_tasks ADD COLUMN planned_at TIMESTAMP;
ALTER TABLE remediation_tasks ADD COLUMN executed_at TIMESTAMP;
ALTER TABLE remediation_tasks ADD COLUMN next_attempt_at TIMESTAMP;
ALTER TABLE remediation_tasks ADD COLUMN locked_until TIMESTAMP;
-- The last sync run that checked the access, and the one that proved it gone.
ALTER TABLE remediation_tasks ADD COLUMN checked_sync_run_id TEXT;
ALTER TABLE remediation_tasks ADD COLUMN verified_sync_run_id TEXT;
ALTER TABLE remediation_tasks ADD COLUMN ticket TEXT;
-- Bumped by each retry an admin asks for: a webhook's idempotency key names the attempt.
ALTER TABLE remediation_tasks ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX remediation_tasks_item ON remediation_tasks (item_id);
CREATE INDEX remediation_tasks_state ON remediation_tasks (state, next_attempt_at);
CREATE INDEX remediation_tasks_campaign ON remediation_tasks (campaign_id);
