//! The books in a real PostgreSQL (scripts/postgres.sh): a replay lands every execution
//! exactly once; a kill -9 in the middle of batch writes and a restart change nothing; the
//! server stopping and starting mid-run loses nothing.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture::fixture;
use eod_dataflow::{baseline, ViewStore};
use eod_runtime::books::ReferenceData;
use eod_runtime::generate::generate_archive;
use eod_runtime::replay::{run_replay, ReplayOptions};
use eod_sources::prices::parse_prices_csv;
use eod_sources::simulator::SimConfig;

fn replay_options(archive: &Path, books: &str, reference: ReferenceData) -> ReplayOptions {
    let prices = std::fs::read_to_string(archive.with_extension("prices.csv")).unwrap();
    ReplayOptions {
        archive: archive.to_str().unwrap().to_owned(),
        prices: parse_prices_csv(&prices).unwrap(),
        dead_letters: archive.with_extension("dead.jsonl"),
        epoch_messages: 1_000,
        limits: eod_runtime::driver::EpochLimits {
            in_flight: 2,
            not_durable: 2,
        },
        max_message: eod_fix::DEFAULT_MAX_MESSAGE,
        timely_args: vec!["-w".into(), "2".into()],
        progress: false,
        books: Some(books.parse().unwrap()),
        books_batch: Default::default(),
        reference,
        worker_nice: eod_runtime::replay::REPLAY_WORKER_NICE,
        exit_after: false,
    }
}

#[test]
fn replay_into_postgres_holds_every_execution_once() {
    let Some(admin) = common::postgres_url() else {
        return;
    };
    let url = common::fresh_database(&admin, "eod_books_replay");
    let fx = fixture();
    let mut options = replay_options(&fx.archive, &url, fx.reference.clone());
    options.prices = fx.prices.clone();
    let summary = run_replay(
        options,
        ViewStore::new(),
        eod_runtime::metrics::Metrics::new().unwrap(),
    )
    .unwrap();
    let (events, _) = common::decode_archive(&fx.archive);
    let expected = baseline::compute(&events, &fx.prices);
    assert_eq!(summary.snapshot.positions, expected.positions);
    let rows = common::postgres_rows(&url);
    let stats = common::assert_books_match(
        &rows,
        &events,
        &summary.snapshot,
        &fx.reference,
        &fx.archive,
    );
    assert!(
        stats.busted > 0 && stats.corrected > 0 && stats.enrichment_missing > 0,
        "{stats:?}"
    );
    // Two workers, two writing shards, each with its progress committed beside its rows.
    assert!(common::postgres_progress(&url) as usize >= rows.len());
}

/// Every process of a multi-process run migrates the same books as it starts: each migration
/// applies once, and no process fails on another's.
#[test]
fn postgres_books_migrated_by_processes_at_once_take_each_migration_once() {
    let Some(admin) = common::postgres_url() else {
        return;
    };
    for round in 0..3 {
        let url = common::fresh_database(&admin, &format!("eod_books_migrate_at_once_{round}"));
        let start = std::sync::Barrier::new(4);
        let applied: Vec<Vec<i64>> = std::thread::scope(|s| {
            let migrators: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut books =
                            eod_sinks::books::postgres::PostgresBooks::open(&url).unwrap();
                        start.wait();
                        books
                            .migrate()
                            .unwrap_or_else(|e| panic!("round {round}: {e}"))
                    })
                })
                .collect();
            migrators.into_iter().map(|m| m.join().unwrap()).collect()
        });
        let mut all = applied.concat();
        all.sort_unstable();
        assert_eq!(all, [1, 2], "round {round}: each migration once");
    }
}

/// Books written under the first schema keep their rows when migration 2 puts ExecID, trader
/// and symbol in the "C" collation; the indexes are back and a prefix search still reads them.
#[test]
fn postgres_identifiers_move_to_the_c_collation_with_their_rows() {
    let Some(admin) = common::postgres_url() else {
        return;
    };
    let url = common::fresh_database(&admin, "eod_books_collation");
    let first = eod_sinks::books::postgres::MIGRATIONS[0].sql.to_owned();
    common::pg_query(&url, async |client| {
        client
            .batch_execute(&format!(
                "CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY,
                     name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
                 INSERT INTO schema_migrations (version, name) VALUES (1, 'trades');
                 {first}
                 INSERT INTO trades (exec_id, kind, trader_id, symbol, side, quantity, price,
                     transact_time, status, enrichment_missing)
                 VALUES ('CX-a', 'fill', 'T1', 'SYM', 'B', 10, 1.5, now(), 'live', false),
                        ('CX-B', 'fill', 'T2', 'SYM', 'S', 5, 2.25, now(), 'live', false);"
            ))
            .await
    })
    .unwrap();
    let mut books = eod_sinks::books::postgres::PostgresBooks::open(&url).unwrap();
    assert_eq!(books.migrate().unwrap(), vec![2]);
    assert!(books.migrate().unwrap().is_empty(), "applied once");
    let mut ids = books.exec_ids_starting_with("CX-").unwrap();
    ids.sort();
    assert_eq!(ids, ["CX-B", "CX-a"]);
    let (collations, indexes, ordered) = common::pg_query(&url, async |client| {
        let collations: Vec<(String, String)> = client
            .query(
                "SELECT a.attname::text, c.collname::text FROM pg_attribute a
                 JOIN pg_collation c ON c.oid = a.attcollation
                 WHERE a.attrelid = 'trades'::regclass
                   AND a.attname IN ('exec_id', 'trader_id', 'symbol') ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let indexes: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE tablename = 'trades'
                   AND indexname IN ('trades_pkey', 'trades_trader_symbol')",
                &[],
            )
            .await?
            .get(0);
        let ordered: Vec<String> = client
            .query("SELECT exec_id FROM trades ORDER BY exec_id", &[])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        Ok((collations, indexes, ordered))
    })
    .unwrap();
    let c = |column: &str| (column.to_owned(), "C".to_owned());
    assert_eq!(collations, [c("exec_id"), c("symbol"), c("trader_id")]);
    assert_eq!(indexes, 2, "the key and the (trader_id, symbol) index");
    assert_eq!(
        ordered,
        ["CX-B", "CX-a"],
        "byte order, not a locale's ('a' before 'B')"
    );
}

/// A simulated archive big enough that a debug build takes a few seconds to write its books.
fn big_archive(dir: &Path, messages: u64) -> std::path::PathBuf {
    let archive = dir.join("archive");
    let mut sim = SimConfig::market_close(5);
    sim.traders = 6;
    sim.symbols = 10;
    generate_archive(&archive, sim, messages, 512 * 1024).unwrap();
    archive
}

fn spawn_replay(archive: &Path, books: &str, batch_rows: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_eod"))
        .args(["replay", "--quiet", "--epoch-messages", "2000", "--archive"])
        .arg(archive)
        .arg("--prices")
        .arg(archive.with_extension("prices.csv"))
        .arg("--output")
        .arg(archive.with_extension("out.json"))
        .args([
            "--books",
            books,
            "--books-batch-rows",
            batch_rows,
            "--",
            "-w",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_progress(url: &str, rows: i64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while common::postgres_progress(url) < rows {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the replay ended too early"
        );
        assert!(Instant::now() < deadline, "no books progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_replay_books(archive: &Path, url: &str) {
    let (events, _) = common::decode_archive(archive);
    let prices =
        parse_prices_csv(&std::fs::read_to_string(archive.with_extension("prices.csv")).unwrap())
            .unwrap();
    let expected = baseline::compute(&events, &prices);
    let snapshot = eod_dataflow::ViewSnapshot {
        positions: expected.positions.clone().into(),
        ..Default::default()
    };
    let reference = ReferenceData::load(
        Some(&archive.with_extension("traders.csv")),
        Some(&archive.with_extension("securities.csv")),
    )
    .unwrap();
    let stats = common::assert_books_match(
        &common::postgres_rows(url),
        &events,
        &snapshot,
        &reference,
        archive,
    );
    assert!(stats.busted > 0 && stats.corrected > 0, "{stats:?}");
}

#[test]
fn kill_9_during_batch_writes_then_restart_gives_every_exec_id_once() {
    let Some(admin) = common::postgres_url() else {
        return;
    };
    let url = common::fresh_database(&admin, "eod_books_crash");
    let dir = tempfile::tempdir().unwrap();
    let archive = big_archive(dir.path(), 120_000);
    // Small batches: many transactions, so the kill lands among them.
    let mut child = spawn_replay(&archive, &url, "300");
    wait_for_progress(&url, 3_000, &mut child);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = common::postgres_rows(&url).len();
    assert!(partial > 0, "nothing was written before the kill");

    let mut rerun = spawn_replay(&archive, &url, "300");
    let status = rerun.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(rerun.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    let total = common::postgres_rows(&url).len();
    assert!(
        total > partial,
        "the kill interrupted nothing ({partial} of {total} rows)"
    );
    assert_replay_books(&archive, &url);
}

#[test]
fn postgres_stopped_and_restarted_mid_replay_loses_nothing() {
    let Some(_) = common::postgres_url() else {
        return;
    };
    // A cluster of the test's own: its outage must not touch the other tests.
    let server = common::server::OwnServer::start("postgres", 15_491);
    let url = format!("postgres://postgres@127.0.0.1:{}/eod", server.port);
    let work = tempfile::tempdir().unwrap();
    let archive = big_archive(work.path(), 120_000);
    let mut child = spawn_replay(&archive, &url, "300");
    wait_for_progress(&url, 3_000, &mut child);
    server.script("stop");
    let before = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the replay gave up while the store was down"
    );
    server.script("start");
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("books store unavailable"),
        "the outage was never seen: {stderr}"
    );
    assert!(before.elapsed() >= Duration::from_secs(3));
    assert_replay_books(&archive, &url);
}

#[test]
fn a_row_postgres_refuses_is_dead_lettered_and_the_rest_land() {
    let Some(admin) = common::postgres_url() else {
        return;
    };
    let url = common::fresh_database(&admin, "eod_books_refused");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    // A price of 50 billion fits the 10^-8 fixed point but not DECIMAL(18,8).
    let mut segment = Vec::new();
    for (id, px) in [("R1", "20.5"), ("R2", "50000000000"), ("R3", "21")] {
        segment.extend(common::fixture::fill(
            id,
            "RFSD",
            "1",
            "10",
            px,
            "20261125-21:00:01",
            "T-R",
        ));
    }
    std::fs::write(archive.join("a.fix"), segment).unwrap();
    std::fs::write(archive.with_extension("prices.csv"), "").unwrap();
    let options = replay_options(&archive, &url, ReferenceData::default());
    let dead_letters = options.dead_letters.clone();
    run_replay(
        options,
        ViewStore::new(),
        eod_runtime::metrics::Metrics::new().unwrap(),
    )
    .unwrap();

    let rows = common::postgres_rows(&url);
    let mut ids: Vec<&str> = rows.iter().map(|r| r.exec_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["R1", "R3"], "the good rows land");
    let letters = std::fs::read_to_string(&dead_letters).unwrap();
    let letters: Vec<serde_json::Value> = letters
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "downstream");
    assert_eq!(
        letters[0]["retry_count"], 5,
        "3 tries in its batch, 3 alone"
    );
    assert!(letters[0]["detail"].as_str().unwrap().contains("R2"));
    assert!(letters[0]["original"]
        .as_str()
        .unwrap()
        .contains("\"exec_id\":\"R2\""));
    assert_eq!(letters[0]["source"], "a.fix");
}

/// A books write that does not finish within the command timeout (here the table is locked by
/// another session) is given up after its retries, and its row is dead-lettered with reason
/// `timeout` and the retries it took (3 in its batch, then 3 alone: 5 after the first), while
/// the replay itself finishes.
#[test]
fn a_books_write_that_times_out_is_dead_lettered_with_its_retries() {
    let Some(admin) = common::postgres_url() else {
        return;
    };
    let url = common::fresh_database(&admin, "eod_books_timeout");
    let target: eod_runtime::books::BooksTarget = url.parse().unwrap();
    target.migrate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let fill = common::fixture::fill("TO1", "TMOT", "1", "10", "20.5", "20261125-21:00:01", "T-T");
    std::fs::write(archive.join("a.fix"), fill).unwrap();
    std::fs::write(archive.with_extension("prices.csv"), "").unwrap();

    // Another session holds the table until the replay is done.
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let locker = {
        let url = url.clone();
        std::thread::spawn(move || {
            common::pg_query(&url, async |client| {
                client
                    .batch_execute("BEGIN; LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")
                    .await?;
                locked_tx.send(()).unwrap();
                let _ = release_rx.recv();
                client.batch_execute("COMMIT").await
            })
            .unwrap();
        })
    };
    locked.recv().unwrap();

    let mut options = replay_options(&archive, &url, ReferenceData::default());
    options.books_batch.command_timeout = Duration::from_secs(1);
    let dead_letters = options.dead_letters.clone();
    let started = Instant::now();
    let summary = run_replay(
        options,
        ViewStore::new(),
        eod_runtime::metrics::Metrics::new().unwrap(),
    )
    .unwrap();
    release.send(()).unwrap();
    locker.join().unwrap();
    assert_eq!(summary.accounting().fills, 1, "the views have the fill");
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "six writes of one second each"
    );

    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead_letters)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "timeout");
    assert_eq!(letters[0]["retry_count"], 5);
    assert!(letters[0]["detail"].as_str().unwrap().contains("TO1"));
    assert!(
        common::postgres_rows(&url).is_empty(),
        "the row is in the dead letters, not the books"
    );
}

#[test]
fn replay_into_sql_server_holds_every_execution_once() {
    let Some(ado) = common::mssql_url() else {
        return;
    };
    common::mssql_execute(
        &ado,
        "DROP TABLE IF EXISTS dbo.Trades; DROP TABLE IF EXISTS dbo.SinkProgress; \
         DROP TABLE IF EXISTS dbo.SchemaMigrations;",
    );
    let fx = fixture();
    let target = format!("mssql:{ado}");
    let mut options = replay_options(&fx.archive, &target, fx.reference.clone());
    options.prices = fx.prices.clone();
    let summary = run_replay(
        options,
        ViewStore::new(),
        eod_runtime::metrics::Metrics::new().unwrap(),
    )
    .unwrap();
    let (events, _) = common::decode_archive(&fx.archive);
    let stats = common::assert_books_match(
        &common::mssql_rows(&ado),
        &events,
        &summary.snapshot,
        &fx.reference,
        &fx.archive,
    );
    assert!(stats.busted > 0 && stats.corrected > 0 && stats.enrichment_missing > 0);
}

/// The books over TLS: `sslmode=require` with the server's private CA as `sslrootcert`
/// lands every execution; without that CA the certificate is refused, with a clear error.
#[test]
fn replay_into_postgres_over_tls_with_a_private_ca() {
    let Some(admin) = common::postgres_url() else {
        return;
    };
    let Some(ca) = common::env_or_skip("EOD_POSTGRES_TLS_CA", "scripts/postgres.sh env") else {
        return;
    };
    let url = common::fresh_database(&admin, "eod_books_tls");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let mut sim = SimConfig::market_close(5);
    sim.traders = 3;
    sim.symbols = 5;
    generate_archive(&archive, sim, 4_000, 256 * 1024).unwrap();
    let replay = |books: &str| {
        Command::new(env!("CARGO_BIN_EXE_eod"))
            .args(["replay", "--quiet", "--archive"])
            .arg(&archive)
            .arg("--prices")
            .arg(archive.with_extension("prices.csv"))
            .args(["--books", books])
            .output()
            .unwrap()
    };
    let untrusted = replay(&format!("{url}?sslmode=require"));
    assert!(!untrusted.status.success());
    let said = String::from_utf8_lossy(&untrusted.stderr);
    assert!(said.to_lowercase().contains("certificate"), "{said}");

    let out = replay(&format!("{url}?sslmode=require&sslrootcert={ca}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_replay_books(&archive, &url);
}

/// Issue 12, point 2: the speed path never waits for the truth path. `eod run` with PostgreSQL
/// books; the store is stopped, then a burst arrives through Kafka. The views take all of it
/// while the store is down, the rows wait on disk (not in memory: the spill holds them and the
/// writer's memory budget is 1,000 rows), and once the store is back every ExecID lands once.
#[test]
fn postgres_down_during_a_burst_the_views_go_on_and_the_books_catch_up_from_disk() {
    let Some(_) = common::postgres_url() else {
        return;
    };
    let Some(brokers) = common::env_or_skip("EOD_KAFKA_BROKERS", "scripts/kafka.sh start") else {
        return;
    };
    let server = common::server::OwnServer::start("postgres", 15_492);
    let url = format!("postgres://postgres@127.0.0.1:{}/eod", server.port);
    let work = tempfile::tempdir().unwrap();
    let archive = big_archive(work.path(), 40_000);
    // The first two segments before the outage, the rest (the burst) in two waves during it.
    let parts = ["before", "wave1", "wave2"].map(|name| work.path().join(name));
    let mut segments: Vec<_> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    assert!(segments.len() > 4, "{} segments", segments.len());
    let wave2_from = 2 + (segments.len() - 2) / 2;
    for (i, segment) in segments.iter().enumerate() {
        let part = &parts[usize::from(i >= 2) + usize::from(i >= wave2_from)];
        std::fs::create_dir_all(part).unwrap();
        std::fs::copy(segment, part.join(segment.file_name().unwrap())).unwrap();
    }
    for part in &parts[1..] {
        std::fs::write(part.with_extension("prices.csv"), "").unwrap();
    }
    std::fs::copy(
        archive.with_extension("prices.csv"),
        parts[0].with_extension("prices.csv"),
    )
    .unwrap();
    let prefix = format!("outage{}", std::process::id());
    let topics = [
        "--trades-topic".to_owned(),
        format!("{prefix}.raw"),
        "--dlq-topic".into(),
        format!("{prefix}.dlq"),
        "--prices-topic".into(),
        format!("{prefix}.prices"),
        "--reference-topic".into(),
        format!("{prefix}.ref"),
    ];
    let ingest = |part: &Path, create: bool| -> u64 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eod"));
        cmd.args(["ingest", "--brokers", &brokers, "--archive"])
            .arg(part)
            .arg("--prices")
            .arg(part.with_extension("prices.csv"))
            .args(&topics);
        if create {
            cmd.arg("--create-topics");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The records of the trades topic, which the views count.
        common::printed(&stdout, "trades")
    };
    let mut published = ingest(&parts[0], true);

    let spill = work.path().join("spill");
    let port = common::http::free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(work.path().join("run.log")).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_eod"))
        .args([
            "run",
            "--brokers",
            &brokers,
            "--group-id",
            &prefix,
            "--serve",
            &addr,
        ])
        // 1 ms epochs, so that the books fall 2,500 epochs behind within seconds.
        .args(["--epoch-ms", "1"])
        .args(&topics)
        .args([
            "--books",
            &url,
            "--books-memory-rows",
            "1000",
            "--books-batch-ms",
            "100",
        ])
        .arg("--books-spill-dir")
        .arg(&spill)
        .arg("--trader-reference")
        .arg(archive.with_extension("traders.csv"))
        .arg("--security-reference")
        .arg(archive.with_extension("securities.csv"))
        .args(["--", "-w", "2"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Killed however the test ends.
    let mut run = common::http::KillOnDrop(run);
    wait_for_progress(&url, 1, &mut run.0);

    server.script("stop");
    let outage = Instant::now();
    published += ingest(&parts[1], false);
    // The second wave comes once the books are further behind than a live run used to allow
    // (2,000 epochs not yet durable, after which it stopped opening epochs: frozen views).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = common::http::get_text(&addr, "/metrics");
        let behind = common::http::metric(&metrics, "eod_dataflow_epochs_not_durable");
        if behind >= 2_500.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run stopped opening epochs at {behind} not yet durable"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    published += ingest(&parts[2], false);
    // The views take the whole burst while the store is down.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, firm) = common::http::get(&addr, "/v1/pnl/firm");
        let seen = firm["as_of"]["messages"].as_u64().unwrap_or(0);
        if status == 200 && seen >= published {
            break;
        }
        assert!(run.0.try_wait().unwrap().is_none(), "eod run ended");
        assert!(
            Instant::now() < deadline,
            "the views stopped at {seen} of {published} messages while the books were down"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let spilled_chunks = std::fs::read_dir(&spill)
        .unwrap()
        .flat_map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap())
        .count();
    assert!(spilled_chunks > 0, "no row waited on disk");
    let (_, metrics) = common::http::get_text(&addr, "/metrics");
    let spilled = common::http::metric(&metrics, "eod_sink_spilled_rows{sink=\"books\"}");
    assert!(spilled >= 1000.0, "rows on disk: {spilled}");
    // Readiness says which dependency is down (the views themselves are fine).
    let (status, ready) = common::http::get(&addr, "/health/ready");
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["not_ready"], serde_json::json!(["books"]), "{ready}");
    assert_eq!(ready["dependencies"]["kafka"], "ready", "{ready}");
    // Down for 15 s at least (the 60 s, shortened for the suite's time).
    std::thread::sleep(Duration::from_secs(15).saturating_sub(outage.elapsed()));

    server.script("start");
    // Caught up: nothing left on disk, and the books stopped growing.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = None;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        assert!(run.0.try_wait().unwrap().is_none(), "eod run ended");
        let (_, metrics) = common::http::get_text(&addr, "/metrics");
        let spilled = common::http::metric(&metrics, "eod_sink_spilled_rows{sink=\"books\"}");
        let store_up = common::http::metric(&metrics, "eod_sink_store_up{sink=\"books\"}");
        let rows = common::postgres_rows(&url).len();
        // Stable for two polls, with the store up and nothing left on disk.
        if spilled == 0.0 && store_up == 1.0 && rows > 0 && last == Some((rows, rows)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the books did not catch up: {rows} rows, {spilled} on disk"
        );
        last = Some((last.map_or(0, |(_, previous)| previous), rows));
    }
    let (status, ready) = common::http::get(&addr, "/health/ready");
    assert_eq!(status, 200, "ready again once the store is back: {ready}");
    drop(run);
    let log = std::fs::read_to_string(work.path().join("run.log")).unwrap();
    assert!(
        log.contains("rows wait on disk") && log.contains("books store unavailable"),
        "{log}"
    );
    assert_replay_books(&archive, &url);
}
