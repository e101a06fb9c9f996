-- Lockout counters are kept under typed keys (a JSON array naming the kind first); counters
-- under the earlier separator-joined keys are dropped (they would never be read again).
DELETE FROM lockouts WHERE key NOT LIKE '[%';
