-- Codes sent by SMS, WhatsApp, Zalo and mail, and the outbox of messages waiting to be sent.
ALTER TABLE transactions ADD COLUMN code_hash TEXT;
ALTER TABLE transactions ADD COLUMN code_fails INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transactions ADD COLUMN code_kind TEXT;
ALTER TABLE transactions ADD COLUMN code_factor INTEGER;
ALTER TABLE transactions ADD COLUMN code_expires_at INTEGER;

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,  -- of the first leg, for listings
    recipient       TEXT NOT NULL,  -- of the first leg
    legs_sealed     BLOB NOT NULL,
    transaction_id  TEXT,
    username        TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    not_after       INTEGER NOT NULL,
    last_error      TEXT,
    sent_by         TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
