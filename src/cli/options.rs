//! The option groups several commands share, and the helpers that read them.

use anyhow::{Context, Result};
use clap::Args;
use eod_dataflow::ViewStore;
use eod_runtime::books::{BatchLimits, BooksTarget, ReferenceData};
use eod_runtime::metrics::Metrics;
use eod_sinks::redis_sink::{RedisOptions, RedisSink};
use eod_sources::kafka::{KafkaConnection, Topics};
use eod_sources::schema_registry::WireFormat;
use eod_sources::simulator::SimConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

/// The simulated market: its seed and how many traders and symbols trade in it.
#[derive(Args, Debug)]
pub(crate) struct MarketArgs {
    /// Seed of the simulated market: the same seed gives the same messages.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Traders in the simulated market.
    #[arg(long, default_value_t = 20)]
    pub(crate) traders: usize,
    /// Symbols in the simulated market.
    #[arg(long, default_value_t = 50)]
    pub(crate) symbols: usize,
}

impl MarketArgs {
    /// The 16:00 market-close scenario for this market.
    pub(crate) fn sim_config(&self) -> SimConfig {
        let mut sim = SimConfig::market_close(self.seed);
        sim.traders = self.traders.max(1);
        sim.symbols = self.symbols.max(1);
        sim
    }
}

#[derive(Args, Debug)]
pub(crate) struct TopicArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "EOD_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub(crate) brokers: String,
    #[command(flatten)]
    pub(crate) security: KafkaSecurityArgs,
    /// Trade envelopes, keyed by symbol.
    #[arg(long, env = "EOD_TRADES_TOPIC", default_value = "trades.raw")]
    pub(crate) trades_topic: String,
    /// Dead letters, each with its reason and the original bytes.
    #[arg(long, env = "EOD_DLQ_TOPIC", default_value = "trades.dlq")]
    pub(crate) dlq_topic: String,
    /// Reference prices (close, bid/ask, previous close), keyed by symbol.
    #[arg(long, env = "EOD_PRICES_TOPIC", default_value = "prices")]
    pub(crate) prices_topic: String,
    /// Reference data (traders, securities), log-compacted; `eod reference` publishes to it.
    #[arg(long, env = "EOD_REFERENCE_TOPIC", default_value = "reference")]
    pub(crate) reference_topic: String,
    /// A Confluent-compatible Schema Registry (`http://HOST:PORT`, Apicurio's
    /// `.../apis/ccompat/v6`): register the protobuf schema at startup, refuse to start on an
    /// incompatible change, and frame trades, dead letters and prices in the Confluent wire
    /// format. Off by default: plain protobuf.
    #[arg(long, env = "EOD_SCHEMA_REGISTRY_URL")]
    pub(crate) schema_registry: Option<String>,
}

impl TopicArgs {
    pub(crate) fn connection(&self) -> Result<KafkaConnection> {
        self.security.connection(&self.brokers)
    }

    /// Plain protobuf, or the schema registered and records framed (see `--schema-registry`).
    pub(crate) fn wire_format(&self) -> Result<WireFormat> {
        let topics = self.topics();
        Ok(match &self.schema_registry {
            None => WireFormat::plain(&topics),
            Some(url) => WireFormat::register(url, &topics)?,
        })
    }

    pub(crate) fn topics(&self) -> Topics {
        Topics {
            trades: self.trades_topic.clone(),
            dead_letters: self.dlq_topic.clone(),
            prices: self.prices_topic.clone(),
            reference: self.reference_topic.clone(),
        }
    }
}

/// How to reach a secured cluster: TLS, SASL, or any librdkafka property.
#[derive(Args, Debug, Clone)]
pub(crate) struct KafkaSecurityArgs {
    /// Kafka security protocol.
    #[arg(long, default_value = "plaintext",
          value_parser = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"])]
    pub(crate) kafka_security_protocol: String,
    /// SASL mechanism (with sasl_plaintext or sasl_ssl).
    #[arg(long, value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub(crate) kafka_sasl_mechanism: Option<String>,
    /// SASL user name.
    #[arg(long)]
    pub(crate) kafka_sasl_username: Option<String>,
    /// SASL password (prefer --kafka-sasl-password-file or the environment to a flag).
    #[arg(long, hide_env_values = true)]
    pub(crate) kafka_sasl_password: Option<String>,
    /// Read the SASL password from this file (first line), e.g. a mounted secret.
    #[arg(long, conflicts_with = "kafka_sasl_password")]
    pub(crate) kafka_sasl_password_file: Option<PathBuf>,
    /// CA certificates (PEM) to verify the brokers with [default: the system's].
    #[arg(long)]
    pub(crate) kafka_ssl_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, requires = "kafka_ssl_key")]
    pub(crate) kafka_ssl_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, requires = "kafka_ssl_cert")]
    pub(crate) kafka_ssl_key: Option<PathBuf>,
    /// Any other librdkafka client property, `KEY=VALUE` (repeatable).
    #[arg(long, value_parser = parse_property)]
    pub(crate) kafka_option: Vec<(String, String)>,
}

pub(crate) fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

impl KafkaSecurityArgs {
    pub(crate) fn connection(&self, brokers: &str) -> Result<KafkaConnection> {
        let protocol = self.kafka_security_protocol.as_str();
        let mut kafka = KafkaConnection::plaintext(brokers);
        if protocol != "plaintext" {
            kafka = kafka.with("security.protocol", protocol);
        }
        if protocol.starts_with("sasl") {
            let password = match (&self.kafka_sasl_password, &self.kafka_sasl_password_file) {
                (Some(password), _) => password.clone(),
                (None, Some(path)) => secret_from_file(path, "the SASL password file")?,
                (None, None) => anyhow::bail!(
                    "--kafka-security-protocol {protocol} needs --kafka-sasl-password(-file)"
                ),
            };
            let (Some(mechanism), Some(username)) =
                (&self.kafka_sasl_mechanism, &self.kafka_sasl_username)
            else {
                anyhow::bail!(
                    "--kafka-security-protocol {protocol} needs --kafka-sasl-mechanism and \
                     --kafka-sasl-username"
                );
            };
            kafka = kafka
                .with("sasl.mechanism", mechanism)
                .with("sasl.username", username)
                .with("sasl.password", password);
        }
        let path = |p: &PathBuf| p.display().to_string();
        if let Some(ca) = &self.kafka_ssl_ca {
            kafka = kafka.with("ssl.ca.location", path(ca));
        }
        if let (Some(cert), Some(key)) = (&self.kafka_ssl_cert, &self.kafka_ssl_key) {
            kafka = kafka
                .with("ssl.certificate.location", path(cert))
                .with("ssl.key.location", path(key));
        }
        for (key, value) in &self.kafka_option {
            kafka = kafka.with(key, value.clone());
        }
        Ok(kafka)
    }
}

/// Trace export, besides the log on stderr (`EOD_LOG`).
#[derive(Args, Debug, Clone)]
pub(crate) struct TelemetryArgs {
    /// Export the tracing spans over OTLP/HTTP to this collector, e.g.
    /// `http://127.0.0.1:4318` (Jaeger, Tempo, the OpenTelemetry Collector).
    #[arg(long)]
    pub(crate) otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[arg(long, default_value = "eod")]
    pub(crate) otlp_service_name: String,
    /// Which spans to export: a filter like EOD_LOG's (`info`, `eod=debug,warn`).
    #[arg(long, default_value = "info")]
    pub(crate) otlp_spans: String,
}

impl TelemetryArgs {
    pub(crate) fn options(&self) -> crate::cli::telemetry::OtlpOptions {
        crate::cli::telemetry::OtlpOptions {
            endpoint: self.otlp_endpoint.clone(),
            service_name: self.otlp_service_name.clone(),
            filter: self.otlp_spans.clone(),
        }
    }
}

/// Who may read the views over HTTP, and how much at once.
#[derive(Args, Debug, Clone)]
pub(crate) struct HttpArgs {
    /// Bearer token for the query endpoint (`Authorization: Bearer ...`); required to bind a
    /// non-loopback address. Health probes and the dashboard page are exempt.
    #[arg(long, env = "EOD_AUTH_TOKEN", hide_env_values = true)]
    pub(crate) auth_token: Option<String>,
    /// Read the bearer token from this file (first line), e.g. a mounted secret.
    #[arg(long, conflicts_with = "auth_token")]
    pub(crate) auth_token_file: Option<PathBuf>,
    /// Longest time to answer one request, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) http_timeout_ms: u64,
    /// Requests served at once; more wait.
    #[arg(long, default_value_t = 256)]
    pub(crate) http_max_concurrent: usize,
    /// Live `/v1/stream` subscribers at once; more get 503.
    #[arg(long, default_value_t = 64)]
    pub(crate) http_max_streams: usize,
}

impl HttpArgs {
    pub(crate) fn policy(&self) -> Result<eod_queries::AccessPolicy> {
        let token = match (&self.auth_token, &self.auth_token_file) {
            (Some(token), _) => Some(token.trim().to_owned()),
            (None, Some(path)) => Some(
                secret_from_file(path, "the auth token file")?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        Ok(eod_queries::AccessPolicy {
            token: token.map(Into::into),
            request_timeout: Duration::from_millis(self.http_timeout_ms.max(1)),
            max_concurrent_requests: self.http_max_concurrent.max(1),
            max_streams: self.http_max_streams,
            ..eod_queries::AccessPolicy::default()
        })
    }
}

/// The speed path: the views mirrored into Redis.
#[derive(Args, Debug, Clone)]
pub(crate) struct RedisArgs {
    /// Mirror the views into Redis (`redis://HOST:PORT`): positions, totals, pub/sub. Written
    /// by the first process only; Redis being down never holds the views back.
    #[arg(long, env = "EOD_REDIS", hide_env_values = true)]
    pub(crate) redis: Option<String>,
    /// CA certificates (PEM) to verify a `rediss://` server with [default: the system's].
    #[arg(long, requires = "redis")]
    pub(crate) redis_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS with Redis.
    #[arg(long, requires_all = ["redis", "redis_key"])]
    pub(crate) redis_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS with Redis.
    #[arg(long, requires = "redis_cert")]
    pub(crate) redis_key: Option<PathBuf>,
}

impl RedisArgs {
    /// Starts the Redis sink on process 0 of the run (every process holds the complete view).
    pub(crate) fn spawn(
        &self,
        store: &Arc<ViewStore>,
        metrics: &Metrics,
        timely_args: &[String],
    ) -> Result<Option<RedisSink>> {
        let Some(url) = &self.redis else {
            return Ok(None);
        };
        if eod_runtime::timely_args::process_index(timely_args).map_err(anyhow::Error::msg)? != 0 {
            return Ok(None);
        }
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let mut options = RedisOptions::new(url);
        options.ca_pem = self.redis_ca.as_ref().map(read).transpose()?;
        if let (Some(cert), Some(key)) = (&self.redis_cert, &self.redis_key) {
            options.client_pem = Some((read(cert)?, read(key)?));
        }
        let sink = RedisSink::spawn(options, store.clone(), metrics.sinks.clone())?;
        Ok(Some(sink))
    }
}

/// The books (the enriched trade store) and the reference data that enriches them.
#[derive(Args, Debug, Clone)]
pub(crate) struct BooksArgs {
    /// Books store: `sqlite:PATH` or `postgres://USER@HOST:PORT/DB` [default for replay:
    /// sqlite beside --output, else ./eod-books.sqlite; for demo: in the temp directory].
    #[arg(long, env = "EOD_BOOKS", hide_env_values = true)]
    pub(crate) books: Option<BooksTarget>,
    /// Views only: write no books.
    #[arg(long, conflicts_with = "books")]
    pub(crate) no_books: bool,
    /// Traders CSV (`trader_id,name,mpid,desk,strategy`) [default: `<archive>.traders.csv`
    /// when it exists].
    #[arg(long, env = "EOD_TRADER_REFERENCE")]
    pub(crate) trader_reference: Option<PathBuf>,
    /// Securities CSV (`symbol,cusip,isin,name,exchange,currency`) [default:
    /// `<archive>.securities.csv` when it exists].
    #[arg(long, env = "EOD_SECURITY_REFERENCE")]
    pub(crate) security_reference: Option<PathBuf>,
    /// A books batch of this many rows is written at once; rows that waited for a busy
    /// writer go together in one transaction, up to 20 times this (replays: at least 50,000).
    #[arg(long, default_value_t = 5000, env = "EOD_BOOKS_BATCH_ROWS")]
    pub(crate) books_batch_rows: usize,
    /// Longest a books row waits for its batch, in milliseconds (replays: 500).
    #[arg(long, default_value_t = 5000, env = "EOD_BOOKS_BATCH_MS")]
    pub(crate) books_batch_ms: u64,
    /// Seconds a PostgreSQL or SQL Server books write may take; a longer one is given up and
    /// retried, and a row that keeps timing out alone is dead-lettered (reason `timeout`).
    #[arg(long, default_value_t = 60, env = "EOD_BOOKS_COMMAND_TIMEOUT")]
    pub(crate) books_command_timeout: u64,
    /// Live runs: where books rows wait on disk while the store is behind or down (the views
    /// go on meanwhile); emptied at start [default: `eod-books-spill-<pid>` in the temp
    /// directory].
    #[arg(long, env = "EOD_BOOKS_SPILL_DIR")]
    pub(crate) books_spill_dir: Option<PathBuf>,
    /// Live runs: books rows a writing worker keeps in memory before it spills the rest.
    #[arg(long, default_value_t = eod_sinks::spill::DEFAULT_MEMORY_ROWS, env = "EOD_BOOKS_MEMORY_ROWS")]
    pub(crate) books_memory_rows: usize,
}

impl BooksArgs {
    /// Only a store named with --books (or EOD_BOOKS).
    pub(crate) fn target_if_named(&self) -> Option<BooksTarget> {
        self.books.clone().filter(|_| !self.no_books)
    }

    pub(crate) fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_rows: self.books_batch_rows.max(1),
            max_age: Duration::from_millis(self.books_batch_ms),
            command_timeout: Duration::from_secs(self.books_command_timeout.max(1)),
            spill: None,
        }
    }

    /// A live run's limits: rows beyond `--books-memory-rows` wait on disk.
    pub(crate) fn live_limits(&self) -> BatchLimits {
        let dir = self.books_spill_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("eod-books-spill-{}", std::process::id()))
        });
        BatchLimits {
            spill: Some(eod_sinks::SpillOptions::new(dir, self.books_memory_rows)),
            ..self.limits()
        }
    }

    pub(crate) fn target(&self, default: impl FnOnce() -> PathBuf) -> Option<BooksTarget> {
        if self.no_books {
            return None;
        }
        Some(
            self.books
                .clone()
                .unwrap_or_else(|| BooksTarget::Sqlite(default())),
        )
    }

    /// Reference data from the flags, else from the CSVs `eod generate` writes beside `archive`.
    pub(crate) fn reference(&self, archive: Option<&str>) -> Result<ReferenceData> {
        let beside = |extension: &str| {
            archive
                .map(|a| PathBuf::from(a.trim_start_matches("file://").trim_end_matches('/')))
                .map(|dir| dir.with_extension(extension))
                .filter(|path| path.is_file())
        };
        let traders = self
            .trader_reference
            .clone()
            .or_else(|| beside("traders.csv"));
        let securities = self
            .security_reference
            .clone()
            .or_else(|| beside("securities.csv"));
        ReferenceData::load(traders.as_deref(), securities.as_deref())
    }
}

/// The first line of a secret's file (a mounted secret, say), without its line ending.
pub(crate) fn secret_from_file(path: &Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

pub(crate) fn read_prices(path: Option<&Path>) -> Result<Vec<eod_dataflow::PriceUpdate>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading prices {}", path.display()))?;
    eod_sources::prices::parse_prices_csv(&text).with_context(|| format!("in {}", path.display()))
}

/// What was read and what became of it, by outcome and dead-letter reason.
pub(crate) fn print_accounting(read_label: &str, a: &eod_dataflow::Accounting) {
    println!("{read_label:<16}{}", a.read);
    println!("trades          {}", a.fills);
    println!("busts           {}", a.busts);
    println!("corrections     {}", a.corrections);
    println!("dead letters    {}", a.dead_lettered());
    for (reason, n) in &a.dead_letters {
        println!("  {reason:<14}{n}");
    }
}
