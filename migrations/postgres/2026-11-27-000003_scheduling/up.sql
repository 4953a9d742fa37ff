-- Campaigns open by themselves on their definition's schedule. A campaign opened well after
-- its period began (the service was down across the boundary) is marked late.
ALTER TABLE campaigns ADD COLUMN late BOOLEAN NOT NULL DEFAULT FALSE;

-- When the scheduler first saw each definition: with `first_period = "next"`, a period that
-- began before then gets no campaign.
CREATE TABLE campaign_schedules (
    definition TEXT PRIMARY KEY NOT NULL,
    first_seen_at TIMESTAMP NOT NULL
);

CREATE INDEX jobs_due ON jobs (state, run_at);
