-- Tessera schema, SQLite. Times are Unix seconds (audit: milliseconds); booleans are 0/1.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE config_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 1);

CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE config_docs (
    kind       TEXT NOT NULL,
    name_lc    TEXT NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name_lc)
);

CREATE TABLE local_users (
    source        TEXT NOT NULL,
    id            TEXT NOT NULL,
    username      TEXT NOT NULL,
    username_lc   TEXT NOT NULL,
    given_name    TEXT,
    surname       TEXT,
    email         TEXT,
    phone         TEXT,
    manager       TEXT,
    groups_json   TEXT NOT NULL,
    enabled       INTEGER NOT NULL,
    expires_at    INTEGER,
    password_hash TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (source, id)
);
CREATE UNIQUE INDEX local_users_login ON local_users (source, username_lc);

CREATE TABLE tokens (
    serial             TEXT PRIMARY KEY,
    kind               TEXT NOT NULL,
    owner_source       TEXT,
    owner_id           TEXT,
    description        TEXT NOT NULL,
    seed               BLOB NOT NULL,
    algorithm          TEXT NOT NULL,
    digits             INTEGER NOT NULL,
    period             INTEGER NOT NULL,
    counter            INTEGER NOT NULL,
    otp_window         INTEGER NOT NULL,
    sync_window        INTEGER NOT NULL,
    pin_hash           TEXT,
    fail_count         INTEGER NOT NULL DEFAULT 0,
    max_fail           INTEGER NOT NULL,
    fail_exceeded_at   INTEGER,
    state              TEXT NOT NULL,
    resync_counter     INTEGER,
    resync_at          INTEGER,
    count_auth         INTEGER NOT NULL DEFAULT 0,
    count_auth_success INTEGER NOT NULL DEFAULT 0,
    last_auth          INTEGER,
    created_at         INTEGER NOT NULL
);
CREATE INDEX tokens_owner ON tokens (owner_source, owner_id);

CREATE TABLE transactions (
    id           TEXT PRIMARY KEY,
    user_source  TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    username     TEXT NOT NULL,
    realm        TEXT NOT NULL,
    application  TEXT NOT NULL,
    next_factor  INTEGER NOT NULL,
    status       TEXT NOT NULL,
    serials_json TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX transactions_expires ON transactions (expires_at);

CREATE TABLE lockouts (
    key            TEXT PRIMARY KEY,
    password_fails INTEGER NOT NULL,
    otp_fails      INTEGER NOT NULL,
    first_fail_at  INTEGER NOT NULL,
    locked_until   INTEGER
);

CREATE TABLE audit (
    id             INTEGER PRIMARY KEY,
    at_ms          INTEGER NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    door           TEXT NOT NULL,
    user_name      TEXT,
    realm          TEXT,
    serial         TEXT,
    application    TEXT,
    transaction_id TEXT,
    client_ip      TEXT,
    user_agent     TEXT,
    result         TEXT NOT NULL,
    reason         TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at_ms);
CREATE INDEX audit_user ON audit (user_name);
CREATE INDEX audit_serial ON audit (serial);

CREATE TABLE admins (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    enabled       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE admin_sessions (
    token_hash TEXT PRIMARY KEY,
    admin      TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);
