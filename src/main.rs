//! The `eod` command line. Timely's own flags (`-w`, `-n`, `-p`, `-h`) go after `--`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use eod::books::{BatchLimits, BooksTarget, ReferenceData};
use eod::dead_letters::DeadLetterWriter;
use eod::demo::{run_demo, DemoOptions};
use eod::generate::generate_archive;
use eod::metrics::Metrics;
use eod::replay::{run_replay, ReplayOptions, ReplaySummary};
use eod::server::QueryServer;
use eod_dataflow::ViewStore;
use eod_queries::{positions_body, PositionFilter};
use eod_sinks::redis_sink::{RedisOptions, RedisSink};
use eod_sources::kafka::{KafkaConnection, Topics};
use eod_sources::simulator::SimConfig;

#[derive(Parser, Debug)]
#[command(
    name = "eod",
    version,
    about = "End-of-day trade processing: FIX in, exact positions and P&L out"
)]
struct Cli {
    /// TOML config file: top-level keys for every command, `[command]` tables for one.
    /// Precedence: flags > `EOD_*` environment > this file > built-in defaults.
    #[arg(long, global = true, env = eod::config::CONFIG_ENV)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay an archive of raw FIX files through the dataflow and print a summary.
    Replay(ReplayArgs),
    /// Run the simulator live into the dataflow and serve the HTTP views.
    Demo(DemoArgs),
    /// Write a simulated FIX archive (and its prices CSV) for replays and benchmarks.
    Generate(GenerateArgs),
    /// Validate a FIX archive and publish its trades to Kafka (dead letters to the DLQ topic).
    Ingest(IngestArgs),
    /// Run the dataflow from Kafka, serving the HTTP views.
    Run(RunArgs),
    /// Drive a gateway over TCP with the seeded simulator (prices to Kafka).
    Simulate(SimulateArgs),
    /// Publish reference data (traders, securities CSVs) to the reference topic, where
    /// `eod run` follows it: a changed record re-enriches the books rows it touches.
    Reference(ReferenceArgs),
    /// Inspect the layered configuration (defaults, file, environment, flags).
    Config(ConfigArgs),
}

#[derive(Args, Debug)]
struct ConfigArgs {
    #[command(subcommand)]
    action: ConfigAction,
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Print the effective configuration of a command as TOML, with each value's source and
    /// environment variable; passwords and tokens are redacted.
    /// Example: `eod --config eod.toml config show run -- -w 2`.
    Show {
        /// The command whose configuration to show (run, demo, replay, ingest, ...).
        command: String,
        /// That command's flags, as you would give them to it.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Args, Debug)]
struct ReferenceArgs {
    #[command(flatten)]
    kafka: TopicArgs,
    /// Traders CSV (`trader_id,name,mpid,desk,strategy`) to publish.
    #[arg(long)]
    trader_reference: Option<PathBuf>,
    /// Securities CSV (`symbol,cusip,isin,name,exchange,currency`) to publish.
    #[arg(long)]
    security_reference: Option<PathBuf>,
    /// Withdraw these traders (tombstones).
    #[arg(long, value_delimiter = ',')]
    withdraw_traders: Vec<String>,
    /// Withdraw these securities (tombstones).
    #[arg(long, value_delimiter = ',')]
    withdraw_securities: Vec<String>,
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// The gateway's address, `HOST:PORT` (`eod ingest --listen`).
    #[arg(long)]
    to: String,
    /// Simulator events to send (FIX messages and prices).
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Messages per simulated second outside the burst.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Rate multiplier during the 16:00 burst.
    #[arg(long, default_value_t = 10.0)]
    burst_multiplier: f64,
    /// Simulated seconds per wall second; 0 sends as fast as the gateway takes them.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    #[command(flatten)]
    market: MarketArgs,
    /// Fraction of deliberately broken messages (bad checksums, missing fields, ...).
    #[arg(long, default_value_t = 0.0)]
    broken_ratio: f64,
    /// Send prices to this Kafka cluster's prices topic.
    #[arg(long, env = "EOD_KAFKA_BROKERS")]
    brokers: Option<String>,
    #[command(flatten)]
    kafka_security: KafkaSecurityArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// The prices topic of --brokers.
    #[arg(long, env = "EOD_PRICES_TOPIC", default_value = "prices")]
    prices_topic: String,
}

/// The simulated market: its seed and how many traders and symbols trade in it.
#[derive(Args, Debug)]
struct MarketArgs {
    /// Seed of the simulated market: the same seed gives the same messages.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Traders in the simulated market.
    #[arg(long, default_value_t = 20)]
    traders: usize,
    /// Symbols in the simulated market.
    #[arg(long, default_value_t = 50)]
    symbols: usize,
}

impl MarketArgs {
    /// The 16:00 market-close scenario for this market.
    fn sim_config(&self) -> SimConfig {
        let mut sim = SimConfig::market_close(self.seed);
        sim.traders = self.traders.max(1);
        sim.symbols = self.symbols.max(1);
        sim
    }
}

#[derive(Args, Debug)]
struct TopicArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "EOD_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[command(flatten)]
    security: KafkaSecurityArgs,
    /// Trade envelopes, keyed by symbol.
    #[arg(long, env = "EOD_TRADES_TOPIC", default_value = "trades.raw")]
    trades_topic: String,
    /// Dead letters, each with its reason and the original bytes.
    #[arg(long, env = "EOD_DLQ_TOPIC", default_value = "trades.dlq")]
    dlq_topic: String,
    /// Reference prices (close, bid/ask, previous close), keyed by symbol.
    #[arg(long, env = "EOD_PRICES_TOPIC", default_value = "prices")]
    prices_topic: String,
    /// Reference data (traders, securities), log-compacted; `eod reference` publishes to it.
    #[arg(long, env = "EOD_REFERENCE_TOPIC", default_value = "reference")]
    reference_topic: String,
}

/// How to reach a secured cluster: TLS, SASL, or any librdkafka property.
#[derive(Args, Debug, Clone)]
struct KafkaSecurityArgs {
    /// Kafka security protocol.
    #[arg(long, default_value = "plaintext",
          value_parser = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"])]
    kafka_security_protocol: String,
    /// SASL mechanism (with sasl_plaintext or sasl_ssl).
    #[arg(long, value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])]
    kafka_sasl_mechanism: Option<String>,
    /// SASL user name.
    #[arg(long)]
    kafka_sasl_username: Option<String>,
    /// SASL password (prefer --kafka-sasl-password-file or the environment to a flag).
    #[arg(long, hide_env_values = true)]
    kafka_sasl_password: Option<String>,
    /// Read the SASL password from this file (first line), e.g. a mounted secret.
    #[arg(long, conflicts_with = "kafka_sasl_password")]
    kafka_sasl_password_file: Option<PathBuf>,
    /// CA certificates (PEM) to verify the brokers with [default: the system's].
    #[arg(long)]
    kafka_ssl_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, requires = "kafka_ssl_key")]
    kafka_ssl_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, requires = "kafka_ssl_cert")]
    kafka_ssl_key: Option<PathBuf>,
    /// Any other librdkafka client property, `KEY=VALUE` (repeatable).
    #[arg(long, value_parser = parse_property)]
    kafka_option: Vec<(String, String)>,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

impl KafkaSecurityArgs {
    fn connection(&self, brokers: &str) -> Result<KafkaConnection> {
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

impl TopicArgs {
    fn connection(&self) -> Result<KafkaConnection> {
        self.security.connection(&self.brokers)
    }

    fn topics(&self) -> Topics {
        Topics {
            trades: self.trades_topic.clone(),
            dead_letters: self.dlq_topic.clone(),
            prices: self.prices_topic.clone(),
            reference: self.reference_topic.clone(),
        }
    }
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["archive", "listen"])))]
struct IngestArgs {
    /// Replay this archive (directory, file:// or s3://bucket/prefix), read in name order.
    #[arg(long)]
    archive: Option<String>,
    /// Accept plain framed FIX streams over TCP on this address.
    #[arg(long, requires_all = ["spool", "archive_to"], env = "EOD_GATEWAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Local spool directory: raw bytes are fsynced here before anything else is done.
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Where closed archive segments are uploaded: a directory, file:// or
    /// s3://bucket/prefix (credentials and endpoint from the AWS_* environment). While it is
    /// unreachable, segments wait in the spool and go up in order when it is back.
    #[arg(long)]
    archive_to: Option<String>,
    /// Stop after this many connections (default: until Ctrl-C).
    #[arg(long)]
    connections: Option<usize>,
    /// Run the FIX session layer (we are the acceptor) instead of reading plain streams.
    #[arg(long, requires_all = ["session_dir", "counterparty"])]
    fix_session: bool,
    /// A counterparty allowed to log on (repeatable, or comma-separated):
    /// `SENDERCOMPID[:BEGINSTRING][@ADDRESS[/PREFIX]]`, e.g. `ACME`, `ACME:FIX.4.2`,
    /// `ACME@10.1.2.0/24`. Any other Logon is refused with a Logout. Required with
    /// --fix-session.
    #[arg(long, value_delimiter = ',')]
    counterparty: Vec<eod_fix::session::Counterparty>,
    /// Our CompID in FIX sessions (the counterparties' TargetCompID).
    #[arg(long, default_value = "EOD")]
    comp_id: String,
    /// The FIX BeginString of counterparties that name none.
    #[arg(long, default_value = "FIX.4.4")]
    begin_string: String,
    /// Where FIX sessions persist their sequence numbers.
    #[arg(long)]
    session_dir: Option<PathBuf>,
    /// An archive segment is closed (and uploaded) at this size...
    #[arg(long, default_value_t = 16 << 20)]
    segment_bytes: usize,
    /// ... or at this age in seconds, whichever comes first.
    #[arg(long, default_value_t = 60)]
    segment_seconds: u64,
    /// Trading date in archive keys [default: today, UTC].
    #[arg(long)]
    trading_date: Option<String>,
    /// Also publish these reference prices (CSV) to the prices topic.
    #[arg(long)]
    prices: Option<PathBuf>,
    #[command(flatten)]
    kafka: TopicArgs,
    /// Create missing topics (12 partitions for trades and prices, 3 for the DLQ).
    #[arg(long)]
    create_topics: bool,
    /// This gateway's name, in archive keys and on every envelope.
    #[arg(long, default_value = "gw1")]
    gateway_id: String,
    /// Serve Prometheus metrics (`/metrics`) and `/health/live` on this address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// Largest accepted FIX message in bytes; longer input is dead-lettered.
    #[arg(long, default_value_t = eod_fix::DEFAULT_MAX_MESSAGE)]
    max_message: usize,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    kafka: TopicArgs,
    /// Reference prices CSV loaded at start, besides the prices topic.
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Query endpoint address.
    #[arg(long, default_value = "127.0.0.1:8080", env = "EOD_LISTEN")]
    serve: SocketAddr,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// Stop once everything on the topics at start has been read (replays, tests).
    #[arg(long)]
    until_caught_up: bool,
    /// With --until-caught-up: write the final positions here.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Kafka consumer group under which offsets are committed (for lag monitoring).
    #[arg(long, default_value = "eod-run")]
    group_id: String,
    /// Dataflow epoch length in milliseconds.
    #[arg(long, default_value_t = 10)]
    epoch_ms: u64,
    /// Books store for `run`: no default (a distributed run names its store).
    #[command(flatten)]
    books: BooksArgs,
    #[command(flatten)]
    redis: RedisArgs,
    #[arg(last = true)]
    timely: Vec<String>,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// Directory (or file:// URL) holding the FIX files; read in name order.
    #[arg(long, env = "EOD_ARCHIVE")]
    archive: String,
    /// Prices CSV: `symbol,kind,price`, kind one of close, bid, ask, prev_close.
    #[arg(long, env = "EOD_PRICES")]
    prices: Option<PathBuf>,
    /// Write the final positions here, as `GET /v1/positions` serves them.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Dead-letter JSONL path [default: beside --output, else ./dead-letters.jsonl].
    #[arg(long)]
    dead_letters: Option<PathBuf>,
    /// Serve the query endpoint on this address during and after the replay (until Ctrl-C).
    #[arg(long)]
    serve: Option<SocketAddr>,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// Framed messages per dataflow epoch.
    #[arg(long, default_value_t = 100_000)]
    epoch_messages: u64,
    /// Largest accepted FIX message in bytes.
    #[arg(long, default_value_t = eod_fix::DEFAULT_MAX_MESSAGE)]
    max_message: usize,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    books: BooksArgs,
    /// Timely flags, after `--`: `-w THREADS`, `-n PROCESSES -p INDEX -h HOSTFILE`.
    #[command(flatten)]
    redis: RedisArgs,
    #[arg(last = true)]
    timely: Vec<String>,
}

/// Trace export, besides the log on stderr (`EOD_LOG`).
#[derive(Args, Debug, Clone)]
struct TelemetryArgs {
    /// Export the tracing spans over OTLP/HTTP to this collector, e.g.
    /// `http://127.0.0.1:4318` (Jaeger, Tempo, the OpenTelemetry Collector).
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[arg(long, default_value = "eod")]
    otlp_service_name: String,
    /// Which spans to export: a filter like EOD_LOG's (`info`, `eod=debug,warn`).
    #[arg(long, default_value = "info")]
    otlp_spans: String,
}

impl TelemetryArgs {
    fn options(&self) -> eod::telemetry::OtlpOptions {
        eod::telemetry::OtlpOptions {
            endpoint: self.otlp_endpoint.clone(),
            service_name: self.otlp_service_name.clone(),
            filter: self.otlp_spans.clone(),
        }
    }
}

/// Who may read the views over HTTP, and how much at once.
#[derive(Args, Debug, Clone)]
struct HttpArgs {
    /// Bearer token for the query endpoint (`Authorization: Bearer ...`); required to bind a
    /// non-loopback address. Health probes and the dashboard page are exempt.
    #[arg(long, env = "EOD_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Read the bearer token from this file (first line), e.g. a mounted secret.
    #[arg(long, conflicts_with = "auth_token")]
    auth_token_file: Option<PathBuf>,
    /// Longest time to answer one request, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    http_timeout_ms: u64,
    /// Requests served at once; more wait.
    #[arg(long, default_value_t = 256)]
    http_max_concurrent: usize,
    /// Live `/v1/stream` subscribers at once; more get 503.
    #[arg(long, default_value_t = 64)]
    http_max_streams: usize,
}

impl HttpArgs {
    fn policy(&self) -> Result<eod_queries::AccessPolicy> {
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
struct RedisArgs {
    /// Mirror the views into Redis (`redis://HOST:PORT`): positions, totals, pub/sub. Written
    /// by the first process only; Redis being down never holds the views back.
    #[arg(long, env = "EOD_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// CA certificates (PEM) to verify a `rediss://` server with [default: the system's].
    #[arg(long, requires = "redis")]
    redis_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS with Redis.
    #[arg(long, requires_all = ["redis", "redis_key"])]
    redis_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS with Redis.
    #[arg(long, requires = "redis_cert")]
    redis_key: Option<PathBuf>,
}

impl RedisArgs {
    /// Starts the Redis sink on process 0 of the run (every process holds the complete view).
    fn spawn(
        &self,
        store: &Arc<ViewStore>,
        metrics: &Metrics,
        timely_args: &[String],
    ) -> Result<Option<RedisSink>> {
        let Some(url) = &self.redis else {
            return Ok(None);
        };
        if eod::timely_args::process_index(timely_args).map_err(anyhow::Error::msg)? != 0 {
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
struct BooksArgs {
    /// Books store: `sqlite:PATH` or `postgres://USER@HOST:PORT/DB` [default for replay:
    /// sqlite beside --output, else ./eod-books.sqlite; for demo: in the temp directory].
    #[arg(long, env = "EOD_BOOKS", hide_env_values = true)]
    books: Option<BooksTarget>,
    /// Views only: write no books.
    #[arg(long, conflicts_with = "books")]
    no_books: bool,
    /// Traders CSV (`trader_id,name,mpid,desk,strategy`) [default: `<archive>.traders.csv`
    /// when it exists].
    #[arg(long, env = "EOD_TRADER_REFERENCE")]
    trader_reference: Option<PathBuf>,
    /// Securities CSV (`symbol,cusip,isin,name,exchange,currency`) [default:
    /// `<archive>.securities.csv` when it exists].
    #[arg(long, env = "EOD_SECURITY_REFERENCE")]
    security_reference: Option<PathBuf>,
    /// Most rows in one books transaction.
    #[arg(long, default_value_t = 5000, env = "EOD_BOOKS_BATCH_ROWS")]
    books_batch_rows: usize,
    /// Longest a books row waits for its batch, in milliseconds (replays write each
    /// completed epoch at once).
    #[arg(long, default_value_t = 5000, env = "EOD_BOOKS_BATCH_MS")]
    books_batch_ms: u64,
}

impl BooksArgs {
    /// Only a store named with --books (or EOD_BOOKS).
    fn target_if_named(&self) -> Option<BooksTarget> {
        self.books.clone().filter(|_| !self.no_books)
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_rows: self.books_batch_rows.max(1),
            max_age: Duration::from_millis(self.books_batch_ms),
        }
    }

    fn target(&self, default: impl FnOnce() -> PathBuf) -> Option<BooksTarget> {
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
    fn reference(&self, archive: Option<&str>) -> Result<ReferenceData> {
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

#[derive(Args, Debug)]
struct DemoArgs {
    /// Messages per second before and after the burst.
    #[arg(long, default_value_t = 2_000.0, env = "EOD_DEMO_RATE")]
    rate: f64,
    /// Rate multiplier during the 16:00 burst (which starts 30 s into the demo).
    #[arg(long, default_value_t = 10.0)]
    burst_multiplier: f64,
    #[command(flatten)]
    market: MarketArgs,
    /// Query endpoint address (loopback unless you mean it).
    #[arg(long, default_value = "127.0.0.1:8080", env = "EOD_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// Stop after this many seconds [default: run until Ctrl-C].
    #[arg(long)]
    duration: Option<f64>,
    /// Dataflow epoch length in milliseconds.
    #[arg(long, default_value_t = 10)]
    epoch_ms: u64,
    /// Dead-letter JSONL path [default: eod-demo-dead-letters.jsonl in the temp directory].
    #[arg(long)]
    dead_letters: Option<PathBuf>,
    #[command(flatten)]
    books: BooksArgs,
    #[command(flatten)]
    redis: RedisArgs,
    #[arg(last = true)]
    timely: Vec<String>,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// Directory to write FIX segments into; the prices CSV is written beside it.
    #[arg(long)]
    out: PathBuf,
    /// Simulator events to generate (FIX messages and price updates).
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    #[command(flatten)]
    market: MarketArgs,
    /// Fraction of deliberately broken messages.
    #[arg(long, default_value_t = 0.001)]
    broken_ratio: f64,
    /// Approximate size of each FIX segment in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    segment_bytes: usize,
}

fn main() -> Result<()> {
    let cli = parse_cli()?;
    let telemetry_args = match &cli.command {
        Command::Replay(args) => Some(&args.telemetry),
        Command::Demo(args) => Some(&args.telemetry),
        Command::Ingest(args) => Some(&args.telemetry),
        Command::Run(args) => Some(&args.telemetry),
        Command::Simulate(args) => Some(&args.telemetry),
        _ => None,
    };
    // Lives to the end of main: dropping it flushes the spans still batched.
    let _telemetry = eod::telemetry::init(
        &telemetry_args
            .map(TelemetryArgs::options)
            .unwrap_or_default(),
    )?;
    match cli.command {
        Command::Replay(args) => replay(args),
        Command::Demo(args) => demo(args),
        Command::Generate(args) => generate(args),
        Command::Ingest(args) => ingest(args),
        Command::Run(args) => run(args),
        Command::Simulate(args) => simulate(args),
        Command::Reference(args) => publish_reference(args),
        Command::Config(args) => match args.action {
            ConfigAction::Show { command, args } => show_config(cli.config, command, args),
        },
    }
}

/// The clap definition with the `EOD_*` environment layer added to every option.
fn cli_command() -> clap::Command {
    eod::config::with_env_names(<Cli as clap::CommandFactory>::command())
}

/// Parses `argv` through every layer: flags, then environment, then the config file.
fn parse_layers(
    argv: Vec<std::ffi::OsString>,
) -> Result<(clap::ArgMatches, Option<PathBuf>, eod::config::Layered)> {
    let cli = cli_command();
    let lenient = eod::config::lenient(&cli, &argv);
    let config = eod::config::config_path(&lenient);
    let layered = match &config {
        Some(path) => {
            let file = eod::config::ConfigFile::load(path)?;
            eod::config::apply_file(&cli, &argv, &lenient, &file)?
        }
        None => eod::config::Layered {
            argv,
            ..Default::default()
        },
    };
    let matches = cli
        .try_get_matches_from(&layered.argv)
        .unwrap_or_else(|e| e.exit());
    Ok((matches, config, layered))
}

fn parse_cli() -> Result<Cli> {
    let (matches, _, _) = parse_layers(std::env::args_os().collect())?;
    Ok(<Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
}

fn show_config(
    config: Option<PathBuf>,
    command: String,
    args: Vec<std::ffi::OsString>,
) -> Result<()> {
    let mut argv: Vec<std::ffi::OsString> = vec!["eod".into()];
    if let Some(path) = &config {
        argv.extend(["--config".into(), path.clone().into_os_string()]);
    }
    argv.push(command.clone().into());
    argv.extend(args);
    let (matches, config, layered) = parse_layers(argv)?;
    // The same checks the command itself would make.
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let cli = cli_command();
    let (name, sub_matches) = matches
        .subcommand()
        .context("no command to show the configuration of")?;
    let sub = cli
        .find_subcommand(name)
        .with_context(|| format!("unknown command `{name}`"))?;
    match &config {
        Some(path) => println!("# effective configuration; file {}", path.display()),
        None => println!("# effective configuration; no config file"),
    }
    print!(
        "{}",
        eod::config::show(sub, sub_matches, &layered.from_file)
    );
    Ok(())
}

/// The first line of a secret's file (a mounted secret, say), without its line ending.
fn secret_from_file(path: &Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

fn read_prices(path: Option<&Path>) -> Result<Vec<eod_dataflow::PriceUpdate>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading prices {}", path.display()))?;
    eod_sources::prices::parse_prices_csv(&text).with_context(|| format!("in {}", path.display()))
}

fn replay(args: ReplayArgs) -> Result<()> {
    let prices = read_prices(args.prices.as_deref())?;
    let dead_letters = args
        .dead_letters
        .clone()
        .unwrap_or_else(|| match &args.output {
            Some(output) => output.with_extension("dead-letters.jsonl"),
            None => PathBuf::from("dead-letters.jsonl"),
        });
    let store = ViewStore::new();
    let metrics = Metrics::new()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = args
        .serve
        .map(|addr| {
            QueryServer::start(
                addr,
                store.clone(),
                &metrics,
                args.http.policy()?,
                stop.clone(),
            )
        })
        .transpose()?;
    if let Some(server) = &server {
        eprintln!("serving http://{}", server.addr);
    }
    let options = ReplayOptions {
        archive: args.archive.clone(),
        prices,
        dead_letters: dead_letters.clone(),
        epoch_messages: args.epoch_messages.max(1),
        limits: eod::driver::REPLAY_LIMITS,
        max_message: args.max_message,
        timely_args: args.timely.clone(),
        progress: !args.quiet,
        books: args.books.target(|| match &args.output {
            Some(output) => output.with_extension("books.sqlite"),
            None => PathBuf::from("eod-books.sqlite"),
        }),
        books_batch: args.books.limits(),
        reference: args.books.reference(Some(&args.archive))?,
    };
    let redis = args.redis.spawn(&store, &metrics, &args.timely)?;
    let summary = run_replay(options, store, metrics);
    let summary = match summary {
        Ok(summary) => summary,
        Err(e) => {
            if let Some(redis) = redis {
                redis.finish();
            }
            return Err(e);
        }
    };
    if let Some(output) = &args.output {
        let body = positions_body(&summary.snapshot, &PositionFilter::default());
        std::fs::write(output, serde_json::to_vec_pretty(&body)?)
            .with_context(|| format!("writing {}", output.display()))?;
    }
    print_summary(&summary, &dead_letters);
    if let Some(server) = server {
        eprintln!(
            "replay complete; still serving http://{} (Ctrl-C to stop)",
            server.addr
        );
        server.wait()?;
    }
    if let Some(redis) = redis {
        redis.finish();
    }
    Ok(())
}

/// What was read and what became of it, by outcome and dead-letter reason.
fn print_accounting(read_label: &str, a: &eod_dataflow::Accounting) {
    println!("{read_label:<16}{}", a.read);
    println!("trades          {}", a.fills);
    println!("busts           {}", a.busts);
    println!("corrections     {}", a.corrections);
    println!("dead letters    {}", a.dead_lettered());
    for (reason, n) in &a.dead_letters {
        println!("  {reason:<14}{n}");
    }
}

fn print_summary(summary: &ReplaySummary, dead_letters: &Path) {
    let a = summary.accounting();
    println!("segments        {}", summary.segments);
    println!("bytes           {}", summary.bytes);
    print_accounting("messages", a);
    println!("skipped         {}", a.skipped);
    println!("unmatched       {}", summary.snapshot.unmatched.len());
    println!("positions       {}", summary.snapshot.positions.len());
    println!("elapsed         {:.3} s", summary.elapsed.as_secs_f64());
    println!("trades/s        {:.0}", summary.trades_per_second());
    println!(
        "accounted       {} of {} units, {} of {} messages found in the input ({})",
        a.accounted(),
        a.read,
        a.messages_framed,
        a.messages_in_input,
        if a.all_accounted() { "all" } else { "MISMATCH" }
    );
    if summary.dead_letters_written > 0 {
        println!("dead letters in {}", dead_letters.display());
    }
}

fn demo(args: DemoArgs) -> Result<()> {
    let mut sim = args.market.sim_config();
    sim.base_rate = args.rate.max(1.0);
    sim.burst_multiplier = args.burst_multiplier.max(1.0);
    sim.broken_ratio = 0.001;
    let dead_letters_path = args
        .dead_letters
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("eod-demo-dead-letters.jsonl"));
    let writer = DeadLetterWriter::start(dead_letters_path.clone());
    let store = ViewStore::new();
    let metrics = Metrics::new()?;
    let stop = Arc::new(AtomicBool::new(false));
    let options_books = args
        .books
        .target(|| std::env::temp_dir().join("eod-demo-books.sqlite"));
    let server = QueryServer::start(
        args.listen,
        store.clone(),
        &metrics,
        args.http.policy()?,
        stop.clone(),
    )?;
    eprintln!(
        "eod demo: {} msg/s, {}x burst at 16:00 (30 s in)",
        args.rate, args.burst_multiplier
    );
    eprintln!("  positions   http://{}/v1/positions", server.addr);
    eprintln!("  traders     http://{}/v1/pnl/traders", server.addr);
    eprintln!("  firm        http://{}/v1/pnl/firm", server.addr);
    eprintln!("  metrics     http://{}/metrics", server.addr);
    eprintln!("  dead letters {}", dead_letters_path.display());
    match &options_books {
        Some(books) => eprintln!("  books       {books}"),
        None => eprintln!("  books       (none)"),
    }
    eprintln!("Ctrl-C to stop.");
    let reference = args.books.reference(None)?.or_simulated(&sim);
    let options = DemoOptions {
        sim,
        epoch: Duration::from_millis(args.epoch_ms.max(1)),
        duration: args.duration.map(Duration::from_secs_f64),
        timely_args: args.timely.clone(),
        books: options_books,
        books_batch: args.books.limits(),
        reference,
    };
    let redis = args.redis.spawn(&store, &metrics, &args.timely)?;
    let result = run_demo(
        options,
        store.clone(),
        metrics,
        stop.clone(),
        writer.sender(),
    );
    if let Some(redis) = redis {
        redis.finish();
    }
    server.shutdown()?;
    writer.finish()?;
    result?;
    let snapshot = store.snapshot();
    let a = &snapshot.accounting;
    eprintln!(
        "stopped: {} messages, {} fills, {} busts, {} corrections, {} skipped, {} dead letters, {} positions",
        a.read,
        a.fills,
        a.busts,
        a.corrections,
        a.skipped,
        a.dead_lettered(),
        snapshot.positions.len()
    );
    Ok(())
}

fn generate(args: GenerateArgs) -> Result<()> {
    let mut sim = args.market.sim_config();
    sim.broken_ratio = args.broken_ratio.clamp(0.0, 1.0);
    let archive = generate_archive(&args.out, sim, args.messages, args.segment_bytes.max(1024))?;
    println!(
        "wrote {} FIX messages in {} segments to {} and {} prices to {}",
        archive.fix_messages,
        archive.segments,
        archive.dir.display(),
        archive.price_updates,
        archive.prices.display()
    );
    Ok(())
}

fn ingest(args: IngestArgs) -> Result<()> {
    let topics = args.kafka.topics();
    if args.create_topics {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(eod_sources::kafka::ensure_topics_with(
            &args.kafka.connection()?,
            &[
                (&topics.trades, 12),
                (&topics.dead_letters, 3),
                (&topics.prices, 12),
            ],
            &[(&topics.reference, 1)],
        ))?;
    }
    let metrics = Metrics::new()?;
    let metrics_server = args
        .metrics_listen
        .map(|addr| {
            QueryServer::start_metrics(
                addr,
                &metrics,
                args.http.policy()?,
                Arc::new(AtomicBool::new(false)),
            )
        })
        .transpose()?;
    if let Some(server) = &metrics_server {
        eprintln!("metrics     http://{}/metrics", server.addr);
    }
    let s = match (args.archive, args.listen) {
        (Some(archive), _) => {
            let options = eod::ingest::IngestOptions {
                archive,
                kafka: args.kafka.connection()?,
                topics,
                gateway_id: args.gateway_id,
                prices: read_prices(args.prices.as_deref())?,
                max_message: args.max_message,
            };
            eod::ingest::run_ingest(options, metrics)?
        }
        (None, Some(listen)) => {
            let trading_date = args.trading_date.unwrap_or_else(today_utc);
            let listen_options = eod::ingest::ListenOptions {
                listen,
                spool: args.spool.context("--spool is required with --listen")?,
                archive_to: args
                    .archive_to
                    .context("--archive-to is required with --listen")?,
                policy: eod_sources::archive_writer::SegmentPolicy {
                    gateway_id: args.gateway_id.clone(),
                    trading_date,
                    max_bytes: args.segment_bytes.max(1),
                    max_age: Duration::from_secs(args.segment_seconds.max(1)),
                },
                connections: args.connections,
            };
            let (writer, uploader) = eod::ingest::open_archive(&listen_options)?;
            let gateway = Arc::new(eod::ingest::Gateway::new(
                &args.kafka.connection()?,
                topics,
                &args.gateway_id,
                metrics,
                Some(writer),
                args.max_message,
            )?);
            gateway.publish_prices(&read_prices(args.prices.as_deref())?)?;
            let listener = std::net::TcpListener::bind(listen_options.listen)
                .with_context(|| format!("binding {}", listen_options.listen))?;
            eprintln!("gateway listening on {}", listener.local_addr()?);
            let stop = Arc::new(AtomicBool::new(false));
            let watcher = stop.clone();
            // Ctrl-C stops accepting; open connections finish and everything is flushed.
            std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
                        watcher.store(true, std::sync::atomic::Ordering::Release);
                    }
                }
            });
            let session = match (args.fix_session, args.session_dir) {
                (true, Some(state_dir)) => {
                    std::fs::create_dir_all(&state_dir)
                        .with_context(|| format!("creating {}", state_dir.display()))?;
                    Some(eod::ingest::SessionConfig {
                        acceptor: eod_fix::session::Acceptor {
                            comp_id: args.comp_id.clone(),
                            begin_string: args.begin_string.clone(),
                            counterparties: args.counterparty.clone(),
                        },
                        state_dir,
                        active: Default::default(),
                    })
                }
                _ => None,
            };
            eod::ingest::serve_tcp(
                gateway,
                listener,
                uploader,
                listen_options.connections,
                session,
                stop,
            )?
        }
        (None, None) => anyhow::bail!("give --archive or --listen"),
    };
    let c = &s.counts;
    println!("messages        {}", c.read);
    println!("trades          {}", c.trades());
    println!("skipped         {}", c.skipped);
    println!("dead letters    {}", c.dead_lettered());
    println!("prices          {}", s.prices);
    println!("delivered       {}", s.delivered);
    println!("elapsed         {:.3} s", s.elapsed.as_secs_f64());
    println!(
        "accounted       {} of {} messages found in the input ({})",
        c.messages_framed,
        c.messages_in_input,
        if c.all_accounted() { "all" } else { "MISMATCH" }
    );
    if let Some(server) = metrics_server {
        server.shutdown()?;
    }
    Ok(())
}

fn today_utc() -> String {
    eod_fix::time::format_utc_timestamp(eod_fix::time::now_utc_nanos())[..8].to_owned()
}

fn simulate(args: SimulateArgs) -> Result<()> {
    let mut sim = args.market.sim_config();
    sim.base_rate = args.rate.max(1.0);
    sim.burst_multiplier = args.burst_multiplier.max(1.0);
    sim.broken_ratio = args.broken_ratio.clamp(0.0, 1.0);
    let summary = eod::simulate::run_simulate(eod::simulate::SimulateOptions {
        to: args.to,
        sim,
        messages: args.messages,
        speed: args.speed.max(0.0),
        prices_to: args
            .brokers
            .map(|b| args.kafka_security.connection(&b))
            .transpose()?
            .map(|kafka| (kafka, args.prices_topic)),
    })?;
    println!("fix messages    {}", summary.fix_messages);
    println!("fix bytes       {}", summary.fix_bytes);
    println!("prices          {}", summary.prices);
    println!("elapsed         {:.3} s", summary.elapsed.as_secs_f64());
    Ok(())
}

fn publish_reference(args: ReferenceArgs) -> Result<()> {
    use eod_sources::reference_data::ReferenceRecord;
    let topic = args.kafka.reference_topic.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let kafka = args.kafka.connection()?;
    runtime.block_on(eod_sources::kafka::ensure_topics_with(
        &kafka,
        &[],
        &[(&topic, 1)],
    ))?;
    let data = ReferenceData::load(
        args.trader_reference.as_deref(),
        args.security_reference.as_deref(),
    )?;
    let producer = eod_sources::kafka::RecordProducer::new(&kafka)?;
    let records = data
        .traders
        .into_iter()
        .map(ReferenceRecord::Trader)
        .chain(data.securities.into_iter().map(ReferenceRecord::Security));
    let mut published = 0;
    for record in records {
        producer.send(&topic, record.key().as_bytes(), record.value().as_bytes())?;
        published += 1;
    }
    let tombstones = args
        .withdraw_traders
        .iter()
        .map(|id| format!("trader:{id}"))
        .chain(
            args.withdraw_securities
                .iter()
                .map(|s| format!("security:{s}")),
        );
    let mut withdrawn = 0;
    for key in tombstones {
        producer.send(&topic, key.as_bytes(), b"")?;
        withdrawn += 1;
    }
    producer.flush(Duration::from_secs(30))?;
    println!("published       {published}");
    println!("withdrawn       {withdrawn}");
    Ok(())
}

fn run(args: RunArgs) -> Result<()> {
    let store = ViewStore::new();
    let metrics = Metrics::new()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = QueryServer::start(
        args.serve,
        store.clone(),
        &metrics,
        args.http.policy()?,
        stop.clone(),
    )?;
    eprintln!("serving http://{}", server.addr);
    let options = eod::run::RunOptions {
        kafka: args.kafka.connection()?,
        topics: args.kafka.topics(),
        group_id: args.group_id,
        prices: read_prices(args.prices.as_deref())?,
        epoch: Duration::from_millis(args.epoch_ms.max(1)),
        limits: eod::driver::LIVE_LIMITS,
        until_caught_up: args.until_caught_up,
        books: args.books.target_if_named(),
        books_batch: args.books.limits(),
        reference: args.books.reference(None)?,
        reference_from_topic: true,
        timely_args: args.timely.clone(),
    };
    let redis = args.redis.spawn(&store, &metrics, &args.timely)?;
    let result = eod::run::run_kafka(options, store, metrics, stop);
    if let Some(redis) = redis {
        redis.finish();
    }
    server.shutdown()?;
    let summary = result?;
    if let Some(output) = &args.output {
        let body = positions_body(&summary.snapshot, &PositionFilter::default());
        std::fs::write(output, serde_json::to_vec_pretty(&body)?)
            .with_context(|| format!("writing {}", output.display()))?;
    }
    print_accounting("records", &summary.snapshot.accounting);
    println!("positions       {}", summary.snapshot.positions.len());
    println!("elapsed         {:.3} s", summary.elapsed.as_secs_f64());
    let h = &summary.latency_micros;
    if !h.is_empty() {
        println!(
            "fill-to-view    p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms (this process's reads)",
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.value_at_quantile(0.999) as f64 / 1e3,
            h.max() as f64 / 1e3
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option says what it does (its default and env name are printed beside it).
    #[test]
    fn every_option_is_documented() {
        let cli = cli_command();
        let mut undocumented = Vec::new();
        for command in cli.get_subcommands() {
            for arg in command.get_arguments() {
                let named = arg.get_long().is_some() && arg.get_id() != "help";
                if named && arg.get_help().is_none() {
                    undocumented.push(format!("{} --{}", command.get_name(), arg.get_id()));
                }
            }
        }
        assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
    }

    #[test]
    fn command_line_definition_is_consistent() {
        // Catches clashing flag names across flattened argument groups before a user does.
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
