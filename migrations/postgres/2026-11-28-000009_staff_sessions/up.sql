-- Staff sign-in through OpenID Connect: a session's role and how its holder authenticated
-- (acr, amr), when it was last used (idle timeout), and the short-lived sign-in attempts
-- (state, nonce and PKCE verifier of an authorization request, used once).
ALTER TABLE sessions ADD COLUMN role TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN last_seen_at TIMESTAMP;
ALTER TABLE sessions ADD COLUMN auth_context TEXT NOT NULL DEFAULT '{}';
CREATE INDEX sessions_staff_user ON sessions (staff_user_id);

CREATE TABLE staff_sign_ins (
    attempt_hash TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
