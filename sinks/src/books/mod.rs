//! The books sink: one contract (upsert by ExecID, progress in the same transaction, retries,
//! refused rows dead-lettered), several stores.

pub mod mssql;
pub mod postgres;
pub mod sqlite;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eod_dataflow::{BookKind, BookRow, FastMap};
use rust_decimal::Decimal;

use crate::durable::{BatchWriter, Progress};
use crate::{SinkError, SinkMetrics};

/// Why a store did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached: wait and try again, as long as it takes (backpressure).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the data: some row in the batch is at fault.
    #[error("store refused the batch: {0}")]
    Refused(String),
    /// A command did not finish within the store's command timeout. Retried like a refusal;
    /// a row that keeps timing out alone is dead-lettered with reason `timeout`.
    #[error("store command timed out: {0}")]
    TimedOut(String),
    /// Anything else (schema, permissions): carrying on would lose the books.
    #[error(transparent)]
    Fatal(#[from] SinkError),
}

/// How long a command may take before the store counts as not answering (the reference
/// system's SQL command timeout).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one store command, giving up after `timeout` with [`StoreError::TimedOut`].
pub(crate) async fn within<T>(
    timeout: Duration,
    command: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, command)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::TimedOut(format!(
                "no answer within {timeout:?}"
            )))
        })
}

/// A books store: one transaction per call, rows upserted by ExecID and the progress with them.
pub trait BooksStore: Send + 'static {
    fn write(&mut self, rows: &[BookRow], progress: &Progress) -> Result<(), StoreError>;
    /// Drops and re-opens the connection after the store was unavailable.
    fn reconnect(&mut self) -> Result<(), StoreError>;
}

/// Why a row is given up on, for its dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowRefusal {
    /// Writes of the row after the first (in its batch, then alone).
    pub retries: u32,
    /// The last attempt timed out (reason `timeout`) rather than being refused
    /// (`downstream`).
    pub timed_out: bool,
}

impl RowRefusal {
    pub fn detail(&self) -> &'static str {
        if self.timed_out {
            "the books store timed out on the row after retries"
        } else {
            "the books store refused the row after retries"
        }
    }
}

/// A row the store refused or kept timing out on, for the dead-letter queue.
pub type RefusedRow = Box<dyn FnMut(&BookRow, &RowRefusal) + Send>;

/// How a write ended after its attempts.
enum Attempt {
    Written,
    GaveUp { attempts: u32, timed_out: bool },
}

/// Retries and dead-lettering around a store; the writer thread of the durable sink.
pub struct BooksWriter<S> {
    store: S,
    metrics: SinkMetrics,
    refused: RefusedRow,
    /// Attempts for a refused batch before its rows are tried one by one.
    pub refused_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl<S: BooksStore> BooksWriter<S> {
    pub fn new(store: S, metrics: SinkMetrics, refused: RefusedRow) -> BooksWriter<S> {
        BooksWriter {
            store,
            metrics,
            refused,
            refused_attempts: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// Writes until the store takes it, or refuses it (or times out on it) `refused_attempts`
    /// times.
    fn attempt(&mut self, rows: &[BookRow], progress: &Progress) -> Result<Attempt, SinkError> {
        let mut refusals = 0;
        let mut backoff = self.backoff;
        loop {
            match self.store.write(rows, progress) {
                Ok(()) => {
                    self.metrics.store_up.with_label_values(&["books"]).set(1);
                    return Ok(Attempt::Written);
                }
                Err(StoreError::Fatal(e)) => return Err(e),
                Err(error @ (StoreError::Refused(_) | StoreError::TimedOut(_))) => {
                    let timed_out = matches!(error, StoreError::TimedOut(_));
                    let kind = if timed_out { "timeout" } else { "refused" };
                    self.metrics.store_up.with_label_values(&["books"]).set(1);
                    self.metrics
                        .retries
                        .with_label_values(&["books", kind])
                        .inc();
                    refusals += 1;
                    tracing::warn!(%error, rows = rows.len(), refusals, "books store did not take a batch");
                    if timed_out {
                        // The command may still run on the server: start a clean session.
                        if let Err(e) = self.store.reconnect() {
                            tracing::debug!(error = %e, "books store reconnect failed");
                        }
                    }
                    if refusals >= self.refused_attempts {
                        return Ok(Attempt::GaveUp {
                            attempts: refusals,
                            timed_out,
                        });
                    }
                }
                Err(StoreError::Unavailable(reason)) => {
                    self.metrics.store_up.with_label_values(&["books"]).set(0);
                    self.metrics
                        .retries
                        .with_label_values(&["books", "unavailable"])
                        .inc();
                    tracing::warn!(%reason, retry_in = ?backoff, "books store unavailable");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(self.max_backoff);
                    // Why the store cannot be reached is in the connect's error (refused,
                    // authentication, TLS), not in the next write's "connection closed".
                    if let Err(e) = self.store.reconnect() {
                        tracing::warn!(error = %e, "books store reconnect failed");
                    }
                    continue;
                }
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}

impl<S: BooksStore> BatchWriter for BooksWriter<S> {
    type Row = BookRow;

    fn write(&mut self, rows: &mut Vec<BookRow>, progress: &Progress) -> Result<(), SinkError> {
        let started = Instant::now();
        keep_latest_versions(rows);
        let rows = &rows[..];
        if let Attempt::GaveUp {
            attempts: in_batch, ..
        } = self.attempt(rows, progress)?
        {
            // Find the rows at fault: each alone, the good ones still land exactly once.
            for row in rows {
                if let Attempt::GaveUp {
                    attempts,
                    timed_out,
                } = self.attempt(std::slice::from_ref(row), progress)?
                {
                    self.metrics
                        .refused_rows
                        .with_label_values(&["books"])
                        .inc();
                    let refusal = RowRefusal {
                        retries: in_batch + attempts - 1,
                        timed_out,
                    };
                    (self.refused)(row, &refusal);
                }
            }
            // The progress alone; should that not land either, the next batch carries it.
            self.attempt(&[], progress)?;
        }
        self.metrics
            .rows_written
            .with_label_values(&["books"])
            .inc_by(rows.len() as u64);
        self.metrics.batches.with_label_values(&["books"]).inc();
        self.metrics
            .batch_rows
            .with_label_values(&["books"])
            .observe(rows.len() as f64);
        self.metrics
            .batch_seconds
            .with_label_values(&["books"])
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// Keeps each ExecID's last row, in place and in order. A batch spans times, so a row that
/// changed in between is in it twice: the later version is the one in force (and one statement
/// may not upsert a key twice). In place: a copy of the kept rows was as large as the batch,
/// and held beside it while it was written (heap profile of a 1M replay with SQLite books:
/// 51 MB at the peak). A [`FastMap`], as the dataflow's maps of ExecIDs: with the std hasher
/// (SipHash) it took 3% of the SQLite writer's samples, and the writer is what a books replay
/// waits for.
fn keep_latest_versions(rows: &mut Vec<BookRow>) {
    let mut latest: FastMap<&str, usize> =
        FastMap::with_capacity_and_hasher(rows.len(), Default::default());
    for (position, row) in rows.iter().enumerate() {
        latest.insert(&row.exec_id, position);
    }
    if latest.len() == rows.len() {
        return;
    }
    let mut kept = vec![false; rows.len()];
    for position in latest.into_values() {
        kept[position] = true;
    }
    let mut kept = kept.into_iter();
    rows.retain(|_| kept.next().unwrap_or(false));
}

/// A books row as every store writes it: the columns of table `trades`.
pub struct BookRecord<'a> {
    pub exec_id: &'a str,
    pub kind: &'static str,
    pub corrects: Option<&'a str>,
    pub trader_id: &'a str,
    pub symbol: &'a str,
    /// "B" or "S".
    pub side: &'static str,
    /// Positive.
    pub quantity: i64,
    /// Exact, 8 decimals.
    pub price: Decimal,
    /// UTC nanoseconds.
    pub transact_time: i64,
    pub status: &'static str,
    pub status_by: Option<&'a str>,
    pub status_time: Option<i64>,
    pub trader_name: Option<&'a str>,
    pub mpid: Option<&'a str>,
    pub desk: Option<&'a str>,
    pub strategy: Option<&'a str>,
    pub cusip: Option<&'a str>,
    pub isin: Option<&'a str>,
    pub security_name: Option<&'a str>,
    pub exchange: Option<&'a str>,
    pub currency: Option<&'a str>,
    pub enrichment_missing: bool,
    pub archive_key: Option<&'a str>,
    pub archive_offset: Option<i64>,
    pub receive_time: Option<i64>,
}

/// Column order of [`BookRecord`] in every store's SQL.
pub const COLUMNS: [&str; 25] = [
    "exec_id",
    "kind",
    "corrects",
    "trader_id",
    "symbol",
    "side",
    "quantity",
    "price",
    "transact_time",
    "status",
    "status_by",
    "status_time",
    "trader_name",
    "mpid",
    "desk",
    "strategy",
    "cusip",
    "isin",
    "security_name",
    "exchange",
    "currency",
    "enrichment_missing",
    "archive_key",
    "archive_offset",
    "receive_time",
];

impl<'a> BookRecord<'a> {
    pub fn from_row(row: &'a BookRow) -> BookRecord<'a> {
        let trader = row.trader_ref.as_ref();
        let security = row.security_ref.as_ref();
        let source = row.source.as_ref();
        BookRecord {
            exec_id: &row.exec_id,
            kind: match row.kind {
                BookKind::Fill => "fill",
                BookKind::Correction => "correction",
            },
            corrects: row.corrects().map(|c| c.as_str()),
            trader_id: &row.trader,
            symbol: &row.symbol,
            side: if row.qty < 0 { "S" } else { "B" },
            quantity: row.qty.saturating_abs(),
            price: Decimal::from_i128_with_scale(i128::from(row.price), 8),
            transact_time: row.transact_time,
            status: row.status.label(),
            status_by: row.status_by().map(|b| b.as_str()),
            status_time: row.status_time(),
            trader_name: trader.map(|t| t.name.as_str()),
            mpid: trader.map(|t| t.mpid.as_str()),
            desk: trader.map(|t| t.desk.as_str()),
            strategy: trader.map(|t| t.strategy.as_str()),
            cusip: security.map(|s| s.cusip.as_str()),
            isin: security.map(|s| s.isin.as_str()),
            security_name: security.map(|s| s.name.as_str()),
            exchange: security.map(|s| s.exchange.as_str()),
            currency: security.map(|s| s.currency.as_str()),
            enrichment_missing: row.enrichment_missing(),
            archive_key: source.map(|s| s.archive_key.as_str()),
            archive_offset: source.map(|s| s.archive_offset as i64),
            receive_time: source.map(|s| s.receive_time).filter(|t| *t != 0),
        }
    }
}

/// UTC nanoseconds as a `SystemTime` (for stores with a timestamp type).
pub fn system_time(nanos: i64) -> SystemTime {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// A versioned migration kept in the repository.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use eod_dataflow::{BookStatus, SecurityRef, SourceAt};

    pub(crate) fn row(exec_id: &str, qty: i64) -> BookRow {
        BookRow {
            exec_id: exec_id.into(),
            kind: BookKind::Fill,
            links: None,
            trader: "T1".into(),
            symbol: "AAPL".into(),
            qty,
            price: 18_912_345_678,
            transact_time: 1_764_104_400_123_456_789,
            status: BookStatus::Live,
            trader_ref: None,
            security_ref: Some(std::sync::Arc::new(SecurityRef {
                symbol: "AAPL".into(),
                cusip: "037833100".into(),
                isin: "US0378331005".into(),
                name: "Apple Inc".into(),
                exchange: "XNAS".into(),
                currency: "USD".into(),
            })),
            source: Some(SourceAt {
                archive_key: "gw1/2026-11-25/000001.fix".into(),
                archive_offset: 42,
                receive_time: 0,
            }),
        }
    }

    /// A refused row's dead letter carries the row's JSON: its shape is what readers of dead
    /// letters parse, so it stays the flat row, the source with its ExecID.
    #[test]
    fn a_row_serializes_flat_and_reads_back_equal() {
        let mut ended = row("C1", -300);
        ended.kind = BookKind::Correction;
        ended.status = BookStatus::Corrected;
        ended.links = eod_dataflow::RowLinks::boxed(Some("F1".into()), Some("C2".into()), Some(7));
        let json = serde_json::to_value(&ended).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "exec_id": "C1", "kind": "Correction", "corrects": "F1",
                "trader": "T1", "symbol": "AAPL", "qty": -300, "price": 18_912_345_678i64,
                "transact_time": 1_764_104_400_123_456_789i64, "status": "Corrected",
                "status_by": "C2", "status_time": 7, "trader_ref": null,
                "security_ref": {"symbol": "AAPL", "cusip": "037833100", "isin": "US0378331005",
                                 "name": "Apple Inc", "exchange": "XNAS", "currency": "USD"},
                "source": {"exec_id": "C1", "archive_key": "gw1/2026-11-25/000001.fix",
                           "archive_offset": 42, "receive_time": 0},
            })
        );
        assert_eq!(serde_json::from_value::<BookRow>(json).unwrap(), ended);

        let live = row("E2", 5);
        assert!(live.links.is_none());
        let json = serde_json::to_value(&live).unwrap();
        assert_eq!(json["corrects"], serde_json::Value::Null);
        assert_eq!(json["status_by"], serde_json::Value::Null);
        let back: BookRow = serde_json::from_value(json).unwrap();
        assert!(
            back.links.is_none(),
            "a row without links reads back without a box"
        );
        assert_eq!(back, live);
    }

    /// A spill and an exchange between processes carry rows in bincode, which has no field
    /// names: the row's flat form must read back as the row it was, links and source whole.
    #[test]
    fn a_row_comes_back_from_bincode_equal() {
        let mut ended = row("E1", 100);
        ended.kind = BookKind::Correction;
        ended.status = BookStatus::Busted;
        ended.links = eod_dataflow::RowLinks::boxed(Some("E0".into()), Some("B9".into()), Some(3));
        for row in [ended, row("E2", -5)] {
            let bytes = bincode::serialize(&row).unwrap();
            assert_eq!(bincode::deserialize::<BookRow>(&bytes).unwrap(), row);
        }
    }

    #[test]
    fn record_encodes_side_quantity_exact_price_and_missing_enrichment() {
        let sell = row("E1", -300);
        let record = BookRecord::from_row(&sell);
        assert_eq!(record.side, "S");
        assert_eq!(record.quantity, 300);
        assert_eq!(record.price.to_string(), "189.12345678");
        assert!(record.enrichment_missing, "no trader reference");
        assert_eq!(record.trader_name, None);
        assert_eq!(record.isin, Some("US0378331005"));
        assert_eq!(record.receive_time, None, "0 means unknown");
        assert_eq!(record.archive_offset, Some(42));
        assert_eq!(BookRecord::from_row(&row("E2", 5)).side, "B");
    }

    /// A batch keeps each ExecID's last version, where that version stood; a batch without
    /// repeats is left as it came.
    #[test]
    fn a_batch_keeps_each_exec_ids_last_row_in_order() {
        let written = |rows: &[BookRow]| -> Vec<(String, i64)> {
            rows.iter()
                .map(|r| (r.exec_id.to_string(), r.qty))
                .collect()
        };
        let mut rows = vec![
            row("A", 1),
            row("B", 2),
            row("A", 3),
            row("C", 4),
            row("B", 5),
            row("A", 6),
        ];
        keep_latest_versions(&mut rows);
        assert_eq!(
            written(&rows),
            [("C".into(), 4), ("B".into(), 5), ("A".into(), 6)]
        );
        let mut distinct = vec![row("B", 1), row("A", 2)];
        keep_latest_versions(&mut distinct);
        assert_eq!(written(&distinct), [("B".into(), 1), ("A".into(), 2)]);
    }

    #[test]
    fn nanoseconds_map_to_system_time_both_sides_of_the_epoch() {
        assert_eq!(system_time(1_500), UNIX_EPOCH + Duration::from_nanos(1_500));
        assert_eq!(
            system_time(-1_500),
            UNIX_EPOCH - Duration::from_nanos(1_500)
        );
    }
}
