-- OAuth2 refresh tokens (only their hash), single use.
CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    username   TEXT NOT NULL,
    realm      TEXT NOT NULL,
    scope      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0
);
