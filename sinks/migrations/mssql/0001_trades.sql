-- The books in SQL Server. Prices are exact DECIMAL(18,8); times are UTC DATETIME2(7)
-- (100 ns: the FIX TransactTime's precision as we keep it).
CREATE TABLE dbo.Trades (
    exec_id            NVARCHAR(64)  NOT NULL CONSTRAINT PK_Trades PRIMARY KEY,
    kind               NVARCHAR(16)  NOT NULL CHECK (kind IN ('fill', 'correction')),
    corrects           NVARCHAR(64)  NULL,
    trader_id          NVARCHAR(64)  NOT NULL,
    symbol             NVARCHAR(64)  NOT NULL,
    side               NCHAR(1)      NOT NULL CHECK (side IN ('B', 'S')),
    quantity           BIGINT        NOT NULL CHECK (quantity > 0),
    price              DECIMAL(18,8) NOT NULL,
    transact_time      DATETIME2(7)  NOT NULL,
    status             NVARCHAR(16)  NOT NULL CHECK (status IN ('live', 'pending', 'busted', 'corrected')),
    status_by          NVARCHAR(64)  NULL,
    status_time        DATETIME2(7)  NULL,
    trader_name        NVARCHAR(128) NULL,
    mpid               NVARCHAR(16)  NULL,
    desk               NVARCHAR(128) NULL,
    strategy           NVARCHAR(128) NULL,
    cusip              NVARCHAR(16)  NULL,
    isin               NVARCHAR(16)  NULL,
    security_name      NVARCHAR(256) NULL,
    exchange           NVARCHAR(16)  NULL,
    currency           NVARCHAR(8)   NULL,
    enrichment_missing BIT           NOT NULL,
    archive_key        NVARCHAR(512) NULL,
    archive_offset     BIGINT        NULL,
    receive_time       DATETIME2(7)  NULL,
    updated_at         DATETIME2(7)  NOT NULL CONSTRAINT DF_Trades_updated_at DEFAULT SYSUTCDATETIME()
);
CREATE INDEX IX_Trades_trader_symbol ON dbo.Trades (trader_id, symbol);

-- What each writing shard has committed, in the same transaction as its rows.
CREATE TABLE dbo.SinkProgress (
    sink       NVARCHAR(32) NOT NULL,
    shard      INT          NOT NULL,
    time       BIGINT       NOT NULL,
    rows_total BIGINT       NOT NULL,
    complete   BIT          NOT NULL,
    updated_at DATETIME2(7) NOT NULL CONSTRAINT DF_SinkProgress_updated_at DEFAULT SYSUTCDATETIME(),
    CONSTRAINT PK_SinkProgress PRIMARY KEY (sink, shard)
);
