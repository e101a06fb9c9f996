-- Web sign-in state: login flows, SSO sessions and authorization codes, by key hash.
CREATE TABLE web_state (
    kind       TEXT NOT NULL,
    key_hash   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    data       TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, key_hash)
);
CREATE INDEX web_state_subject ON web_state (kind, subject);
