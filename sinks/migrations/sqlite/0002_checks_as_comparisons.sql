-- The same table with its CHECKs written as comparisons instead of `IN (...)` lists. SQLite
-- builds an ephemeral table for a constant `IN` list each time a statement runs, and the books
-- run one INSERT per row: building and dropping three of them per row was a quarter of the
-- writer's time (`perf` of a 1M-message replay). SQLite cannot alter a CHECK, so the table is
-- rebuilt (https://www.sqlite.org/lang_altertable.html#otheralter); its rows are kept.
CREATE TABLE trades_rebuilt (
    exec_id            TEXT    NOT NULL PRIMARY KEY,
    kind               TEXT    NOT NULL CHECK (kind = 'fill' OR kind = 'correction'),
    corrects           TEXT,
    trader_id          TEXT    NOT NULL,
    symbol             TEXT    NOT NULL,
    side               TEXT    NOT NULL CHECK (side = 'B' OR side = 'S'),
    quantity           INTEGER NOT NULL CHECK (quantity > 0),
    price              TEXT    NOT NULL,
    transact_time      INTEGER NOT NULL,
    status             TEXT    NOT NULL CHECK (status = 'live' OR status = 'pending'
                                               OR status = 'busted' OR status = 'corrected'),
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
INSERT INTO trades_rebuilt (exec_id, kind, corrects, trader_id, symbol, side, quantity, price,
    transact_time, status, status_by, status_time, trader_name, mpid, desk, strategy, cusip, isin,
    security_name, exchange, currency, enrichment_missing, archive_key, archive_offset,
    receive_time, updated_at)
SELECT exec_id, kind, corrects, trader_id, symbol, side, quantity, price,
    transact_time, status, status_by, status_time, trader_name, mpid, desk, strategy, cusip, isin,
    security_name, exchange, currency, enrichment_missing, archive_key, archive_offset,
    receive_time, updated_at
FROM trades;
DROP TABLE trades;
ALTER TABLE trades_rebuilt RENAME TO trades;
CREATE INDEX trades_trader_symbol ON trades (trader_id, symbol);
