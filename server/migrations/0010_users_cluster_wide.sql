-- Users and API tokens are the cluster's: replicated like the storage
-- tables. When a user last logged in, and a token was last used, is each
-- node's own knowledge, kept beside them.
CREATE TABLE user_logins (
    user_id        INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_login_at  TEXT NOT NULL
);
CREATE TABLE token_uses (
    token_id      INTEGER PRIMARY KEY REFERENCES api_tokens (id) ON DELETE CASCADE,
    last_used_at  TEXT NOT NULL
);
INSERT INTO user_logins (user_id, last_login_at) SELECT id, last_login_at FROM users WHERE last_login_at IS NOT NULL;
INSERT INTO token_uses (token_id, last_used_at) SELECT id, last_used_at FROM api_tokens WHERE last_used_at IS NOT NULL;
UPDATE users SET last_login_at = NULL;
UPDATE api_tokens SET last_used_at = NULL;
