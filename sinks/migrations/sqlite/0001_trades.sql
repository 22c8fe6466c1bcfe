-- The books. SQLite has no decimal or timestamp types: prices are exact decimal TEXT,
-- times are INTEGER UTC nanoseconds since the Unix epoch.
CREATE TABLE trades (
    exec_id            TEXT    NOT NULL PRIMARY KEY,
    kind               TEXT    NOT NULL CHECK (kind IN ('fill', 'correction')),
    corrects           TEXT,
    trader_id          TEXT    NOT NULL,
    symbol             TEXT    NOT NULL,
    side               TEXT    NOT NULL CHECK (side IN ('B', 'S')),
    quantity           INTEGER NOT NULL CHECK (quantity > 0),
    price              TEXT    NOT NULL,
    transact_time      INTEGER NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('live', 'pending', 'busted', 'corrected')),
    status_by          TEXT,
    status_time        INTEGER,
    trader_name        TEXT,
    mpid               TEXT,
    desk               TEXT,
    strategy           TEXT,
    cusip              TEXT,
    isin               TEXT,
    security_name      TEXT,
    exchange           TEXT,
    currency           TEXT,
    enrichment_missing INTEGER NOT NULL,
    archive_key        TEXT,
    archive_offset     INTEGER,
    receive_time       INTEGER,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX trades_trader_symbol ON trades (trader_id, symbol);

-- What each writing shard has committed, in the same transaction as its rows.
CREATE TABLE sink_progress (
    sink       TEXT    NOT NULL,
    shard      INTEGER NOT NULL,
    time       INTEGER NOT NULL,
    rows_total INTEGER NOT NULL,
    complete   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (sink, shard)
);
