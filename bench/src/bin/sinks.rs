//! Sink benchmark: rows/s of each store through the same code the pipeline uses, each against a
//! naive baseline in the same run (ratios, not absolute times: the machine is shared).
//!
//!     scripts/postgres.sh start; scripts/redis.sh start
//!     cargo run --release -p eod-bench --bin eod-bench-sinks -- --rows 200000 \
//!         --postgres postgres://postgres@127.0.0.1:15432/eod --redis redis://127.0.0.1:16379/9
//!
//! - books, SQLite: 5000-row transactions of upserts vs one transaction per row;
//! - books, PostgreSQL: binary COPY + upsert per 5000 rows vs row-by-row INSERT in 5000-row
//!   transactions;
//! - Redis: the views' positions in one MULTI/EXEC pipeline per snapshot vs one HSET round
//!   trip per position.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use eod_dataflow::{
    BookKind, BookRow, BookStatus, Money, PositionView, SecurityRef, SourceAt, TraderRef,
    ViewSnapshot,
};
use eod_sinks::books::postgres::PostgresBooks;
use eod_sinks::books::sqlite::SqliteBooks;
use eod_sinks::books::{BookRecord, BooksWriter};
use eod_sinks::{BatchWriter, Progress, SinkMetrics};

#[derive(Parser, Debug)]
#[command(about = "eod sink benchmark")]
struct Args {
    /// Books rows to write.
    #[arg(long, default_value_t = 200_000)]
    rows: usize,
    /// Rows per books transaction (the pipeline's default).
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// PostgreSQL server (a database `eod_bench` is created there).
    #[arg(long, env = "EOD_POSTGRES_URL")]
    postgres: Option<String>,
    /// Redis database to use (flushed).
    #[arg(long)]
    redis: Option<String>,
    /// Positions in the Redis snapshot.
    #[arg(long, default_value_t = 10_000)]
    positions: usize,
}

/// The (trader, symbol) of row `i`: a simulated day's 1,000 pairs (20 traders, 50 symbols),
/// in an order unrelated to their names, as the day's fills hit them. Each pair is a group of
/// the books' `(trader_id, symbol)` index with a page being written; rows cycling through 100
/// pairs kept that index's pages few and hot, and hid what the page size did to a replay's
/// books (bench/RESULTS.md, 2026-12-07, sixth session).
fn trader_and_symbol(i: usize) -> (String, String) {
    let pair = (i as u64).wrapping_mul(2_654_435_761) % 1000;
    (
        format!("TRADER{:02}", pair % 20),
        format!("SYM{:03}", pair / 20),
    )
}

fn rows(n: usize) -> Vec<BookRow> {
    (0..n)
        .map(|i| (i, trader_and_symbol(i)))
        .map(|(i, (trader, symbol))| BookRow {
            exec_id: format!("B{i:010}").into(),
            kind: BookKind::Fill,
            links: None,
            trader: trader.as_str().into(),
            symbol: symbol.as_str().into(),
            qty: if i % 2 == 0 { 100 } else { -100 },
            price: 10_000_000_000 + i as i64,
            transact_time: 1_795_640_370_000_000_000 + i as i64 * 1_000,
            status: BookStatus::Live,
            trader_ref: Some(std::sync::Arc::new(TraderRef {
                trader_id: trader.as_str().into(),
                name: "Trader".into(),
                mpid: "MPID".into(),
                desk: "Cash Equities".into(),
                strategy: "market-making".into(),
            })),
            security_ref: Some(std::sync::Arc::new(SecurityRef {
                symbol: symbol.as_str().into(),
                cusip: "SIM000010".into(),
                isin: "USSIM0000103".into(),
                name: "Simulated Corp".into(),
                exchange: "XNAS".into(),
                currency: "USD".into(),
            })),
            source: Some(SourceAt {
                archive_key: "gw1/20261125/gw1-20261125-00000001.fix".into(),
                archive_offset: i as u64 * 230,
                receive_time: 1_795_640_370_000_000_000,
            }),
        })
        .collect()
}

fn report(name: &str, rows: usize, time: Duration, baseline: Option<(usize, Duration)>) {
    let rate = rows as f64 / time.as_secs_f64().max(1e-9);
    print!(
        "{name:<44}{rows:>9} rows {:>9.3} s {rate:>12.0} rows/s",
        time.as_secs_f64()
    );
    if let Some((base_rows, base_time)) = baseline {
        let base_rate = base_rows as f64 / base_time.as_secs_f64().max(1e-9);
        print!("   {:.1}x the baseline", rate / base_rate);
    }
    println!();
}

fn write_books<S: eod_sinks::books::BooksStore>(
    store: S,
    rows: &[BookRow],
    batch: usize,
) -> Result<Duration> {
    let registry = prometheus::Registry::new();
    let mut writer = BooksWriter::new(
        store,
        SinkMetrics::register(&registry)?,
        Box::new(|_, _| {}),
    );
    // The writer takes each batch as its own; copied before the clock starts.
    let batches: Vec<Vec<BookRow>> = rows.chunks(batch).map(<[BookRow]>::to_vec).collect();
    let started = Instant::now();
    for (n, mut chunk) in batches.into_iter().enumerate() {
        let progress = Progress {
            sink: "books",
            shard: 0,
            time: n as u64,
            rows_total: ((n + 1) * batch).min(rows.len()) as u64,
            complete: true,
        };
        writer.write(&mut chunk, &progress)?;
    }
    Ok(started.elapsed())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let books = rows(args.rows);
    let scratch = tempfile::tempdir()?;
    println!(
        "eod sink benchmark ({} books rows, {}-row batches)",
        args.rows, args.batch
    );

    // SQLite: the pipeline's batches, then one transaction per row on a tenth of the rows.
    let mut store = SqliteBooks::open(&scratch.path().join("books.sqlite"))?;
    store.migrate()?;
    let time = write_books(store, &books, args.batch)?;
    let mut baseline_store = SqliteBooks::open(&scratch.path().join("baseline.sqlite"))?;
    baseline_store.migrate()?;
    let sample = &books[..args.rows / 10];
    let base = write_books(baseline_store, sample, 1)?;
    report(
        "books SQLite, batched upserts",
        args.rows,
        time,
        Some((sample.len(), base)),
    );
    report(
        "  baseline: one transaction per row",
        sample.len(),
        base,
        None,
    );

    if let Some(server) = &args.postgres {
        let (base_url, _) = server
            .rsplit_once('/')
            .context("postgres URL without a database")?;
        let url = format!("{base_url}/eod_bench");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let (client, connection) =
                tokio_postgres::connect(server, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client
                .batch_execute("DROP DATABASE IF EXISTS eod_bench WITH (FORCE)")
                .await?;
            client.batch_execute("CREATE DATABASE eod_bench").await?;
            anyhow::Ok(())
        })?;
        let mut store = PostgresBooks::open(&url)?;
        store.migrate()?;
        let time = write_books(store, &books, args.batch)?;
        // Baseline: the same rows as row-by-row INSERTs, 5000 per transaction.
        runtime.block_on(async {
            let (mut client, connection) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client.batch_execute("TRUNCATE trades").await?;
            let insert = client
                .prepare(
                    "INSERT INTO trades (exec_id, kind, trader_id, symbol, side, quantity, price, \
                     transact_time, status, enrichment_missing, archive_key, archive_offset) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7::TEXT::NUMERIC, $8, $9, $10, $11, $12) \
                     ON CONFLICT (exec_id) DO NOTHING",
                )
                .await?;
            let sample = &books[..args.rows / 10];
            let started = Instant::now();
            for chunk in sample.chunks(args.batch) {
                let transaction = client.transaction().await?;
                for row in chunk {
                    let r = BookRecord::from_row(row);
                    let price = r.price.to_string();
                    let time = eod_sinks::books::system_time(r.transact_time);
                    transaction
                        .execute(
                            &insert,
                            &[
                                &r.exec_id,
                                &r.kind,
                                &r.trader_id,
                                &r.symbol,
                                &r.side,
                                &r.quantity,
                                &price,
                                &time,
                                &r.status,
                                &r.enrichment_missing,
                                &r.archive_key,
                                &r.archive_offset,
                            ],
                        )
                        .await?;
                }
                transaction.commit().await?;
            }
            let base = started.elapsed();
            report(
                "books PostgreSQL, binary COPY + upsert",
                args.rows,
                time,
                Some((sample.len(), base)),
            );
            report("  baseline: row-by-row INSERT", sample.len(), base, None);
            anyhow::Ok(())
        })?;
    }

    if let Some(url) = &args.redis {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_connection()?;
        redis::cmd("FLUSHDB").query::<()>(&mut conn)?;
        let mut snapshot = ViewSnapshot::default();
        for i in 0..args.positions {
            let row = PositionView {
                trader: format!("TRADER{:02}", i % 20).into(),
                symbol: format!("SYM{:05}", i / 20).into(),
                net_qty: 100,
                trades: 3,
                avg_cost: Some(Money(12_345_678_900)),
                mark: Some(Money(12_400_000_000)),
                mark_source: None,
                realized_pnl: Some(Money(0)),
                unrealized_pnl: Some(Money(5_432_110_000)),
                total_pnl: Some(Money(5_432_110_000)),
            };
            snapshot
                .positions
                .insert((row.trader.clone(), row.symbol.clone()), row);
        }
        let started = Instant::now();
        eod_sinks::redis_sink::resynchronise(&mut conn, &snapshot)?;
        let full = started.elapsed();
        // Every position changes, snapshot after snapshot: the burst's worst case.
        let mut previous = snapshot.clone();
        let rounds = 5;
        let started = Instant::now();
        let every_key = eod_dataflow::Touched {
            positions: snapshot.positions.keys().cloned().collect(),
            ..Default::default()
        };
        for round in 1..=rounds {
            let mut next = previous.clone();
            for row in next.positions.values_mut_unordered() {
                row.net_qty += round;
            }
            eod_sinks::redis_sink::write_changes(&mut conn, &every_key, &next)?;
            previous = next;
        }
        let changes = started.elapsed();
        // Baseline: one HSET round trip per position.
        let started = Instant::now();
        for ((trader, symbol), row) in &snapshot.positions {
            let json = serde_json::to_string(row)?;
            redis::cmd("HSET")
                .arg(format!("positions:{trader}"))
                .arg(symbol.as_str())
                .arg(json)
                .query::<()>(&mut conn)?;
        }
        let base = started.elapsed();
        let n = args.positions;
        report(
            "Redis, full resync (one MULTI/EXEC)",
            n,
            full,
            Some((n, base)),
        );
        report(
            "Redis, every position changed (per snapshot)",
            n * rounds as usize,
            changes,
            Some((n, base)),
        );
        report("  baseline: one HSET round trip per row", n, base, None);
    }
    Ok(())
}
