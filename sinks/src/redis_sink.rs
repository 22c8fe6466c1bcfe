//! The speed path to Redis: the views of this process, as they complete, mirrored into Redis
//! and announced on pub/sub.
//!
//! Per write, one MULTI/EXEC covering every snapshot published since the last one, from the
//! dataflow's deltas (the keys they touched, at their current values): `HSET positions:{trader}` for
//! every changed position (HDEL for one that closed out of the view), the trader totals in
//! `HSET pnl:traders`, the firm totals in `SET pnl:firm`, the time they are consistent with in
//! `SET pnl:as_of`, and `PUBLISH pnl.{trader}` with each trader's changes. Values are JSON with
//! decimals as strings.
//!
//! Redis is a cache of the views, never a gate on them: the sink follows the view store on its
//! own thread, and while Redis is down a circuit breaker keeps it from hammering the server and
//! the dataflow does not wait. What Redis holds is unknown after a failure, so the first write
//! that succeeds afterwards is a full resynchronisation of the current state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eod_dataflow::{PositionView, Text, Totals, Touched, ViewSnapshot, ViewStore};
use serde::Serialize;

use crate::breaker::CircuitBreaker;
use crate::{SinkError, SinkMetrics};

const SINK: &str = "redis";

#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://` or, for TLS, `rediss://` (the system's roots unless `ca_pem` is given).
    pub url: String,
    /// CA certificates (PEM) to verify a `rediss://` server with.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Connect and command timeout.
    pub timeout: Duration,
    pub breaker_cooldown: Duration,
    pub breaker_max_cooldown: Duration,
}

impl RedisOptions {
    pub fn new(url: &str) -> RedisOptions {
        RedisOptions {
            url: url.to_owned(),
            ca_pem: None,
            client_pem: None,
            timeout: Duration::from_secs(2),
            breaker_cooldown: Duration::from_millis(250),
            breaker_max_cooldown: Duration::from_secs(5),
        }
    }
}

/// The URL's password (`redis://:secret@host`) is never printed.
impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &crate::redact::url_password(&self.url))
            .field("custom_ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client_pem.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The running sink; stop it with [`RedisSink::finish`].
pub struct RedisSink {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl RedisSink {
    /// Starts following `store`. Fails only on a malformed URL: an unreachable server is an
    /// outage the breaker rides out.
    pub fn spawn(
        options: RedisOptions,
        store: Arc<ViewStore>,
        metrics: SinkMetrics,
    ) -> Result<RedisSink, SinkError> {
        let client = if options.ca_pem.is_some() || options.client_pem.is_some() {
            let certificates = redis::TlsCertificates {
                client_tls: options.client_pem.clone().map(|(client_cert, client_key)| {
                    redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }
                }),
                root_cert: options.ca_pem.clone(),
            };
            redis::Client::build_with_tls(options.url.as_str(), certificates)
        } else {
            redis::Client::open(options.url.as_str())
        }
        .map_err(|e| SinkError::Setup(format!("redis URL or TLS settings: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = std::thread::Builder::new()
            .name("redis-sink".into())
            .spawn(move || follow(client, options, store, metrics, stopping))
            .map_err(|e| SinkError::Setup(format!("spawning the redis sink: {e}")))?;
        Ok(RedisSink { stop, handle })
    }

    /// Stops after one last attempt to write the current snapshot.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.handle.join();
    }
}

fn follow(
    client: redis::Client,
    options: RedisOptions,
    store: Arc<ViewStore>,
    metrics: SinkMetrics,
    stop: Arc<AtomicBool>,
) {
    let mut breaker =
        CircuitBreaker::new(1, options.breaker_cooldown, options.breaker_max_cooldown);
    let mut connection: Option<redis::Connection> = None;
    // The store version Redis holds, when known: `None` after a failure (resynchronise).
    let mut written: Option<u64> = None;
    let mut seen = 0;
    metrics.breaker_state.with_label_values(&[SINK]).set(0);
    loop {
        let stopping = stop.load(Ordering::Acquire);
        seen = store.wait_newer(seen, Duration::from_millis(50));
        if written == Some(store.version()) {
            if stopping {
                return;
            }
            continue;
        }
        if !breaker.allow(Instant::now()) {
            if stopping {
                tracing::warn!("redis unreachable at shutdown: it lags the views");
                return;
            }
            continue;
        }
        let started = Instant::now();
        // The deltas since what Redis holds; none when it holds nothing known or the store
        // no longer has them all (the sink fell far behind): then a full resynchronisation.
        let update = store.follow(written);
        let current = &update.snapshot;
        let touched = update.touched();
        let _span = tracing::debug_span!(
            "redis_write",
            as_of = current.as_of.time,
            resync = touched.is_none()
        )
        .entered();
        let result = connect(&client, &options, &mut connection).and_then(|conn| match &touched {
            Some(touched) => write_changes(conn, touched, current),
            None => resynchronise(conn, current),
        });
        match result {
            Ok(rows) => {
                if touched.is_none() {
                    metrics.resyncs.with_label_values(&[SINK]).inc();
                    tracing::info!(rows, "redis resynchronised with the views");
                }
                breaker.on_success();
                written = Some(update.version);
                metrics.store_up.with_label_values(&[SINK]).set(1);
                metrics.rows_written.with_label_values(&[SINK]).inc_by(rows);
                metrics.batches.with_label_values(&[SINK]).inc();
                metrics
                    .batch_rows
                    .with_label_values(&[SINK])
                    .observe(rows as f64);
                metrics
                    .batch_seconds
                    .with_label_values(&[SINK])
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis write failed; views go on without it");
                breaker.on_failure(Instant::now());
                connection = None;
                written = None;
                metrics.store_up.with_label_values(&[SINK]).set(0);
                metrics
                    .retries
                    .with_label_values(&[SINK, "unavailable"])
                    .inc();
                if stopping {
                    return;
                }
            }
        }
        metrics
            .breaker_state
            .with_label_values(&[SINK])
            .set(breaker.state_code());
    }
}

fn connect<'c>(
    client: &redis::Client,
    options: &RedisOptions,
    connection: &'c mut Option<redis::Connection>,
) -> redis::RedisResult<&'c mut redis::Connection> {
    if connection.is_none() {
        let conn = client.get_connection_with_timeout(options.timeout)?;
        conn.set_read_timeout(Some(options.timeout))?;
        conn.set_write_timeout(Some(options.timeout))?;
        *connection = Some(conn);
    }
    match connection.as_mut() {
        Some(conn) => Ok(conn),
        None => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "no connection",
        ))),
    }
}

pub fn positions_key(trader: &str) -> String {
    format!("positions:{trader}")
}

pub fn channel(trader: &str) -> String {
    format!("pnl.{trader}")
}

pub const TRADERS_KEY: &str = "pnl:traders";
pub const FIRM_KEY: &str = "pnl:firm";
pub const AS_OF_KEY: &str = "pnl:as_of";

/// What `PUBLISH pnl.{trader}` carries.
#[derive(Serialize)]
struct TraderChange<'a> {
    trader: &'a str,
    /// Dataflow time the change is consistent with.
    as_of: u64,
    positions: Vec<&'a PositionView>,
    /// Symbols no longer in the view.
    removed: Vec<&'a str>,
    totals: Option<&'a Totals>,
    /// True when this is the full state after a resynchronisation, not a change.
    full: bool,
}

fn json<T: Serialize>(value: &T) -> String {
    // Our own plain data types: serialising them cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

type Rows<'a> = BTreeMap<&'a str, Vec<&'a PositionView>>;

fn by_trader(snapshot: &ViewSnapshot) -> Rows<'_> {
    let mut rows: Rows<'_> = BTreeMap::new();
    for ((trader, _), row) in &snapshot.positions {
        rows.entry(trader.as_str()).or_default().push(row);
    }
    rows
}

/// One transaction with the keys `touched` names, at their values in `current` (a touched
/// key `current` lacks is deleted); returns rows written. The deltas name the keys, so a
/// write costs the changes, not a comparison of snapshots.
pub fn write_changes(
    conn: &mut redis::Connection,
    touched: &Touched,
    current: &ViewSnapshot,
) -> redis::RedisResult<u64> {
    let mut changed: BTreeMap<&str, (Vec<&PositionView>, Vec<&str>)> = BTreeMap::new();
    for key in &touched.positions {
        let (positions, removed) = changed.entry(key.0.as_str()).or_default();
        match current.positions.get(key) {
            Some(row) => positions.push(row),
            None => removed.push(key.1.as_str()),
        }
    }
    let traders_changed: BTreeSet<&Text> = touched.traders.iter().collect();
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut rows = 0u64;
    for (trader, (positions, removed)) in &changed {
        let key = positions_key(trader);
        if !positions.is_empty() {
            let fields: Vec<(&str, String)> = positions
                .iter()
                .map(|r| (r.symbol.as_str(), json(r)))
                .collect();
            pipe.hset_multiple(&key, &fields).ignore();
            rows += fields.len() as u64;
        }
        if !removed.is_empty() {
            pipe.hdel(&key, removed).ignore();
        }
    }
    for trader in &traders_changed {
        match current.traders.get(*trader) {
            Some(totals) => pipe
                .hset(TRADERS_KEY, trader.as_str(), json(totals))
                .ignore(),
            None => pipe.hdel(TRADERS_KEY, trader.as_str()).ignore(),
        };
    }
    if touched.firm {
        match &current.firm {
            Some(firm) => pipe.set(FIRM_KEY, json(firm)).ignore(),
            None => pipe.del(FIRM_KEY).ignore(),
        };
    }
    pipe.set(AS_OF_KEY, json(&current.as_of)).ignore();
    let touched: BTreeSet<&str> = changed
        .keys()
        .copied()
        .chain(traders_changed.iter().map(|t| t.as_str()))
        .collect();
    for trader in touched {
        let (positions, removed) = changed.remove(trader).unwrap_or_default();
        let change = TraderChange {
            trader,
            as_of: current.as_of.time,
            positions,
            removed,
            totals: current.traders.get(trader),
            full: false,
        };
        pipe.publish(channel(trader), json(&change)).ignore();
    }
    pipe.query::<()>(conn)?;
    Ok(rows)
}

/// Replaces whatever Redis holds with `current`, in one transaction, and announces each
/// trader's full state.
pub fn resynchronise(
    conn: &mut redis::Connection,
    current: &ViewSnapshot,
) -> redis::RedisResult<u64> {
    // Stale traders (in Redis, no longer in the views) must go too.
    let stale: Vec<String> = {
        use redis::TypedCommands;
        conn.scan_match::<_, String>("positions:*")?
            .collect::<redis::RedisResult<Vec<String>>>()?
    };
    let mut pipe = redis::pipe();
    pipe.atomic();
    if !stale.is_empty() {
        pipe.del(&stale).ignore();
    }
    pipe.del(&[TRADERS_KEY, FIRM_KEY]).ignore();
    let rows = by_trader(current);
    let mut written = 0u64;
    for (trader, positions) in &rows {
        let fields: Vec<(&str, String)> = positions
            .iter()
            .map(|r| (r.symbol.as_str(), json(r)))
            .collect();
        pipe.hset_multiple(positions_key(trader), &fields).ignore();
        written += fields.len() as u64;
    }
    let totals: Vec<(&str, String)> = current
        .traders
        .iter()
        .map(|(trader, totals)| (trader.as_str(), json(totals)))
        .collect();
    if !totals.is_empty() {
        pipe.hset_multiple(TRADERS_KEY, &totals).ignore();
    }
    if let Some(firm) = &current.firm {
        pipe.set(FIRM_KEY, json(firm)).ignore();
    }
    pipe.set(AS_OF_KEY, json(&current.as_of)).ignore();
    for (trader, positions) in rows {
        let change = TraderChange {
            trader,
            as_of: current.as_of.time,
            positions,
            removed: Vec::new(),
            totals: current.traders.get(trader),
            full: true,
        };
        pipe.publish(channel(trader), json(&change)).ignore();
    }
    pipe.query::<()>(conn)?;
    Ok(written)
}
