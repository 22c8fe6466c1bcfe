//! Where the books go (`--books`), the reference data that enriches them, and attaching the
//! books sink to a worker's dataflow.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use timely::dataflow::operators::probe::Handle as ProbeHandle;

use crate::driver::Frontiers;
use anyhow::{Context, Result};
use differential_dataflow::hashable::Hashable;
use differential_dataflow::VecCollection;
use eod_dataflow::{BookRow, Diff, Inputs, SecurityRef, Time, TraderRef};
use eod_proto::DeadLetterReason;
use eod_sinks::books::mssql::MssqlBooks;
use eod_sinks::books::postgres::PostgresBooks;
use eod_sinks::books::sqlite::SqliteBooks;
use eod_sinks::books::{BooksWriter, RefusedRow, RowRefusal};
use eod_sinks::{durable_sink, SinkMetrics, SinkOptions};
use eod_sources::reference_data::{parse_securities_csv, parse_traders_csv, simulated_reference};
use eod_sources::simulator::SimConfig;
use timely::dataflow::operators::Probe;

/// A books store: `sqlite:PATH`, a `postgres://` URL, or `mssql:` and an ADO.NET connection
/// string (`mssql:server=tcp:HOST,1433;user=sa;password=...;TrustServerCertificate=true`).
#[derive(Clone, PartialEq, Eq)]
pub enum BooksTarget {
    Sqlite(PathBuf),
    Postgres(String),
    SqlServer(String),
}

impl FromStr for BooksTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("sqlite: needs a path, e.g. sqlite:books.sqlite".into());
            }
            return Ok(BooksTarget::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(BooksTarget::Postgres(text.to_owned()));
        }
        if let Some(ado) = text.strip_prefix("mssql:") {
            return Ok(BooksTarget::SqlServer(ado.to_owned()));
        }
        Err(format!(
            "unknown books store {:?}: use sqlite:PATH, postgres://USER@HOST:PORT/DB or \
             mssql:ADO-CONNECTION-STRING",
            eod_sinks::redact::url_password(text)
        ))
    }
}

impl fmt::Display for BooksTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BooksTarget::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            BooksTarget::Postgres(url) => f.write_str(&eod_sinks::redact::url_password(url)),
            BooksTarget::SqlServer(ado) => {
                write!(f, "mssql:{}", eod_sinks::redact::key_value_passwords(ado))
            }
        }
    }
}

impl fmt::Debug for BooksTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl BooksTarget {
    /// The ExecIDs stored that start with `prefix`, as often as each is stored (a fresh
    /// connection: `eod check` reads its trades back with it).
    pub fn exec_ids_starting_with(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(match self {
            BooksTarget::Sqlite(path) => SqliteBooks::open(path)?.exec_ids_starting_with(prefix)?,
            BooksTarget::Postgres(url) => {
                PostgresBooks::open(url)?.exec_ids_starting_with(prefix)?
            }
            BooksTarget::SqlServer(ado) => MssqlBooks::open(ado)?.exec_ids_starting_with(prefix)?,
        })
    }

    /// Whether one writer takes every worker's rows, cluster-wide (SQLite allows one), rather
    /// than each worker writing its own.
    pub fn one_writer(&self) -> bool {
        matches!(self, BooksTarget::Sqlite(_))
    }

    /// Creates or upgrades the schema; once, before the workers start.
    pub fn migrate(&self) -> Result<()> {
        let applied = match self {
            BooksTarget::Sqlite(path) => SqliteBooks::open(path)?.migrate()?,
            BooksTarget::Postgres(url) => PostgresBooks::open(url)?.migrate()?,
            BooksTarget::SqlServer(ado) => MssqlBooks::open(ado)?.migrate()?,
        };
        tracing::info!(store = %self, ?applied, "books schema ready");
        Ok(())
    }

    /// Attaches the books sink to this worker's graph. Its durable frontier joins `durable`
    /// (the graph's probe of what may be committed). `refused` makes the dead-letter hook of a
    /// writing worker.
    pub fn attach<'s>(
        &self,
        books: VecCollection<'s, Time, BookRow, Diff>,
        durable: &ProbeHandle<Time>,
        limits: BatchLimits,
        metrics: SinkMetrics,
        refused: impl FnOnce() -> RefusedRow,
    ) -> Result<()> {
        let mut options = SinkOptions::books(self.one_writer(), limits.max_rows, limits.max_age);
        options.spill = limits.spill.clone();
        options.spilled_rows = Some(metrics.spilled_rows.with_label_values(&["books"]));
        let shard_of = |row: &BookRow| row.exec_id.hashed();
        let sink = match self {
            BooksTarget::Sqlite(path) => durable_sink(books, options, shard_of, |_shard| {
                Ok(BooksWriter::new(
                    SqliteBooks::open(path)?,
                    metrics,
                    refused(),
                ))
            })?,
            BooksTarget::Postgres(url) => durable_sink(books, options, shard_of, |_shard| {
                let store = PostgresBooks::open(url)?.with_command_timeout(limits.command_timeout);
                Ok(BooksWriter::new(store, metrics, refused()))
            })?,
            BooksTarget::SqlServer(ado) => durable_sink(books, options, shard_of, |_shard| {
                let store = MssqlBooks::open(ado)?.with_command_timeout(limits.command_timeout);
                Ok(BooksWriter::new(store, metrics, refused()))
            })?,
        };
        sink.probe_with(durable);
        Ok(())
    }
}

/// Builds the graph in `scope`, with the books sink attached when `books` names a store:
/// returns the inputs, the views probe and the durable probe (views and books). The books
/// rows of times before `books_stored_before` are in the store already (a snapshot restore's).
pub fn build_with_books(
    scope: timely::dataflow::Scope<'_, Time>,
    store: Option<std::sync::Arc<eod_dataflow::ViewStore>>,
    workers_per_process: usize,
    books: Option<(&BooksTarget, BatchLimits)>,
    books_stored_before: Time,
    metrics: SinkMetrics,
    refused: impl FnOnce() -> RefusedRow,
) -> Result<(Inputs, Frontiers)> {
    let options = eod_dataflow::GraphOptions {
        store,
        workers_per_process,
        books: books.is_some(),
        books_stored_before,
    };
    let graph = eod_dataflow::build_graph(scope, options);
    if let (Some((target, limits)), Some(rows)) = (books, graph.books) {
        target.attach(rows, &graph.durable, limits, metrics, refused)?;
    }
    let frontiers = Frontiers {
        views: graph.probe,
        durable: graph.durable,
    };
    Ok((graph.inputs, frontiers))
}

/// When a books batch is written: when it has `max_rows` rows, or its oldest row is
/// `max_age` old, whichever comes first. Rows that waited for a busy writer are written
/// together, up to [`GROUP_COMMIT_FACTOR`](eod_sinks::durable::GROUP_COMMIT_FACTOR) times
/// `max_rows`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_rows: usize,
    pub max_age: Duration,
    /// A PostgreSQL or SQL Server write that takes longer is given up and retried; a row
    /// that keeps timing out alone is dead-lettered (reason `timeout`).
    pub command_timeout: Duration,
    /// Where rows wait on disk when the store falls behind (live runs); `None` keeps them in
    /// memory, for a replay, which bounds how far its books may lag instead.
    pub spill: Option<eod_sinks::SpillOptions>,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_rows: 5000,
            max_age: Duration::from_secs(5),
            command_timeout: eod_sinks::books::DEFAULT_COMMAND_TIMEOUT,
            spill: None,
        }
    }
}

/// Traders and securities that enrich the books.
#[derive(Clone, Debug, Default)]
pub struct ReferenceData {
    pub traders: Vec<TraderRef>,
    pub securities: Vec<SecurityRef>,
}

impl ReferenceData {
    pub fn load(traders: Option<&Path>, securities: Option<&Path>) -> Result<ReferenceData> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        Ok(ReferenceData {
            traders: match traders {
                Some(path) => parse_traders_csv(&read(path)?)?,
                None => Vec::new(),
            },
            securities: match securities {
                Some(path) => parse_securities_csv(&read(path)?)?,
                None => Vec::new(),
            },
        })
    }

    /// The simulator's reference data where none was given.
    pub fn or_simulated(self, sim: &SimConfig) -> ReferenceData {
        let (traders, securities) = simulated_reference(sim);
        ReferenceData {
            traders: if self.traders.is_empty() {
                traders
            } else {
                self.traders
            },
            securities: if self.securities.is_empty() {
                securities
            } else {
                self.securities
            },
        }
    }

    /// Enters the reference data (call on one worker).
    pub fn enter(&self, inputs: &mut Inputs) {
        for trader in &self.traders {
            inputs.trader(trader.clone(), 1);
        }
        for security in &self.securities {
            inputs.security(security.clone(), 1);
        }
    }
}

/// The dead-letter reason of a books row the store was given up on for.
pub fn refusal_reason(refusal: &RowRefusal) -> DeadLetterReason {
    if refusal.timed_out {
        DeadLetterReason::Timeout
    } else {
        DeadLetterReason::Downstream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_never_show_a_password() {
        assert_eq!(
            "sqlite:/tmp/b.sqlite".parse::<BooksTarget>().unwrap(),
            BooksTarget::Sqlite("/tmp/b.sqlite".into())
        );
        let pg: BooksTarget = "postgres://eod:hunter2@127.0.0.1:5432/eod".parse().unwrap();
        assert_eq!(pg.to_string(), "postgres://eod:***@127.0.0.1:5432/eod");
        assert_eq!(format!("{pg:?}"), "postgres://eod:***@127.0.0.1:5432/eod");
        let err = "mysql://u:pw@h/db".parse::<BooksTarget>().unwrap_err();
        assert!(!err.contains("pw"), "{err}");
        assert!("sqlite:".parse::<BooksTarget>().is_err());
        let mssql: BooksTarget =
            "mssql:server=tcp:127.0.0.1,1433;user=sa;Password=S3cret!;TrustServerCertificate=true"
                .parse()
                .unwrap();
        assert_eq!(
            mssql.to_string(),
            "mssql:server=tcp:127.0.0.1,1433;user=sa;Password=***;TrustServerCertificate=true"
        );
    }
}
