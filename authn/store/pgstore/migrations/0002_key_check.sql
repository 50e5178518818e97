-- The store's own small records. key_check holds a value sealed with the
-- storage key at the first Open: a replica started with another key finds
-- it does not open and refuses to start, even while kv is still empty
-- (otherwise two keys could write rows side by side).
CREATE TABLE kv_meta (
    name text  PRIMARY KEY,
    v    bytea NOT NULL
);
