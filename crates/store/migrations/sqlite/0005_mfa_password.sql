-- Seed 003's MFA passwords: a second password per user (any user source), as an Argon2id hash.
CREATE TABLE mfa_passwords (
    user_source TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    hash        TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (user_source, user_id)
);
