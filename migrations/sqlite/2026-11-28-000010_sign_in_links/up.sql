-- One-time sign-in links for staff when no identity provider is configured (`attest admin
-- link`): only the SHA-256 of the secret is kept; a link is used once, before it expires.
CREATE TABLE staff_sign_in_links (
    secret_hash TEXT PRIMARY KEY NOT NULL,
    staff_user_id TEXT NOT NULL REFERENCES staff_users(id),
    role TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
