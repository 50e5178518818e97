-- The key-value table. k is the row key: the store key itself, or for keys
-- under a blinded prefix that prefix plus a keyed HMAC of the key (blind =
-- true; the key itself is sealed inside v). bytea compares byte by byte, so
-- ORDER BY k is the byte order store.KV promises, whatever the collation.
CREATE TABLE kv (
    k          bytea       PRIMARY KEY,
    blind      boolean     NOT NULL,
    v          bytea       NOT NULL,
    version    bigint      NOT NULL,
    expires_at timestamptz
);
CREATE INDEX kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;

-- Versions: a sequence is never rolled back, so a version is never handed
-- out twice, not even by a transaction that failed.
CREATE SEQUENCE kv_version AS bigint;

-- The feed's clock: one row. Every writing transaction bumps seq as its
-- last statement before COMMIT, which takes the row lock until the commit:
-- seqs are therefore assigned in commit order (see store.go, "The feed").
-- trimmed is the highest seq removed from kv_changes.
CREATE TABLE kv_clock (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq     bigint  NOT NULL,
    trimmed bigint  NOT NULL
);
INSERT INTO kv_clock (seq, trimmed) VALUES (0, 0);

-- The change log, trimmed to the configured retention.
CREATE TABLE kv_changes (
    seq        bigint      PRIMARY KEY,
    k          bytea       NOT NULL,
    blind      boolean     NOT NULL,
    deleted    boolean     NOT NULL,
    version    bigint      NOT NULL,
    expires_at timestamptz,
    v          bytea       NOT NULL
);
