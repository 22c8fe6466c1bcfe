//! PostgreSQL books: each batch is one transaction that binary-COPYs the rows into a temporary
//! staging table, upserts them into `trades` by ExecID, and records the shard's progress.
//! COPY because it is PostgreSQL's bulk path (row-by-row INSERTs cost a round trip each).

use std::pin::pin;
use std::time::Duration;

use eod_dataflow::BookRow;
use tokio::runtime::Runtime;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::{
    system_time, within, BookRecord, BooksStore, Migration, StoreError, COLUMNS,
    DEFAULT_COMMAND_TIMEOUT,
};
use crate::durable::Progress;
use crate::SinkError;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "trades",
        sql: include_str!("../../migrations/postgres/0001_trades.sql"),
    },
    Migration {
        version: 2,
        name: "identifiers_in_c_collation",
        sql: include_str!("../../migrations/postgres/0002_identifiers_in_c_collation.sql"),
    },
];

/// Binary COPY types, in [`COLUMNS`] order.
const TYPES: [Type; 25] = [
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BPCHAR,
    Type::INT8,
    Type::NUMERIC,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::INT8,
    Type::TIMESTAMPTZ,
];

pub struct PostgresBooks {
    endpoint: Endpoint,
    runtime: Runtime,
    client: Client,
    command_timeout: Duration,
}

/// How to reach the server: the URL tokio-postgres takes, and TLS when the URL asks for it
/// with `sslmode=require` (or `prefer`). The server is verified against `sslrootcert=PATH`
/// (libpq's name; PEM), else the system's roots.
#[derive(Clone)]
struct Endpoint {
    url: String,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, SinkError> {
        let (url, root_cert) = take_root_cert(url);
        let tls = (url.contains("sslmode=require") || url.contains("sslmode=prefer"))
            .then(|| tls_config(root_cert.as_deref()))
            .transpose()?
            .map(tokio_postgres_rustls::MakeRustlsConnect::new);
        Ok(Endpoint { url, tls })
    }
}

async fn connect(runtime: &Runtime, endpoint: &Endpoint) -> Result<Client, tokio_postgres::Error> {
    let client = match &endpoint.tls {
        None => {
            let (client, connection) = tokio_postgres::connect(&endpoint.url, NoTls).await?;
            runtime.spawn(drive(connection));
            client
        }
        Some(tls) => {
            let (client, connection) = tokio_postgres::connect(&endpoint.url, tls.clone()).await?;
            runtime.spawn(drive(connection));
            client
        }
    };
    Ok(client)
}

async fn drive<C: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(connection: C) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "postgres connection ended");
    }
}

/// An error with its causes: "error performing TLS handshake" alone does not say which
/// certificate was refused.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Takes `sslrootcert=...` out of the URL: tokio-postgres does not know the option.
fn take_root_cert(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut root_cert = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("sslrootcert=") {
            Some(path) => {
                root_cert = Some(path.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, root_cert)
}

fn tls_config(root_cert: Option<&str>) -> Result<rustls::ClientConfig, SinkError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let setup = |what: String| SinkError::Setup(format!("PostgreSQL TLS: {what}"));
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| setup(format!("reading {path}: {e}")))?
            {
                let cert = cert.map_err(|e| setup(format!("{path}: {e}")))?;
                roots.add(cert).map_err(|e| setup(format!("{path}: {e}")))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A system certificate rustls cannot use is skipped, as browsers do.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl PostgresBooks {
    pub fn open(url: &str) -> Result<PostgresBooks, SinkError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::Setup(e.to_string()))?;
        let endpoint = Endpoint::parse(url)?;
        let client = runtime
            .block_on(connect(&runtime, &endpoint))
            .map_err(|e| SinkError::Setup(format!("connecting to PostgreSQL: {}", causes(&e))))?;
        Ok(PostgresBooks {
            endpoint,
            runtime,
            client,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        })
    }

    /// Gives up on a batch that takes longer than `timeout` ([`StoreError::TimedOut`]).
    pub fn with_command_timeout(mut self, timeout: Duration) -> PostgresBooks {
        self.command_timeout = timeout;
        self
    }

    /// Applies the migrations not yet applied, under an advisory lock so that processes
    /// starting together apply each once; returns the versions applied.
    pub fn migrate(&mut self) -> Result<Vec<i64>, SinkError> {
        let failed = |e: tokio_postgres::Error| SinkError::Migration(e.to_string());
        self.runtime.block_on(async {
            let transaction = self.client.transaction().await.map_err(failed)?;
            transaction
                .batch_execute(
                    "SELECT pg_advisory_xact_lock(7240011);
                     CREATE TABLE IF NOT EXISTS schema_migrations (
                        version BIGINT NOT NULL PRIMARY KEY,
                        name TEXT NOT NULL,
                        applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                )
                .await
                .map_err(failed)?;
            let mut applied = Vec::new();
            for migration in MIGRATIONS {
                let done = transaction
                    .query_opt(
                        "SELECT 1 FROM schema_migrations WHERE version = $1",
                        &[&migration.version],
                    )
                    .await
                    .map_err(failed)?;
                if done.is_some() {
                    continue;
                }
                transaction
                    .batch_execute(migration.sql)
                    .await
                    .map_err(failed)?;
                transaction
                    .execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        &[&migration.version, &migration.name],
                    )
                    .await
                    .map_err(failed)?;
                applied.push(migration.version);
            }
            transaction.commit().await.map_err(failed)?;
            Ok(applied)
        })
    }
}

impl PostgresBooks {
    /// The ExecIDs in the books that start with `prefix`, each as often as it is stored: what
    /// `eod check` reads back to prove its trades are there exactly once.
    pub fn exec_ids_starting_with(&mut self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}%", like_escaped(prefix));
        let client = &self.client;
        let query = async {
            client
                .query(
                    "SELECT exec_id FROM trades WHERE exec_id LIKE $1 ESCAPE '\\'",
                    &[&pattern],
                )
                .await
                .map_err(classify)
        };
        let rows = self
            .runtime
            .block_on(super::within(self.command_timeout, query))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

/// `text` matched literally in a LIKE pattern (escape character `\`).
pub(crate) fn like_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Staging table, COPY, upsert: the SQL of one batch.
pub fn batch_sql() -> (String, String, String) {
    let columns = COLUMNS.join(", ");
    let stage = "CREATE TEMP TABLE IF NOT EXISTS trades_stage (LIKE trades INCLUDING DEFAULTS) \
                 ON COMMIT DELETE ROWS"
        .to_owned();
    let copy = format!("COPY trades_stage ({columns}) FROM STDIN BINARY");
    let updates: Vec<String> = COLUMNS[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let upsert = format!(
        "INSERT INTO trades ({columns}) SELECT {columns} FROM trades_stage \
         ON CONFLICT (exec_id) DO UPDATE SET {}, updated_at = now()",
        updates.join(", ")
    );
    (stage, copy, upsert)
}

const PROGRESS_SQL: &str = "INSERT INTO sink_progress (sink, shard, time, rows_total, complete)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (sink, shard) DO UPDATE SET time = excluded.time, rows_total = excluded.rows_total,
         complete = excluded.complete, updated_at = now()";

fn classify(error: tokio_postgres::Error) -> StoreError {
    let Some(state) = error.code() else {
        // No SQLSTATE: the connection or the socket failed.
        return StoreError::Unavailable(error.to_string());
    };
    match &state.code()[..2] {
        // Data exception, integrity constraint violation: a row is at fault.
        "22" | "23" => StoreError::Refused(error.to_string()),
        // Connection exception, insufficient resources, operator intervention (shutdown).
        "08" | "53" | "57" => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Fatal(SinkError::Store(error.to_string())),
    }
}

impl BooksStore for PostgresBooks {
    fn write(&mut self, rows: &[BookRow], progress: &Progress) -> Result<(), StoreError> {
        if self.client.is_closed() {
            return Err(StoreError::Unavailable("connection closed".into()));
        }
        let (stage, copy, upsert) = batch_sql();
        let timeout = self.command_timeout;
        self.runtime.block_on(within(timeout, async {
            let transaction = self.client.transaction().await.map_err(classify)?;
            transaction.batch_execute(&stage).await.map_err(classify)?;
            let sink = transaction.copy_in(&copy).await.map_err(classify)?;
            let mut writer = pin!(BinaryCopyInWriter::new(sink, &TYPES));
            for row in rows {
                let r = BookRecord::from_row(row);
                let transact_time = system_time(r.transact_time);
                let status_time = r.status_time.map(system_time);
                let receive_time = r.receive_time.map(system_time);
                let values: [&(dyn ToSql + Sync); 25] = [
                    &r.exec_id,
                    &r.kind,
                    &r.corrects,
                    &r.trader_id,
                    &r.symbol,
                    &r.side,
                    &r.quantity,
                    &r.price,
                    &transact_time,
                    &r.status,
                    &r.status_by,
                    &status_time,
                    &r.trader_name,
                    &r.mpid,
                    &r.desk,
                    &r.strategy,
                    &r.cusip,
                    &r.isin,
                    &r.security_name,
                    &r.exchange,
                    &r.currency,
                    &r.enrichment_missing,
                    &r.archive_key,
                    &r.archive_offset,
                    &receive_time,
                ];
                writer.as_mut().write(&values).await.map_err(classify)?;
            }
            writer.finish().await.map_err(classify)?;
            transaction.execute(&upsert, &[]).await.map_err(classify)?;
            transaction
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
                .await
                .map_err(classify)?;
            transaction.commit().await.map_err(classify)
        }))
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        let client = self
            .runtime
            .block_on(connect(&self.runtime, &self.endpoint))
            .map_err(classify)?;
        self.client = client;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sql_copies_every_column_and_upserts_by_exec_id() {
        let (stage, copy, upsert) = batch_sql();
        assert!(stage.contains("LIKE trades"));
        assert!(copy.starts_with("COPY trades_stage (exec_id, kind, corrects,"));
        assert!(copy.ends_with("receive_time) FROM STDIN BINARY"));
        assert!(upsert.contains("ON CONFLICT (exec_id) DO UPDATE SET kind = excluded.kind"));
        assert!(!upsert.contains("exec_id = excluded.exec_id"));
        assert_eq!(TYPES.len(), COLUMNS.len());
    }

    #[test]
    fn the_root_certificate_is_taken_out_of_the_url() {
        assert_eq!(
            take_root_cert("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem"),
            (
                "postgres://u@h/db?sslmode=require".into(),
                Some("/ca.pem".into())
            )
        );
        assert_eq!(
            take_root_cert("postgres://u@h/db"),
            ("postgres://u@h/db".into(), None)
        );
        assert!(Endpoint::parse("postgres://u@h/db").unwrap().tls.is_none());
        assert!(Endpoint::parse("postgres://u@h/db?sslmode=require")
            .unwrap()
            .tls
            .is_some());
        let missing = Endpoint::parse("postgres://u@h/db?sslmode=require&sslrootcert=/nope.pem");
        assert!(missing.err().unwrap().to_string().contains("/nope.pem"));
    }
}
