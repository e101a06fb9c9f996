-- Where a login started (door, client, application), as JSON: its later legs must come the
-- same way. NULL for transactions kept before this column existed.
ALTER TABLE transactions ADD COLUMN origin TEXT;
