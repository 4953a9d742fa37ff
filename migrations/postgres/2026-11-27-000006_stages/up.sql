-- A campaign reviewed in stages: the stage it is in (items carry theirs already).
ALTER TABLE campaigns ADD COLUMN stage BIGINT NOT NULL DEFAULT 1;
