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
        positions: expected.positions.clone(),
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
