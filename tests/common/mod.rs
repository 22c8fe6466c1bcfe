//! Helpers shared by the integration tests (each test crate uses some of them).
#![allow(dead_code)]

pub mod fixture;
pub mod http;
pub mod outcomes;
pub mod server;

use std::path::Path;

use eod_dataflow::TradeEvent;
use eod_fix::{Decoded, Decoder, Framed, Framer};
use eod_sources::envelope::to_event;

/// The value of `name`, or `None` after saying the test is skipped and what sets it.
pub fn env_or_skip(name: &str, set_by: &str) -> Option<String> {
    let value = std::env::var(name).ok().filter(|v| !v.is_empty());
    if value.is_none() {
        eprintln!("skipped: {name} is not set ({set_by})");
    }
    value
}

/// The number printed after `label` on a line of its own in a command's summary
/// (`trades          42`).
pub fn printed(stdout: &str, label: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| {
            let (name, value) = l.trim().rsplit_once(char::is_whitespace)?;
            (name.trim() == label).then(|| value.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no `{label}` in:\n{stdout}"))
}

/// `eod replay --no-books` of `archive` with its dead letters in `dead_letters` (and its
/// positions in `output`, if given): its stdout, after checking it succeeded.
pub fn replay_no_books(archive: &Path, dead_letters: &Path, output: Option<&Path>) -> String {
    let mut replay = std::process::Command::new(env!("CARGO_BIN_EXE_eod"));
    replay
        .args(["replay", "--quiet", "--no-books", "--archive"])
        .arg(archive)
        .arg("--dead-letters")
        .arg(dead_letters);
    if let Some(output) = output {
        replay.arg("--output").arg(output);
    }
    let out = replay.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Decodes an archive independently of the code under test: every file in name order.
/// Returns the trade events and the number of framed units (messages and dead chunks).
pub fn decode_archive(dir: &Path) -> (Vec<TradeEvent>, u64) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let (mut events, mut framed) = (Vec::new(), 0u64);
    for path in names {
        let mut framer = Framer::default();
        framer.push(&std::fs::read(&path).unwrap());
        framer.finish();
        while let Some(frame) = framer.next_frame() {
            framed += 1;
            if let Framed::Message { bytes, .. } = frame {
                if let Ok(Decoded::Trade(fields)) = Decoder::new().decode(bytes) {
                    events.push(to_event(&eod_fix::check_trade(fields).unwrap()));
                }
            }
        }
    }
    (events, framed)
}

/// One row of the books table as a test reads it back, whatever the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub exec_id: String,
    pub kind: String,
    pub corrects: Option<String>,
    pub trader_id: String,
    pub symbol: String,
    pub side: String,
    pub quantity: i64,
    pub price: String,
    pub status: String,
    pub status_by: Option<String>,
    pub trader_name: Option<String>,
    pub security_name: Option<String>,
    pub enrichment_missing: bool,
    pub archive_key: Option<String>,
    pub archive_offset: Option<i64>,
}

pub const STORED_COLUMNS: &str = "exec_id, kind, corrects, trader_id, symbol, side, quantity, \
    price, status, status_by, trader_name, security_name, enrichment_missing, archive_key, \
    archive_offset";

pub fn sqlite_rows(connection: &rusqlite::Connection) -> Vec<StoredRow> {
    let mut statement = connection
        .prepare(&format!("SELECT {STORED_COLUMNS} FROM trades"))
        .unwrap();
    statement
        .query_map([], |r| {
            Ok(StoredRow {
                exec_id: r.get(0)?,
                kind: r.get(1)?,
                corrects: r.get(2)?,
                trader_id: r.get(3)?,
                symbol: r.get(4)?,
                side: r.get(5)?,
                quantity: r.get(6)?,
                price: r.get(7)?,
                status: r.get(8)?,
                status_by: r.get(9)?,
                trader_name: r.get(10)?,
                security_name: r.get(11)?,
                enrichment_missing: r.get(12)?,
                archive_key: r.get(13)?,
                archive_offset: r.get(14)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn price_text(mantissa: i64) -> String {
    format!("{}.{:08}", mantissa / 100_000_000, mantissa % 100_000_000)
}

/// The books hold every execution of the archive exactly once, each with the status the
/// archive's busts and corrections give it, enriched exactly where reference data exists,
/// pointing at its own FIX bytes; the live rows add up to the positions.
pub fn assert_books_match(
    rows: &[StoredRow],
    events: &[TradeEvent],
    snapshot: &eod_dataflow::ViewSnapshot,
    reference: &eod_runtime::books::ReferenceData,
    archive_dir: &Path,
) -> BooksStats {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    // From the archive: executions (smallest record per ExecID) and the earliest kill of each.
    let mut executions: BTreeMap<String, (bool, Option<String>, eod_dataflow::Fill)> =
        BTreeMap::new();
    let mut kills: BTreeMap<String, (i64, String, &str)> = BTreeMap::new();
    let mut keep_min_kill = |target: &str, kill: (i64, String, &'static str)| {
        let slot = kills.entry(target.to_owned()).or_insert(kill.clone());
        if kill < *slot {
            *slot = kill;
        }
    };
    for event in events {
        match event {
            TradeEvent::Fill(f) => {
                let candidate = (false, None, f.clone());
                let slot = executions
                    .entry(f.exec_id.to_string())
                    .or_insert(candidate.clone());
                if candidate < *slot {
                    *slot = candidate;
                }
            }
            TradeEvent::Correct(c) => {
                let candidate = (true, Some(c.target.to_string()), c.fill.clone());
                let slot = executions
                    .entry(c.fill.exec_id.to_string())
                    .or_insert(candidate.clone());
                if candidate < *slot {
                    *slot = candidate;
                }
                keep_min_kill(
                    &c.target,
                    (
                        c.fill.transact_time,
                        c.fill.exec_id.to_string(),
                        "corrected",
                    ),
                );
            }
            TradeEvent::Bust(b) => keep_min_kill(
                &b.target,
                (b.transact_time, b.exec_id.to_string(), "busted"),
            ),
        }
    }
    let stored: BTreeMap<&str, &StoredRow> = rows.iter().map(|r| (r.exec_id.as_str(), r)).collect();
    assert_eq!(
        stored.len(),
        rows.len(),
        "an ExecID is in the books more than once"
    );
    let expected_ids: BTreeSet<&str> = executions.keys().map(String::as_str).collect();
    let stored_ids: BTreeSet<&str> = stored.keys().copied().collect();
    assert_eq!(
        stored_ids, expected_ids,
        "books and archive disagree on which executions exist"
    );

    let traders: BTreeSet<&str> = reference
        .traders
        .iter()
        .map(|t| t.trader_id.as_str())
        .collect();
    let securities: BTreeSet<&str> = reference
        .securities
        .iter()
        .map(|s| s.symbol.as_str())
        .collect();
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut live: BTreeMap<(String, String), (u64, i128)> = BTreeMap::new();
    let (mut busted, mut corrected, mut missing) = (0, 0, 0);
    for (id, (is_correction, corrects, fill)) in &executions {
        let row = stored[id.as_str()];
        let kill = kills.get(id);
        let status = kill.map(|(_, _, s)| *s).unwrap_or("live");
        assert_eq!(row.status, status, "status of {id}");
        assert_eq!(
            row.status_by.as_deref(),
            kill.map(|(_, by, _)| by.as_str()),
            "{id}"
        );
        assert_eq!(row.kind, if *is_correction { "correction" } else { "fill" });
        assert_eq!(&row.corrects, corrects);
        assert_eq!(
            (row.trader_id.as_str(), row.symbol.as_str()),
            (fill.trader.as_str(), fill.symbol.as_str())
        );
        assert_eq!(row.side, if fill.qty < 0 { "S" } else { "B" });
        assert_eq!(row.quantity, fill.qty.abs());
        assert_eq!(row.price, price_text(fill.price), "price of {id} is exact");
        let known_trader = traders.contains(fill.trader.as_str());
        let known_security = securities.contains(fill.symbol.as_str());
        assert_eq!(row.trader_name.is_some(), known_trader, "{id}");
        assert_eq!(row.security_name.is_some(), known_security, "{id}");
        assert_eq!(
            row.enrichment_missing,
            !(known_trader && known_security),
            "{id}"
        );
        // The archive reference points at this execution's own FIX message.
        let key = row
            .archive_key
            .as_ref()
            .unwrap_or_else(|| panic!("{id} has no archive key"));
        let bytes = files
            .entry(key.clone())
            .or_insert_with(|| std::fs::read(archive_dir.join(key)).unwrap());
        let offset = row.archive_offset.unwrap() as usize;
        let message = &bytes[offset..(offset + 1024).min(bytes.len())];
        assert!(
            message.starts_with(b"8=FIX"),
            "{id} offset does not start a message"
        );
        let tag = format!("\x0117={id}\x01");
        let end = message
            .windows(7)
            .position(|w| w == b"\x0110=")
            .unwrap_or(message.len());
        assert!(
            message[..end]
                .windows(tag.len())
                .any(|w| w == tag.as_bytes()),
            "{id} offset points elsewhere"
        );
        match status {
            "live" => {
                let slot = live
                    .entry((fill.trader.to_string(), fill.symbol.to_string()))
                    .or_default();
                slot.0 += 1;
                slot.1 += i128::from(fill.qty);
            }
            "busted" => busted += 1,
            _ => corrected += 1,
        }
        missing += usize::from(row.enrichment_missing);
    }
    for ((trader, symbol), (trades, net)) in &live {
        let position = &snapshot.positions[&(trader.as_str().into(), symbol.as_str().into())];
        assert_eq!(
            (position.trades, position.net_qty),
            (*trades, *net),
            "{trader}/{symbol}"
        );
    }
    assert_eq!(live.len(), snapshot.positions.len());
    BooksStats {
        busted,
        corrected,
        enrichment_missing: missing,
    }
}

/// What a books check saw, for tests to assert their fixture exercised it.
#[derive(Debug)]
pub struct BooksStats {
    pub busted: usize,
    pub corrected: usize,
    pub enrichment_missing: usize,
}

/// PostgreSQL for the books tests: `EOD_POSTGRES_URL` (scripts/postgres.sh start; the full
/// test command sets it). Unset: the caller skips, saying so.
pub fn postgres_url() -> Option<String> {
    env_or_skip("EOD_POSTGRES_URL", "scripts/postgres.sh start")
}

pub fn pg_query<T>(
    url: &str,
    work: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, tokio_postgres::Error>,
) -> Result<T, tokio_postgres::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let result = work(&client).await;
        drop(client);
        let _ = driver.await;
        result
    })
}

/// A fresh, empty database named `name` on the server of `admin_url`; returns its URL.
pub fn fresh_database(admin_url: &str, name: &str) -> String {
    pg_query(admin_url, async |client| {
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
    })
    .unwrap();
    let (server, _db) = admin_url.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

pub fn postgres_rows(url: &str) -> Vec<StoredRow> {
    pg_query(url, async |client| {
        let rows = client
            .query(
                "SELECT exec_id, kind, corrects, trader_id, symbol, side::text, quantity, \
                 price::text, status, status_by, trader_name, security_name, enrichment_missing, \
                 archive_key, archive_offset FROM trades",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredRow {
                exec_id: r.get(0),
                kind: r.get(1),
                corrects: r.get(2),
                trader_id: r.get(3),
                symbol: r.get(4),
                side: r.get(5),
                quantity: r.get(6),
                price: r.get(7),
                status: r.get(8),
                status_by: r.get(9),
                trader_name: r.get(10),
                security_name: r.get(11),
                enrichment_missing: r.get(12),
                archive_key: r.get(13),
                archive_offset: r.get(14),
            })
            .collect())
    })
    .unwrap()
}

/// Rows the books sink has committed so far, by its own progress records (0 before the schema).
pub fn postgres_progress(url: &str) -> i64 {
    pg_query(url, async |client| {
        let row = client
            .query_opt(
                "SELECT coalesce(sum(rows_total), 0)::bigint FROM sink_progress",
                &[],
            )
            .await?;
        Ok(row.map(|r| r.get::<_, i64>(0)).unwrap_or(0))
    })
    .unwrap_or(0)
}

/// SQL Server for the books tests: `EOD_MSSQL_URL`, an ADO.NET connection string. None runs on
/// the development machines (see docker/); unset, the caller skips, saying so.
pub fn mssql_url() -> Option<String> {
    env_or_skip("EOD_MSSQL_URL", "a SQL Server, e.g. from docker/")
}

async fn mssql_client(
    ado: &str,
) -> tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>> {
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let config = tiberius::Config::from_ado_string(ado).unwrap();
    let tcp = tokio::net::TcpStream::connect(config.get_addr())
        .await
        .unwrap();
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .unwrap()
}

/// Runs `sql` (a batch) on the server.
pub fn mssql_execute(ado: &str, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = mssql_client(ado).await;
        client
            .simple_query(sql)
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap();
    });
}

pub fn mssql_rows(ado: &str) -> Vec<StoredRow> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = mssql_client(ado).await;
        let rows = client
            .simple_query(
                "SELECT exec_id, kind, corrects, trader_id, symbol, side, quantity, \
                 CONVERT(NVARCHAR(40), price), status, status_by, trader_name, security_name, \
                 enrichment_missing, archive_key, archive_offset FROM dbo.Trades",
            )
            .await
            .unwrap()
            .into_first_result()
            .await
            .unwrap();
        let text = |row: &tiberius::Row, i: usize| row.get::<&str, _>(i).map(str::to_owned);
        rows.iter()
            .map(|r| StoredRow {
                exec_id: text(r, 0).unwrap(),
                kind: text(r, 1).unwrap(),
                corrects: text(r, 2),
                trader_id: text(r, 3).unwrap(),
                symbol: text(r, 4).unwrap(),
                side: text(r, 5).unwrap(),
                quantity: r.get::<i64, _>(6).unwrap(),
                price: text(r, 7).unwrap(),
                status: text(r, 8).unwrap(),
                status_by: text(r, 9),
                trader_name: text(r, 10),
                security_name: text(r, 11),
                enrichment_missing: r.get::<bool, _>(12).unwrap(),
                archive_key: text(r, 13),
                archive_offset: r.get::<i64, _>(14),
            })
            .collect()
    })
}
