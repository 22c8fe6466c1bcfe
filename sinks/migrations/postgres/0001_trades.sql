-- The books. Prices are exact DECIMAL(18,8); times are UTC (microseconds: PostgreSQL's
-- resolution; the archive keeps the FIX text with its full precision).
CREATE TABLE trades (
    exec_id            TEXT          NOT NULL PRIMARY KEY,
    kind               TEXT          NOT NULL CHECK (kind IN ('fill', 'correction')),
    corrects           TEXT,
    trader_id          TEXT          NOT NULL,
    symbol             TEXT          NOT NULL,
    side               CHAR(1)       NOT NULL CHECK (side IN ('B', 'S')),
    quantity           BIGINT        NOT NULL CHECK (quantity > 0),
    price              DECIMAL(18,8) NOT NULL,
    transact_time      TIMESTAMPTZ   NOT NULL,
    status             TEXT          NOT NULL CHECK (status IN ('live', 'pending', 'busted', 'corrected')),
    status_by          TEXT,
    status_time        TIMESTAMPTZ,
    trader_name        TEXT,
    mpid               TEXT,
    desk               TEXT,
    strategy           TEXT,
    cusip              TEXT,
    isin               TEXT,
    security_name      TEXT,
    exchange           TEXT,
    currency           TEXT,
    enrichment_missing BOOLEAN       NOT NULL,
    archive_key        TEXT,
    archive_offset     BIGINT,
    receive_time       TIMESTAMPTZ,
    updated_at         TIMESTAMPTZ   NOT NULL DEFAULT now()
);
CREATE INDEX trades_trader_symbol ON trades (trader_id, symbol);

-- What each writing shard has committed, in the same transaction as its rows.
CREATE TABLE sink_progress (
    sink       TEXT        NOT NULL,
    shard      INTEGER     NOT NULL,
    time       BIGINT      NOT NULL,
    rows_total BIGINT      NOT NULL,
    complete   BOOLEAN     NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, shard)
);
