-- Codes sent by SMS, WhatsApp, Zalo and mail, and the outbox of messages waiting to be sent.
ALTER TABLE transactions ADD COLUMN code_hash TEXT;
ALTER TABLE transactions ADD COLUMN code_fails BIGINT NOT NULL DEFAULT 0;
ALTER TABLE transactions ADD COLUMN code_kind TEXT;
ALTER TABLE transactions ADD COLUMN code_factor BIGINT;
ALTER TABLE transactions ADD COLUMN code_expires_at BIGINT;

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,  -- of the first leg, for listings
    recipient       TEXT NOT NULL,  -- of the first leg
    legs_sealed     BYTEA NOT NULL,
    transaction_id  TEXT,
    username        TEXT,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    not_after       BIGINT NOT NULL,
    last_error      TEXT,
    sent_by         TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
