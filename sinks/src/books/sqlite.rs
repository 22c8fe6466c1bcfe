//! SQLite books: the embedded default of `eod replay` and `eod demo`. One writer (SQLite allows
//! one), WAL with full sync so that a committed batch survives a crash of the process.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eod_dataflow::BookRow;
use rusqlite::{Connection, ErrorCode, Statement};
use rust_decimal::Decimal;

use super::{BookRecord, BooksStore, Migration, StoreError, COLUMNS};
use crate::durable::Progress;
use crate::SinkError;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "trades",
        sql: include_str!("../../migrations/sqlite/0001_trades.sql"),
    },
    Migration {
        version: 2,
        name: "checks_as_comparisons",
        sql: include_str!("../../migrations/sqlite/0002_checks_as_comparisons.sql"),
    },
];

pub struct SqliteBooks {
    path: PathBuf,
    connection: Connection,
    /// The price's text, written anew for each row that binds it.
    price_text: String,
}

impl SqliteBooks {
    pub fn open(path: &Path) -> Result<SqliteBooks, SinkError> {
        let connection = connect(path).map_err(|e| SinkError::Setup(e.to_string()))?;
        Ok(SqliteBooks {
            path: path.to_owned(),
            connection,
            price_text: String::new(),
        })
    }

    /// The ExecIDs in the books that start with `prefix`, each as often as it is stored.
    pub fn exec_ids_starting_with(&mut self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}%", super::postgres::like_escaped(prefix));
        let failed = |e: rusqlite::Error| StoreError::Unavailable(e.to_string());
        let mut statement = self
            .connection
            .prepare("SELECT exec_id FROM trades WHERE exec_id LIKE ?1 ESCAPE '\\'")
            .map_err(failed)?;
        let ids = statement
            .query_map([pattern], |row| row.get(0))
            .map_err(failed)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(failed)?;
        Ok(ids)
    }

    /// Applies the migrations not yet applied, each in its own transaction; returns their
    /// versions.
    ///
    /// Each transaction takes the write lock as it begins, before it reads whether its
    /// migration is applied: every process of a multi-process replay migrates the same file as
    /// it starts, and a transaction that read first and wrote after another's commit failed at
    /// once ("database is locked"; SQLite does not wait when a reader's snapshot is stale).
    pub fn migrate(&mut self) -> Result<Vec<i64>, SinkError> {
        let failed = |e: rusqlite::Error| SinkError::Migration(e.to_string());
        self.connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER NOT NULL PRIMARY KEY,
                    name TEXT NOT NULL,
                    applied_at INTEGER NOT NULL)",
            )
            .map_err(failed)?;
        let mut applied = Vec::new();
        for migration in MIGRATIONS {
            let transaction = self
                .connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(failed)?;
            let done: i64 = transaction
                .query_row(
                    "SELECT count(*) FROM schema_migrations WHERE version = ?1",
                    [migration.version],
                    |row| row.get(0),
                )
                .map_err(failed)?;
            if done > 0 {
                continue;
            }
            transaction.execute_batch(migration.sql).map_err(failed)?;
            transaction
                .execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    rusqlite::params![migration.version, migration.name, now_nanos()],
                )
                .map_err(failed)?;
            transaction.commit().map_err(failed)?;
            applied.push(migration.version);
        }
        Ok(applied)
    }
}

/// Page cache of the books connection, in KiB. What it must hold is each index's insertion
/// points: the right edge of the ExecID index (ExecIDs mostly rise) and a leaf per (trader,
/// symbol) group, a few MB for a day's thousand groups. 128 MiB, which held every page a
/// 1M-row day touched, took 109 MiB more peak memory than 32 for the same time (`farm-bench -n
/// 6`, 1M replay with SQLite books: wall A/B 0.996, peak 515 against 624 MiB; in 250-message
/// epochs 1.013 and 502 against 601). 16 MiB saves another 23 MiB at no cost on the
/// simulator's rising ExecIDs, but with ExecIDs spread over the index, as real ones from many
/// counterparties are, the writer alone took about 20% longer at 16 than at 32
/// (`eod-bench-sinks`, bench/RESULTS.md 2026-12-06, eighth session).
const BOOKS_CACHE_KIB: i64 = 32 * 1024;

/// Page size of a new books file: SQLite's largest, against its default 4 KiB. Per row, the
/// three B-trees split a page and the WAL writes a frame a sixteenth as often, and a WAL of
/// 1000 pages (the automatic checkpoint's threshold) holds sixteen times the rows, so the
/// checkpoint copies each hot index page back far less often. A 1M-message replay with SQLite
/// books: wall 0.83x, the same peak; the writer's CPU at 50k msg/s through Kafka 0.71x
/// (bench/RESULTS.md, 2026-12-07, sixth session). Rewriting a day's rows in 1,000-row
/// transactions took 1.25x, though: each writes whole 64 KiB pages for the few rows it adds to
/// each. A live run writes that few only when its rows come slowly (under 200 a second at the
/// default 5-second batch age), and then the writer idles anyway. The WAL grows larger
/// between checkpoints: at most 83 MiB in a 1M-message replay, against 38 MiB with 4 KiB pages.
const BOOKS_PAGE_BYTES: i64 = 64 * 1024;

/// How long a books connection waits for another's lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // Only a new file takes it (before its first write); an existing one keeps its own.
    connection.pragma_update(None, "page_size", BOOKS_PAGE_BYTES)?;
    enter_wal(&connection)?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    // At SQLite's default 2 MB, a 1M-row day evicted the indexes' hot pages on every batch:
    // the writer spent its time reading them back and spilling dirty ones to the WAL
    // mid-transaction, 85k rows/s against 230k on a fresh table (perf on `eod replay` of 1M
    // messages).
    connection.pragma_update(None, "cache_size", BOOKS_CACHE_KIB.wrapping_neg())?;
    Ok(connection)
}

/// Puts the file in WAL mode, waiting up to [`BUSY_TIMEOUT`] for the other connections that
/// open the same new file at once (every process of a multi-process replay does): SQLite
/// refuses the mode change with "database is locked" at once when it meets another's lock,
/// without its busy handler, and one process of a two-process replay then failed to start.
fn enter_wal(connection: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let set = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0));
        match set {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                    Some(format!(
                        "the books need WAL mode, and the file stayed in {mode} mode"
                    )),
                ))
            }
        }
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// `INSERT .. ON CONFLICT (exec_id) DO UPDATE`: a row written twice is one row.
pub fn upsert_sql() -> String {
    let placeholders: Vec<String> = (1..=COLUMNS.len() + 1).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> = COLUMNS[1..]
        .iter()
        .chain(std::iter::once(&"updated_at"))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO trades ({}, updated_at) VALUES ({}) ON CONFLICT (exec_id) DO UPDATE SET {}",
        COLUMNS.join(", "),
        placeholders.join(", "),
        updates.join(", ")
    )
}

const PROGRESS_SQL: &str =
    "INSERT INTO sink_progress (sink, shard, time, rows_total, complete, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT (sink, shard) DO UPDATE SET time = excluded.time, rows_total = excluded.rows_total,
         complete = excluded.complete, updated_at = excluded.updated_at";

/// The upsert's parameter of `updated_at`, after the columns of [`COLUMNS`].
const UPDATED_AT: usize = COLUMNS.len() + 1;

/// Binds `record`'s columns to the upsert, each only where it differs from `before`, the
/// record the statement's bindings hold (none: bind every column).
fn bind_changed(
    upsert: &mut Statement<'_>,
    record: &BookRecord<'_>,
    before: Option<&BookRecord<'_>>,
    price_text: &mut String,
) -> rusqlite::Result<()> {
    // Parameters are numbered from 1, in the order of `COLUMNS`.
    macro_rules! bind {
        ($($at:literal => $column:ident),* $(,)?) => {$(
            if before.is_none_or(|before| before.$column != record.$column) {
                upsert.raw_bind_parameter($at, record.$column)?;
            }
        )*};
    }
    bind!(
        1 => exec_id, 2 => kind, 3 => corrects, 4 => trader_id, 5 => symbol, 6 => side,
        7 => quantity, 9 => transact_time, 10 => status, 11 => status_by, 12 => status_time,
        13 => trader_name, 14 => mpid, 15 => desk, 16 => strategy, 17 => cusip, 18 => isin,
        19 => security_name, 20 => exchange, 21 => currency, 22 => enrichment_missing,
        23 => archive_key, 24 => archive_offset, 25 => receive_time,
    );
    // Exact text, compared as mantissa and scale: equal decimals of different scales would
    // print differently.
    if before.is_none_or(|before| before.price.serialize() != record.price.serialize()) {
        write_decimal(&record.price, price_text);
        upsert.raw_bind_parameter(8, price_text.as_str())?;
    }
    Ok(())
}

/// `value`'s text as `Decimal`'s `Display` writes it (every digit of its scale), into `out`.
/// A price is bound to nearly every row, and `to_string` allocated a string for each and
/// formatted through the decimal's general path: 2.5% of the SQLite writer's samples in a 1M
/// replay. A property test holds it to `Display` for any mantissa and scale.
fn write_decimal(value: &Decimal, out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    let scale = value.scale();
    // Zero keeps `Display`'s own spelling of its sign; a mantissa beyond i64 is no price.
    let digits = i64::try_from(value.mantissa()).ok().filter(|m| *m != 0);
    let (Some(mantissa), Some(unit)) = (digits, 10u64.checked_pow(scale)) else {
        let _ = write!(out, "{value}");
        return;
    };
    let magnitude = mantissa.unsigned_abs();
    if mantissa < 0 {
        out.push('-');
    }
    let _ = write!(out, "{}", magnitude / unit);
    if scale > 0 {
        let _ = write!(out, ".{:0width$}", magnitude % unit, width = scale as usize);
    }
}

fn classify(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig) => {
            StoreError::Refused(error.to_string())
        }
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull,
        ) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Fatal(SinkError::Store(error.to_string())),
    }
}

impl BooksStore for SqliteBooks {
    fn write(&mut self, rows: &[BookRow], progress: &Progress) -> Result<(), StoreError> {
        let now = now_nanos();
        let transaction = self.connection.transaction().map_err(classify)?;
        {
            let mut upsert = transaction
                .prepare_cached(&upsert_sql())
                .map_err(classify)?;
            // The statement's bindings last from one run to the next (until it goes back to
            // the cache, which clears them): each row binds only what differs from the row
            // before it. Binding every column was 17% of the writer's samples in a 1M-message
            // replay (`perf`, bench/RESULTS.md 2026-12-07).
            upsert
                .raw_bind_parameter(UPDATED_AT, now)
                .map_err(classify)?;
            let mut before = None;
            for row in rows {
                let record = BookRecord::from_row(row);
                bind_changed(&mut upsert, &record, before.as_ref(), &mut self.price_text)
                    .map_err(classify)?;
                upsert.raw_execute().map_err(classify)?;
                before = Some(record);
            }
            transaction
                .execute(
                    PROGRESS_SQL,
                    rusqlite::params![
                        progress.sink,
                        progress.shard as i64,
                        progress.time as i64,
                        progress.rows_total as i64,
                        progress.complete,
                        now
                    ],
                )
                .map_err(classify)?;
        }
        transaction.commit().map_err(classify)
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        self.connection = connect(&self.path).map_err(classify)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::books::tests::row;

    fn progress(time: u64, rows_total: u64) -> Progress {
        Progress {
            sink: "books",
            shard: 0,
            time,
            rows_total,
            complete: true,
        }
    }

    #[test]
    fn upserts_by_exec_id_with_progress_and_exact_price() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteBooks::open(&dir.path().join("books.sqlite")).unwrap();
        assert_eq!(store.migrate().unwrap(), vec![1, 2]);
        assert!(store.migrate().unwrap().is_empty(), "migrations apply once");
        store
            .write(&[row("E1", 100), row("E2", -5)], &progress(3, 2))
            .unwrap();
        let mut busted = row("E1", 100);
        busted.status = eod_dataflow::BookStatus::Busted;
        busted.links = eod_dataflow::RowLinks::boxed(None, Some("B9".into()), None);
        store
            .write(&[busted.clone(), busted], &progress(7, 4))
            .unwrap();
        let c = &store.connection;
        let count: i64 = c
            .query_row("SELECT count(*) FROM trades", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 2, "ExecIDs exactly once");
        let (status, by, price): (String, String, String) = c
            .query_row(
                "SELECT status, status_by, price FROM trades WHERE exec_id = 'E1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((status.as_str(), by.as_str()), ("busted", "B9"));
        assert_eq!(price, "189.12345678");
        let (time, total): (i64, i64) = c
            .query_row("SELECT time, rows_total FROM sink_progress", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((time, total), (7, 4));
    }

    proptest::proptest! {
        /// The price's text is `Display`'s, for prices and for every other decimal: any
        /// mantissa a `Decimal` holds, any scale, and zero of either sign.
        #[test]
        fn a_decimal_s_text_is_display_s(
            mantissa in -(1i128 << 96) + 1..(1i128 << 96),
            small in proptest::prelude::any::<i64>(),
            scale in 0u32..=28,
            negative in proptest::prelude::any::<bool>(),
        ) {
            let mut out = String::from("left over");
            for mantissa in [mantissa, i128::from(small), 0] {
                let Ok(mut value) = Decimal::try_from_i128_with_scale(mantissa, scale) else {
                    continue;
                };
                if negative && mantissa == 0 {
                    value.set_sign_negative(true);
                }
                write_decimal(&value, &mut out);
                proptest::prop_assert_eq!(&out, &value.to_string());
            }
        }
    }

    /// Every process of a multi-process run opens and migrates the same new books file as it
    /// starts (`eod replay|run -- -n 2 -p 0|1`): each must wait for the others' setup, not
    /// fail on their locks, and the migrations must apply once. Connections in threads meet
    /// the same file locks as processes' do (this failed in the first of 20 rounds before).
    #[test]
    fn processes_that_open_and_migrate_new_books_at_once_all_succeed() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("books.sqlite");
            let start = std::sync::Barrier::new(4);
            let applied: Vec<Vec<i64>> = std::thread::scope(|s| {
                let openers: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            let mut store = SqliteBooks::open(&path)
                                .unwrap_or_else(|e| panic!("round {round}: open: {e}"));
                            store
                                .migrate()
                                .unwrap_or_else(|e| panic!("round {round}: migrate: {e}"))
                        })
                    })
                    .collect();
                openers.into_iter().map(|o| o.join().unwrap()).collect()
            });
            let mut all: Vec<i64> = applied.concat();
            all.sort_unstable();
            assert_eq!(all, vec![1, 2], "round {round}: each migration once");
        }
    }

    fn page_size(store: &SqliteBooks) -> i64 {
        store
            .connection
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    }

    /// New books take the large pages; books made before them keep their 4 KiB pages (SQLite
    /// cannot change a WAL file's page size) and are written and read as before.
    #[test]
    fn new_books_take_large_pages_and_older_books_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let mut fresh = SqliteBooks::open(&dir.path().join("fresh.sqlite")).unwrap();
        fresh.migrate().unwrap();
        assert_eq!(page_size(&fresh), BOOKS_PAGE_BYTES);

        let older = dir.path().join("older.sqlite");
        {
            let made_before = Connection::open(&older).unwrap();
            made_before
                .pragma_update(None, "journal_mode", "WAL")
                .unwrap();
            made_before
                .execute_batch("CREATE TABLE before_large_pages (x INTEGER)")
                .unwrap();
        }
        let mut store = SqliteBooks::open(&older).unwrap();
        assert_eq!(store.migrate().unwrap(), vec![1, 2]);
        store
            .write(&[row("E1", 100), row("E2", -5)], &progress(1, 2))
            .unwrap();
        assert_eq!(page_size(&store), 4096, "an existing file keeps its pages");
        drop(store);
        let reopened = SqliteBooks::open(&older).unwrap();
        assert_eq!(table(&reopened).len(), 2);
        assert_eq!(page_size(&reopened), 4096);
    }

    /// Every column but `updated_at`, row by row in ExecID order.
    fn table(store: &SqliteBooks) -> Vec<Vec<rusqlite::types::Value>> {
        let columns = COLUMNS.join(", ");
        let sql = format!("SELECT {columns} FROM trades ORDER BY exec_id");
        let mut statement = store.connection.prepare(&sql).unwrap();
        let rows = statement
            .query_map([], |r| {
                (0..COLUMNS.len())
                    .map(|at| r.get(at))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    /// A row whose every column is one of two values (or NULL), each chosen on its own by
    /// `choices`, so that any column can change from one row to the next while the others
    /// stay.
    fn varied_row(at: usize, choices: &[bool]) -> BookRow {
        use eod_dataflow::{BookKind, BookStatus, RowLinks, SecurityRef, SourceAt, TraderRef};
        let pick = |n: usize, a: &str, b: &str| -> eod_dataflow::Text {
            if choices[n] {
                a.into()
            } else {
                b.into()
            }
        };
        let maybe = |n: usize, value: eod_dataflow::Text| choices[n].then_some(value);
        let mut r = row(&format!("E{at:04}"), if choices[0] { 100 } else { -7 });
        r.kind = if choices[1] {
            BookKind::Fill
        } else {
            BookKind::Correction
        };
        r.trader = pick(2, "T1", "T2");
        r.symbol = pick(3, "AAPL", "MSFT");
        r.price += i64::from(choices[4]);
        r.transact_time += i64::from(choices[5]);
        r.status = if choices[6] {
            BookStatus::Live
        } else {
            BookStatus::Busted
        };
        r.links = RowLinks::boxed(
            maybe(7, pick(8, "F1", "F2")),
            maybe(9, pick(10, "B1", "B2")),
            choices[11].then_some(i64::from(choices[12])),
        );
        r.trader_ref = choices[13].then(|| {
            std::sync::Arc::new(TraderRef {
                trader_id: r.trader.clone(),
                name: pick(14, "One", "Two"),
                mpid: pick(15, "M1", "M2"),
                desk: pick(16, "D1", "D2"),
                strategy: pick(17, "S1", "S2"),
            })
        });
        r.security_ref = choices[18].then(|| {
            std::sync::Arc::new(SecurityRef {
                symbol: r.symbol.clone(),
                cusip: pick(19, "C1", "C2"),
                isin: pick(20, "I1", "I2"),
                name: pick(21, "N1", "N2"),
                exchange: pick(22, "X1", "X2"),
                currency: pick(23, "USD", "EUR"),
            })
        });
        r.source = choices[24].then(|| SourceAt {
            archive_key: pick(25, "k1", "k2"),
            archive_offset: u64::from(choices[26]),
            receive_time: i64::from(choices[27]),
        });
        r
    }

    /// Each column takes its own field: the upsert's parameters are numbered by hand.
    #[test]
    fn every_column_holds_its_own_field() {
        use rusqlite::types::Value::{Integer, Text};
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteBooks::open(&dir.path().join("books.sqlite")).unwrap();
        store.migrate().unwrap();
        let row = varied_row(0, &[true; 28]);
        store.write(&[row], &progress(1, 1)).unwrap();
        let text = |s: &str| Text(s.to_owned());
        let expected = [
            ("exec_id", text("E0000")),
            ("kind", text("fill")),
            ("corrects", text("F1")),
            ("trader_id", text("T1")),
            ("symbol", text("AAPL")),
            ("side", text("B")),
            ("quantity", Integer(100)),
            ("price", text("189.12345679")),
            ("transact_time", Integer(1_764_104_400_123_456_790)),
            ("status", text("live")),
            ("status_by", text("B1")),
            ("status_time", Integer(1)),
            ("trader_name", text("One")),
            ("mpid", text("M1")),
            ("desk", text("D1")),
            ("strategy", text("S1")),
            ("cusip", text("C1")),
            ("isin", text("I1")),
            ("security_name", text("N1")),
            ("exchange", text("X1")),
            ("currency", text("USD")),
            ("enrichment_missing", Integer(0)),
            ("archive_key", text("k1")),
            ("archive_offset", Integer(1)),
            ("receive_time", Integer(1)),
        ];
        assert_eq!(expected.len(), COLUMNS.len());
        for (column, value) in expected {
            let sql = format!("SELECT {column} FROM trades");
            let stored: rusqlite::types::Value =
                store.connection.query_row(&sql, [], |r| r.get(0)).unwrap();
            assert_eq!(stored, value, "{column}");
        }
    }

    proptest::proptest! {
        /// A batch binds only the columns that differ from the row before: each row must
        /// still read back as when it is written alone, every column bound.
        #[test]
        fn a_row_after_another_reads_back_as_a_row_written_alone(
            choices in proptest::collection::vec(proptest::collection::vec(proptest::bool::ANY, 28), 1..12),
        ) {
            let rows: Vec<BookRow> =
                choices.iter().enumerate().map(|(at, c)| varied_row(at, c)).collect();
            let dir = tempfile::tempdir().unwrap();
            let mut batch = SqliteBooks::open(&dir.path().join("batch.sqlite")).unwrap();
            batch.migrate().unwrap();
            batch.write(&rows, &progress(1, rows.len() as u64)).unwrap();
            let mut alone = SqliteBooks::open(&dir.path().join("alone.sqlite")).unwrap();
            alone.migrate().unwrap();
            for (at, r) in rows.iter().enumerate() {
                alone.write(std::slice::from_ref(r), &progress(at as u64, 1)).unwrap();
            }
            let written = table(&batch);
            proptest::prop_assert_eq!(written.len(), rows.len());
            proptest::prop_assert_eq!(written, table(&alone));
        }
    }

    /// Books written under the first schema keep their rows through the rebuild, and every
    /// CHECK still refuses what it refused.
    #[test]
    fn the_rebuilt_table_keeps_the_rows_and_the_checks() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteBooks::open(&dir.path().join("books.sqlite")).unwrap();
        store
            .connection
            .execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY,
                     name TEXT NOT NULL, applied_at INTEGER NOT NULL);
                 INSERT INTO schema_migrations VALUES (1, 'trades', 0);",
            )
            .unwrap();
        store.connection.execute_batch(MIGRATIONS[0].sql).unwrap();
        store
            .write(&[row("E1", 100), row("E2", -5)], &progress(1, 2))
            .unwrap();
        assert_eq!(store.migrate().unwrap(), vec![2]);
        let c = &store.connection;
        let rows: Vec<(String, String, i64)> = c
            .prepare("SELECT exec_id, side, quantity FROM trades ORDER BY exec_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![("E1".into(), "B".into(), 100), ("E2".into(), "S".into(), 5)]
        );
        let index: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'trades_trader_symbol'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1, "the (trader_id, symbol) index is back");
        for (column, bad) in [("kind", "fill2"), ("side", "X"), ("status", "gone")] {
            let refused = c.execute(
                &format!("UPDATE trades SET {column} = ?1 WHERE exec_id = 'E1'"),
                [bad],
            );
            assert!(
                matches!(classify(refused.unwrap_err()), StoreError::Refused(_)),
                "{column} = {bad} refused"
            );
        }
        let refused = c.execute("UPDATE trades SET quantity = 0 WHERE exec_id = 'E1'", []);
        assert!(refused.is_err(), "quantity 0 refused");
    }

    #[test]
    fn a_bad_row_is_refused_and_the_transaction_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteBooks::open(&dir.path().join("books.sqlite")).unwrap();
        store.migrate().unwrap();
        let zero = row("E0", 0); // quantity 0 breaks the CHECK
        let result = store.write(&[row("E1", 1), zero], &progress(1, 2));
        assert!(matches!(result, Err(StoreError::Refused(_))), "{result:?}");
        let count: i64 = store
            .connection
            .query_row("SELECT count(*) FROM trades", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0, "all or nothing");
    }
}
