//! SQL Server books through `tiberius`: each batch is one transaction that bulk-loads the rows
//! into a session temp table (TDS bulk load, not row-by-row INSERTs), MERGEs them into
//! `dbo.Trades` by ExecID, and records the shard's progress.
//!
//! No SQL Server runs on the machines this is developed on: the integration test runs when
//! `EOD_MSSQL_URL` is set (`docker/` has a SQL Server to point it at); the row encoding and
//! the SQL text are unit-tested here.

use std::borrow::Cow;
use std::time::Duration;

use eod_dataflow::BookRow;
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime2, Time};
use tiberius::{Client, ColumnData, Config, TokenRow};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::{
    within, BookRecord, BooksStore, Migration, StoreError, COLUMNS, DEFAULT_COMMAND_TIMEOUT,
};
use crate::durable::Progress;
use crate::SinkError;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "trades",
    sql: include_str!("../../migrations/mssql/0001_trades.sql"),
}];

/// Days from 0001-01-01 (DATETIME2's day zero) to 1970-01-01.
const DAYS_TO_UNIX_EPOCH: i64 = 719_162;
const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// UTC nanoseconds as DATETIME2(7): whole days since 0001-01-01 and 100 ns increments.
pub fn datetime2(nanos: i64) -> Option<DateTime2> {
    let days = nanos.div_euclid(NANOS_PER_DAY) + DAYS_TO_UNIX_EPOCH;
    let within_day = nanos.rem_euclid(NANOS_PER_DAY);
    let days = u32::try_from(days).ok().filter(|d| d >> 24 == 0)?;
    Some(DateTime2::new(
        Date::new(days),
        Time::new((within_day / 100) as u64, 7),
    ))
}

fn text(value: &str) -> ColumnData<'_> {
    ColumnData::String(Some(Cow::Borrowed(value)))
}

fn optional_text(value: Option<&str>) -> ColumnData<'_> {
    ColumnData::String(value.map(Cow::Borrowed))
}

/// One books row as a bulk-load row, in [`COLUMNS`] order.
pub fn token_row<'a>(r: &BookRecord<'a>) -> TokenRow<'a> {
    let mut row = TokenRow::new();
    row.push(text(r.exec_id));
    row.push(text(r.kind));
    row.push(optional_text(r.corrects));
    row.push(text(r.trader_id));
    row.push(text(r.symbol));
    row.push(text(r.side));
    row.push(ColumnData::I64(Some(r.quantity)));
    row.push(ColumnData::Numeric(Some(Numeric::new_with_scale(
        r.price.mantissa(),
        r.price.scale() as u8,
    ))));
    row.push(ColumnData::DateTime2(datetime2(r.transact_time)));
    row.push(text(r.status));
    row.push(optional_text(r.status_by));
    row.push(ColumnData::DateTime2(r.status_time.and_then(datetime2)));
    row.push(optional_text(r.trader_name));
    row.push(optional_text(r.mpid));
    row.push(optional_text(r.desk));
    row.push(optional_text(r.strategy));
    row.push(optional_text(r.cusip));
    row.push(optional_text(r.isin));
    row.push(optional_text(r.security_name));
    row.push(optional_text(r.exchange));
    row.push(optional_text(r.currency));
    row.push(ColumnData::Bit(Some(r.enrichment_missing)));
    row.push(optional_text(r.archive_key));
    row.push(ColumnData::I64(r.archive_offset));
    row.push(ColumnData::DateTime2(r.receive_time.and_then(datetime2)));
    row
}

/// The staging table (created once per session, emptied per batch) and the MERGE.
pub fn batch_sql() -> (String, String) {
    let columns = COLUMNS.join(", ");
    let stage = format!(
        "IF OBJECT_ID('tempdb..#TradesStage') IS NULL \
         SELECT TOP 0 {columns} INTO #TradesStage FROM dbo.Trades; \
         TRUNCATE TABLE #TradesStage; BEGIN TRANSACTION;"
    );
    let updates: Vec<String> = COLUMNS[1..]
        .iter()
        .map(|c| format!("{c} = s.{c}"))
        .collect();
    let values: Vec<String> = COLUMNS.iter().map(|c| format!("s.{c}")).collect();
    let merge = format!(
        "MERGE dbo.Trades WITH (HOLDLOCK) AS t USING #TradesStage AS s ON t.exec_id = s.exec_id \
         WHEN MATCHED THEN UPDATE SET {}, updated_at = SYSUTCDATETIME() \
         WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({});",
        updates.join(", "),
        values.join(", ")
    );
    (stage, merge)
}

const PROGRESS_SQL: &str = "MERGE dbo.SinkProgress WITH (HOLDLOCK) AS t \
     USING (SELECT @P1 AS sink, @P2 AS shard) AS s ON t.sink = s.sink AND t.shard = s.shard \
     WHEN MATCHED THEN UPDATE SET time = @P3, rows_total = @P4, complete = @P5, \
         updated_at = SYSUTCDATETIME() \
     WHEN NOT MATCHED THEN INSERT (sink, shard, time, rows_total, complete) \
         VALUES (@P1, @P2, @P3, @P4, @P5);";

type Connection = Client<Compat<TcpStream>>;

pub struct MssqlBooks {
    config: Config,
    runtime: Runtime,
    client: Option<Connection>,
    command_timeout: Duration,
}

/// Server errors that mean a row is at fault: overflow, truncation, NULL into NOT NULL,
/// constraint and key violations, conversion failures.
const REFUSED_CODES: [u32; 8] = [8115, 8152, 2628, 515, 547, 2627, 2601, 245];

fn classify(error: tiberius::error::Error) -> StoreError {
    match &error {
        tiberius::error::Error::Server(token) if REFUSED_CODES.contains(&token.code()) => {
            StoreError::Refused(error.to_string())
        }
        tiberius::error::Error::Io { .. } | tiberius::error::Error::Tls(_) => {
            StoreError::Unavailable(error.to_string())
        }
        tiberius::error::Error::Server(_) => StoreError::Fatal(SinkError::Store(error.to_string())),
        _ => StoreError::Unavailable(error.to_string()),
    }
}

async fn connect(config: &Config) -> Result<Connection, tiberius::error::Error> {
    let tcp = TcpStream::connect(config.get_addr()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config.clone(), tcp.compat_write()).await
}

/// TLS comes from the connection string: `Encrypt=true` (or `strict`) verifies the server
/// against the system's roots, plus `TrustServerCertificateCA=PATH` (PEM) for a private CA;
/// `TrustServerCertificate=true` skips verification (development only).
fn parse_config(ado: &str) -> Result<Config, SinkError> {
    Config::from_ado_string(ado)
        .map_err(|e| SinkError::Setup(format!("SQL Server connection string: {e}")))
}

impl MssqlBooks {
    /// `ado` is an ADO.NET connection string, e.g.
    /// `server=tcp:127.0.0.1,1433;user=sa;password=...;TrustServerCertificate=true`.
    pub fn open(ado: &str) -> Result<MssqlBooks, SinkError> {
        let config = parse_config(ado)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::Setup(e.to_string()))?;
        let client = runtime
            .block_on(connect(&config))
            .map_err(|e| SinkError::Setup(format!("connecting to SQL Server: {e}")))?;
        Ok(MssqlBooks {
            config,
            runtime,
            client: Some(client),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        })
    }

    /// Gives up on a batch that takes longer than `timeout` ([`StoreError::TimedOut`]).
    pub fn with_command_timeout(mut self, timeout: Duration) -> MssqlBooks {
        self.command_timeout = timeout;
        self
    }

    /// The ExecIDs in the books that start with `prefix`, each as often as it is stored.
    pub fn exec_ids_starting_with(&mut self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}%", super::postgres::like_escaped(prefix));
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("not connected".into()))?;
        let query = async {
            let stream = client
                .query(
                    "SELECT exec_id FROM dbo.Trades WHERE exec_id LIKE @P1 ESCAPE '\\'",
                    &[&pattern],
                )
                .await
                .map_err(classify)?;
            let rows = stream.into_first_result().await.map_err(classify)?;
            Ok(rows
                .iter()
                .filter_map(|row| row.get::<&str, _>(0).map(str::to_owned))
                .collect())
        };
        self.runtime
            .block_on(super::within(self.command_timeout, query))
    }

    /// Applies the migrations not yet applied, under an application lock; returns their versions.
    pub fn migrate(&mut self) -> Result<Vec<i64>, SinkError> {
        let failed = |e: tiberius::error::Error| SinkError::Migration(e.to_string());
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| SinkError::Migration("not connected".into()))?;
        self.runtime.block_on(async {
            client
                .simple_query(
                    "BEGIN TRANSACTION; \
                     EXEC sp_getapplock @Resource = 'eod-migrations', @LockMode = 'Exclusive'; \
                     IF OBJECT_ID('dbo.SchemaMigrations') IS NULL \
                     CREATE TABLE dbo.SchemaMigrations (version BIGINT NOT NULL PRIMARY KEY, \
                        name NVARCHAR(128) NOT NULL, \
                        applied_at DATETIME2 NOT NULL DEFAULT SYSUTCDATETIME());",
                )
                .await
                .map_err(failed)?
                .into_results()
                .await
                .map_err(failed)?;
            let mut applied = Vec::new();
            for migration in MIGRATIONS {
                let done = client
                    .query(
                        "SELECT COUNT(*) FROM dbo.SchemaMigrations WHERE version = @P1",
                        &[&migration.version],
                    )
                    .await
                    .map_err(failed)?
                    .into_row()
                    .await
                    .map_err(failed)?
                    .and_then(|row| row.get::<i32, _>(0))
                    .unwrap_or(0);
                if done > 0 {
                    continue;
                }
                client
                    .simple_query(migration.sql)
                    .await
                    .map_err(failed)?
                    .into_results()
                    .await
                    .map_err(failed)?;
                client
                    .execute(
                        "INSERT INTO dbo.SchemaMigrations (version, name) VALUES (@P1, @P2)",
                        &[&migration.version, &migration.name],
                    )
                    .await
                    .map_err(failed)?;
                applied.push(migration.version);
            }
            client
                .simple_query("COMMIT")
                .await
                .map_err(failed)?
                .into_results()
                .await
                .map_err(failed)?;
            Ok(applied)
        })
    }
}

async fn write_batch(
    client: &mut Connection,
    rows: &[BookRow],
    progress: &Progress,
) -> Result<(), tiberius::error::Error> {
    let (stage, merge) = batch_sql();
    client.simple_query(stage).await?.into_results().await?;
    let records: Vec<BookRecord<'_>> = rows.iter().map(BookRecord::from_row).collect();
    let mut bulk = client.bulk_insert_columns("#TradesStage", &COLUMNS).await?;
    for record in &records {
        bulk.send(token_row(record)).await?;
    }
    bulk.finalize().await?;
    client.execute(merge, &[]).await?;
    client
        .execute(
            PROGRESS_SQL,
            &[
                &progress.sink,
                &(progress.shard as i32),
                &(progress.time as i64),
                &(progress.rows_total as i64),
                &progress.complete,
            ],
        )
        .await?;
    client.simple_query("COMMIT").await?.into_results().await?;
    Ok(())
}

impl BooksStore for MssqlBooks {
    fn write(&mut self, rows: &[BookRow], progress: &Progress) -> Result<(), StoreError> {
        let Some(client) = self.client.as_mut() else {
            return Err(StoreError::Unavailable("not connected".into()));
        };
        let timeout = self.command_timeout;
        self.runtime.block_on(within(timeout, async {
            match write_batch(client, rows, progress).await {
                Ok(()) => Ok(()),
                Err(error) => {
                    // Leave the session clean for the next attempt; a dead connection is
                    // replaced on reconnect anyway.
                    if let Ok(stream) = client
                        .simple_query("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
                        .await
                    {
                        let _ = stream.into_results().await;
                    }
                    Err(classify(error))
                }
            }
        }))
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        self.client = None;
        let client = self
            .runtime
            .block_on(connect(&self.config))
            .map_err(classify)?;
        self.client = Some(client);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::books::tests::row;

    #[test]
    fn tls_settings_come_from_the_connection_string() {
        let with_ca = "server=tcp:db,1433;user=sa;password=x;Encrypt=true;\
                       TrustServerCertificateCA=/etc/eod/sql-ca.pem";
        assert!(parse_config(with_ca).is_ok());
        // Both ways of trusting at once is a mistake the operator hears about (no panic).
        let both = format!("{with_ca};TrustServerCertificate=true");
        let error = parse_config(&both).err().unwrap().to_string();
        assert!(error.contains("connection string"), "{error}");
        assert!(!error.contains("password=x"), "{error}");
    }

    #[test]
    fn datetime2_counts_days_from_year_one_and_100ns_increments() {
        // 1970-01-01T00:00:00 is day 719162.
        let epoch = datetime2(0).unwrap();
        assert_eq!(epoch.date().days(), 719_162);
        assert_eq!(epoch.time().increments(), 0);
        // 2026-11-25T21:00:00.1234567Z: 20,782 days after the epoch, 75,600.1234567 s in.
        let nanos = 1_795_640_400_123_456_789;
        let t = datetime2(nanos).unwrap();
        assert_eq!(t.date().days(), 719_162 + 20_782);
        assert_eq!(t.time().increments(), 756_001_234_567);
        assert_eq!(t.time().scale(), 7);
        // Before 1970 still lands on the right day.
        assert_eq!(datetime2(-1).unwrap().date().days(), 719_161);
    }

    #[test]
    fn a_row_encodes_every_column_in_order_with_an_exact_price() {
        let book = row("E1", -300);
        let record = BookRecord::from_row(&book);
        let encoded = token_row(&record);
        assert_eq!(encoded.len(), COLUMNS.len());
        let columns: Vec<&ColumnData<'_>> = encoded.iter().collect();
        assert_eq!(columns[0], &ColumnData::String(Some("E1".into())));
        assert_eq!(columns[5], &ColumnData::String(Some("S".into())));
        assert_eq!(columns[6], &ColumnData::I64(Some(300)));
        assert_eq!(
            columns[7],
            &ColumnData::Numeric(Some(Numeric::new_with_scale(18_912_345_678, 8)))
        );
        assert_eq!(
            columns[12],
            &ColumnData::String(None),
            "no trader reference"
        );
        assert_eq!(
            columns[21],
            &ColumnData::Bit(Some(true)),
            "enrichment missing"
        );
        assert_eq!(columns[23], &ColumnData::I64(Some(42)));
        assert_eq!(
            columns[24],
            &ColumnData::DateTime2(None),
            "receive time unknown"
        );
    }

    #[test]
    fn batch_sql_stages_then_merges_by_exec_id() {
        let (stage, merge) = batch_sql();
        assert!(stage.contains("SELECT TOP 0 exec_id, kind,"));
        assert!(stage.contains("INTO #TradesStage FROM dbo.Trades"));
        assert!(stage.ends_with("BEGIN TRANSACTION;"));
        assert!(merge.starts_with("MERGE dbo.Trades WITH (HOLDLOCK) AS t USING #TradesStage"));
        assert!(merge.contains("ON t.exec_id = s.exec_id"));
        assert!(merge.contains("WHEN MATCHED THEN UPDATE SET kind = s.kind"));
        assert!(
            !merge.contains("exec_id = s.exec_id,"),
            "the key is never updated"
        );
        assert!(merge.contains("VALUES (s.exec_id, s.kind,"));
        assert!(MIGRATIONS[0]
            .sql
            .contains("price              DECIMAL(18,8) NOT NULL"));
        assert!(MIGRATIONS[0]
            .sql
            .contains("CONSTRAINT PK_Trades PRIMARY KEY"));
    }
}
