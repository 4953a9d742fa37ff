-- A person's job title and department, shown to reviewers as context. Part of the person's
-- content: the first sync after this upgrade records a new version of each person whose
-- directory entry has either.
ALTER TABLE identity_versions ADD COLUMN title TEXT;
ALTER TABLE identity_versions ADD COLUMN department TEXT;
