//! Through a real Kafka broker (scripts/kafka.sh, started by scripts/test-all.sh): archive ->
//! `eod ingest` -> topics -> `eod run` over timely workers and processes -> views equal the
//! reference; bad records on the topic land in the DLQ with their reason, and every record is
//! accounted for. Skipped, saying so, when EOD_KAFKA_BROKERS is not set (plain `cargo test`).

mod common;

fn plain(brokers: &str) -> eod_sources::kafka::KafkaConnection {
    eod_sources::kafka::KafkaConnection::plaintext(brokers)
}

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eod_dataflow::{baseline, TradeEvent, ViewStore};
use eod_fix::{Framed, Framer};
use eod_gateway::{run_ingest, IngestOptions};
use eod_proto::{DeadLetter, DeadLetterReason, Side, TradeEnvelope, TradeKind};
use eod_runtime::generate::generate_archive;
use eod_runtime::metrics::Metrics;
use eod_runtime::run::{run_kafka, RunOptions};
use eod_sources::kafka::{
    assigned_consumer, delete_topics, ensure_topics, partition_count, RecordProducer, Topics,
};
use eod_sources::prices::parse_prices_csv;
use eod_sources::schema_registry::WireFormat;
use eod_sources::simulator::SimConfig;
use prost::Message as _;
use rdkafka::Message;

fn brokers() -> Option<String> {
    common::env_or_skip("EOD_KAFKA_BROKERS", "scripts/test-all.sh starts a broker")
}

fn unique_topics(name: &str) -> Topics {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Topics {
        trades: format!("{name}-{nonce}.trades.raw"),
        dead_letters: format!("{name}-{nonce}.trades.dlq"),
        prices: format!("{name}-{nonce}.prices"),
        reference: format!("{name}-{nonce}.reference"),
    }
}

/// Creates `topics` (name, partitions) that do not exist yet.
fn ensure(brokers: &str, topics: &[(&str, i32)]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(ensure_topics(&plain(brokers), topics))
        .unwrap();
}

fn create(brokers: &str, topics: &Topics) {
    ensure(
        brokers,
        &[
            (&topics.trades, 12),
            (&topics.dead_letters, 3),
            (&topics.prices, 4),
        ],
    );
    // Metadata for new topics propagates asynchronously.
    for _ in 0..50 {
        if partition_count(&plain(brokers), &topics.trades, Duration::from_secs(5)).ok() == Some(12)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("topic {} did not appear", topics.trades);
}

fn decode_archive(dir: &Path) -> Vec<TradeEvent> {
    common::decode_archive(dir).0
}

/// `eod run` until it has read everything on the topics, two workers.
fn catch_up(brokers: &str, topics: &Topics, group_id: &str) -> eod_runtime::run::RunSummary {
    catch_up_over(plain(brokers), topics, group_id)
}

fn catch_up_over(
    kafka: eod_sources::kafka::KafkaConnection,
    topics: &Topics,
    group_id: &str,
) -> eod_runtime::run::RunSummary {
    let summary = run_kafka(
        RunOptions {
            kafka,
            topics: topics.clone(),
            group_id: group_id.to_owned(),
            prices: Vec::new(),
            epoch: Duration::from_millis(5),
            limits: eod_runtime::driver::LIVE_LIMITS,
            until_caught_up: true,
            books: None,
            books_batch: Default::default(),
            reference: Default::default(),
            reference_from_topic: false,
            timely_args: vec!["-w".into(), "2".into()],
            snapshots: None,
            wire: WireFormat::plain(topics),
            trim_memory: Some(Default::default()),
            latency_from: Default::default(),
        },
        ViewStore::new(),
        Metrics::new().unwrap(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let views = summary
        .views_caught_up
        .expect("a run until caught up says when its views held everything");
    assert!(
        views <= summary.elapsed,
        "views caught up at {views:?}, after the run's end at {:?}",
        summary.elapsed
    );
    summary
}

/// Every record of a topic, read to its end.
fn read_topic(brokers: &str, topic: &str) -> Vec<Vec<u8>> {
    let partitions = partition_count(&plain(brokers), topic, Duration::from_secs(10)).unwrap();
    let assignments: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_owned(), p)).collect();
    let consumer = assigned_consumer(&plain(brokers), "eod-test-reader", &assignments).unwrap();
    let ends =
        eod_sources::kafka::end_offsets(&consumer, &assignments, Duration::from_secs(10)).unwrap();
    let total: i64 = ends.iter().sum();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (records.len() as i64) < total && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            records.push(message.unwrap().payload().unwrap_or_default().to_vec());
        }
    }
    records
}

/// Every record of a topic, read to its end, decoded as `M`.
fn read_messages<M: prost::Message + Default>(brokers: &str, topic: &str) -> Vec<M> {
    read_topic(brokers, topic)
        .iter()
        .map(|bytes| M::decode(bytes.as_slice()).unwrap())
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    archive: std::path::PathBuf,
    prices_csv: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let mut sim = SimConfig::market_close(5);
    sim.traders = 6;
    sim.symbols = 15;
    sim.bust_ratio = 0.03;
    sim.correct_ratio = 0.03;
    sim.broken_ratio = 0.01;
    let generated = generate_archive(&archive, sim, 20_000, 128 * 1024).unwrap();
    Fixture {
        archive,
        prices_csv: generated.prices,
        _dir: dir,
    }
}

/// A run's topics go once deleted, and deleting one that is not there (again) is no error.
#[test]
fn deleted_topics_are_gone_and_deleting_again_is_no_error() {
    let Some(brokers) = brokers() else { return };
    let topics = unique_topics("delete");
    ensure(&brokers, &[(&topics.trades, 3), (&topics.prices, 2)]);
    let kafka = plain(&brokers);
    let count = |topic: &str| partition_count(&kafka, topic, Duration::from_secs(5));
    assert_eq!(count(&topics.trades).unwrap(), 3);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let names = [topics.trades.as_str(), topics.prices.as_str()];
    runtime.block_on(delete_topics(&kafka, &names)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while names.iter().any(|topic| count(topic).is_ok()) {
        assert!(
            Instant::now() < deadline,
            "{names:?} still there after 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    runtime.block_on(delete_topics(&kafka, &names)).unwrap();
}

#[test]
fn ingest_then_run_equals_reference_and_dead_letters_bad_records() {
    let Some(brokers) = brokers() else { return };
    let fx = fixture();
    let topics = unique_topics("lib");
    create(&brokers, &topics);
    let prices = parse_prices_csv(&std::fs::read_to_string(&fx.prices_csv).unwrap()).unwrap();
    let ingested = run_ingest(
        IngestOptions {
            archive: fx.archive.to_str().unwrap().into(),
            kafka: plain(&brokers),
            topics: topics.clone(),
            gateway_id: "test-gw".into(),
            prices: prices.clone(),
            max_message: eod_fix::DEFAULT_MAX_MESSAGE,
            wire: WireFormat::plain(&topics),
        },
        Metrics::new().unwrap().sources.clone(),
    )
    .unwrap();
    assert_eq!(
        ingested.counts.read,
        ingested.counts.trades() + ingested.counts.skipped + ingested.counts.dead_lettered()
    );
    assert_eq!(
        ingested.delivered,
        ingested.counts.trades() + ingested.counts.dead_lettered() + ingested.prices
    );
    assert!(
        ingested.counts.dead_lettered() > 0,
        "the archive holds broken messages"
    );

    // Bad records written straight to the topic: not protobuf, and an envelope missing fields.
    let producer = RecordProducer::new(&plain(&brokers)).unwrap();
    producer
        .send(&topics.trades, b"x", b"\xff\xfe definitely not protobuf")
        .unwrap();
    let no_symbol = TradeEnvelope {
        exec_id: "BAD-1".into(),
        kind: TradeKind::Fill as i32,
        side: Side::Buy as i32,
        quantity: 1,
        price_mantissa: 1,
        trader_id: "T".into(),
        ..Default::default()
    };
    producer
        .send(&topics.trades, b"y", &no_symbol.encode_to_vec())
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    let summary = catch_up(&brokers, &topics, "eod-test");
    let snapshot = &summary.snapshot;
    let expected = baseline::compute(&decode_archive(&fx.archive), &prices);
    assert_eq!(snapshot.positions, expected.positions);
    assert_eq!(snapshot.traders, expected.traders);
    assert_eq!(snapshot.firm, expected.firm);

    // produced = processed + dead-lettered, per record on the trades topic.
    let a = &snapshot.accounting;
    assert_eq!(a.read, ingested.counts.trades() + 2);
    assert_eq!(
        a.fills + a.busts + a.corrections + a.dead_lettered(),
        a.read
    );
    assert_eq!(a.dead_letters.get("deserialization"), Some(&1));
    assert_eq!(a.dead_letters.get("missing_field"), Some(&1));

    let letters: Vec<DeadLetter> = read_messages(&brokers, &topics.dead_letters);
    assert_eq!(letters.len() as u64, ingested.counts.dead_lettered() + 2);
    let from_run: Vec<_> = letters
        .iter()
        .filter(|l| l.source_location.starts_with(&topics.trades))
        .collect();
    assert_eq!(from_run.len(), 2);
    assert!(from_run
        .iter()
        .any(|l| l.reason() == DeadLetterReason::Deserialization
            && l.original.starts_with(b"\xff\xfe")));
    assert!(from_run
        .iter()
        .any(|l| l.reason() == DeadLetterReason::MissingField && l.detail.contains("symbol")));
    assert!(letters
        .iter()
        .all(|l| !l.original.is_empty() && !l.detail.is_empty()));
}

/// A child process's exit was a success; otherwise its stderr says why.
fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Kafka flags every `eod` subcommand of a test shares.
fn topic_args(cmd: &mut Command, brokers: &str, topics: &Topics) {
    cmd.args(["--brokers", brokers, "--trades-topic", &topics.trades])
        .args([
            "--dlq-topic",
            &topics.dead_letters,
            "--prices-topic",
            &topics.prices,
        ])
        .args(["--reference-topic", &topics.reference]);
}

/// The fixture archive ingested into fresh topics named after `name`, and the positions a
/// complete view must serve (the baseline's, as `GET /v1/positions` lists them).
fn fixture_on_topics(brokers: &str, name: &str) -> (Fixture, Topics, serde_json::Value) {
    let fx = fixture();
    let topics = unique_topics(name);
    create(brokers, &topics);
    let mut ingest = Command::new(env!("CARGO_BIN_EXE_eod"));
    ingest
        .args(["ingest", "--archive"])
        .arg(&fx.archive)
        .arg("--prices")
        .arg(&fx.prices_csv);
    topic_args(&mut ingest, brokers, &topics);
    assert_success(&ingest.output().unwrap());
    let prices = parse_prices_csv(&std::fs::read_to_string(&fx.prices_csv).unwrap()).unwrap();
    let expected = baseline::compute(&decode_archive(&fx.archive), &prices);
    let positions = serde_json::to_value(expected.positions.values().collect::<Vec<_>>()).unwrap();
    (fx, topics, positions)
}

/// Two `eod run` processes each serve the complete view, and their one SQLite books file (both
/// open and migrate it as they start; the first process's first worker writes every row) holds
/// every execution once, enriched.
#[test]
fn two_processes_each_serve_the_complete_view() {
    let Some(brokers) = brokers() else { return };
    let (fx, topics, expected_json) = fixture_on_topics(&brokers, "procs");
    let out_dir = fx._dir.path();
    let books = Books::sqlite(out_dir, 6, 15);
    for (process, child) in spawn_two_runs(&brokers, &topics, out_dir, true, Some(&books))
        .into_iter()
        .enumerate()
    {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", run_log(out_dir, process));
    }
    for process in 0..2 {
        let body = run_output(out_dir, process);
        assert!(
            body["positions"] == expected_json,
            "process {process} does not hold the complete view"
        );
        assert_eq!(body["as_of"]["complete"], true);
    }
    let prices = parse_prices_csv(&std::fs::read_to_string(&fx.prices_csv).unwrap()).unwrap();
    let events = decode_archive(&fx.archive);
    books.assert_match(&events, &baseline::compute(&events, &prices), &fx.archive);
}

/// Issue 12, point 4: when one process of a two-process cluster is killed, its peer exits
/// promptly saying why, and with `--supervise` both come back and serve the exact views again.
#[test]
fn a_killed_process_takes_its_peer_down_and_supervision_restores_exact_views() {
    let Some(brokers) = brokers() else { return };
    let (_fx, topics, expected) = fixture_on_topics(&brokers, "supervise");

    let dir = tempfile::tempdir().unwrap();
    let ports = [common::http::free_port(), common::http::free_port()];
    let addrs = ports.map(|port| format!("127.0.0.1:{port}"));
    let supervisors: Vec<_> =
        spawn_two_runs_with(&brokers, &topics, dir.path(), false, None, |p| {
            vec!["--serve".into(), addrs[p].clone(), "--supervise".into()]
        })
        .into_iter()
        .map(common::http::KillOnDrop)
        .collect();
    let exact_views = |why: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        for addr in &addrs {
            loop {
                let served = common::http::try_get_text(addr, "/v1/positions")
                    .ok()
                    .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok());
                if served.is_some_and(|body| body["positions"] == expected) {
                    break;
                }
                assert!(Instant::now() < deadline, "{addr}: no exact views {why}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    exact_views("at first");
    let started = |process: usize| -> Vec<u32> {
        run_log(dir.path(), process)
            .lines()
            .filter_map(|l| l.strip_prefix("supervisor: started eod run (pid "))
            .filter_map(|rest| rest.split(',').next()?.parse().ok())
            .collect()
    };
    let victim = *started(1).last().expect("process 1 started");
    assert!(Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap()
        .success());

    // The peer notices within seconds, says why, and both supervisors start their process again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while started(0).len() < 2 || started(1).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "not restarted:\n{}\n{}",
            run_log(dir.path(), 0),
            run_log(dir.path(), 1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let peer_log = run_log(dir.path(), 0);
    assert!(
        peer_log.contains("lost the connection to a peer process"),
        "{peer_log}"
    );
    exact_views("after the restart");
    for supervisor in &supervisors {
        // SIGTERM: the supervisor stops its process and exits.
        let pid = supervisor.0.id().to_string();
        assert!(Command::new("kill").arg(&pid).status().unwrap().success());
    }
    for mut supervisor in supervisors {
        let status = supervisor.0.wait().unwrap();
        assert!(status.success(), "supervisor exit: {status}");
    }
    for process in 0..2 {
        for pid in started(process) {
            let alive = Path::new(&format!("/proc/{pid}")).exists();
            assert!(!alive, "eod run {pid} outlived its supervisor");
        }
    }
}

/// Reads a topic's `PriceUpdate`s back into the dataflow's type.
fn prices_on_topic(brokers: &str, topic: &str) -> Vec<eod_dataflow::PriceUpdate> {
    read_topic(brokers, topic)
        .iter()
        .map(|bytes| eod_sources::prices::price_from_bytes(bytes).unwrap())
        .collect()
}

#[test]
fn simulator_to_gateway_to_two_processes_equals_the_archive() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics("e2e");
    create(&brokers, &topics);
    let eod = env!("CARGO_BIN_EXE_eod");
    let (spool, archive) = (dir.path().join("spool"), dir.path().join("archive"));
    let port = common::http::free_port();
    let gateway = spawn_gateway(
        dir.path(),
        port,
        &brokers,
        &topics,
        &["--connections", "1", "--segment-bytes", "200000"],
    );

    // 15k events at full speed, broken messages included, burst and all.
    let simulate = Command::new(eod)
        .args([
            "simulate",
            "--to",
            &format!("127.0.0.1:{port}"),
            "--messages",
            "15000",
            "--speed",
            "0",
        ])
        .args([
            "--traders",
            "5",
            "--symbols",
            "12",
            "--broken-ratio",
            "0.01",
            "--seed",
            "9",
        ])
        .args(["--brokers", &brokers, "--prices-topic", &topics.prices])
        .output()
        .unwrap();
    assert_success(&simulate);
    let gateway = gateway.wait_with_output().unwrap();
    assert_success(&gateway);
    let gateway_out = String::from_utf8_lossy(&gateway.stdout).to_string();

    // The archive the gateway wrote holds every byte it received: it is the truth.
    let segments = archive.join("gw1").join("20261125");
    assert!(
        std::fs::read_dir(&segments).unwrap().count() > 2,
        "segments rolled by size"
    );
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "spool drained after upload"
    );
    let archived_bytes: u64 = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let sent: u64 = String::from_utf8_lossy(&simulate.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("fix bytes")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    assert_eq!(archived_bytes, sent, "every byte sent is archived once");

    let mut records = Vec::new();
    let mut books = Books::new(dir.path(), "eod_kafka_e2e", 1, 5, 12);
    if let Some(books) = books.as_mut() {
        books.publish_to_topic(&brokers, &topics, dir.path());
    }
    for (process, run) in spawn_two_runs(&brokers, &topics, dir.path(), true, books.as_ref())
        .into_iter()
        .enumerate()
    {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", run_log(dir.path(), process));
        records.push(String::from_utf8_lossy(&out.stdout).to_string());
    }

    let expected = baseline::compute(
        &decode_archive(&segments),
        &prices_on_topic(&brokers, &topics.prices),
    );
    let expected_json =
        serde_json::to_value(expected.positions.values().collect::<Vec<_>>()).unwrap();
    assert!(!expected.positions.is_empty());
    for process in 0..2 {
        let body = run_output(dir.path(), process);
        assert!(
            body["positions"] == expected_json,
            "process {process}: views differ from the archive's answer"
        );
    }
    // Gateway accounting: every framed unit is a trade, skipped or a dead letter.
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
            .unwrap()
    };
    let (read, trades, skipped, dead) = (
        field(&gateway_out, "messages"),
        field(&gateway_out, "trades"),
        field(&gateway_out, "skipped"),
        field(&gateway_out, "dead letters"),
    );
    assert_eq!(read, trades + skipped + dead, "{gateway_out}");
    assert!(dead > 0, "broken messages were sent");
    assert_eq!(
        field(&records[0], "records"),
        trades,
        "every trade produced is consumed once"
    );
    if let Some(books) = &books {
        books.assert_match(&decode_archive(&segments), &expected, &archive);
        books.assert_redis_equals(&expected_json);
        // The update published after the first version is the one in force.
        let desks: Vec<String> = common::pg_query(&books.url, async |client| {
            let rows = client
                .query(
                    "SELECT DISTINCT desk FROM trades WHERE trader_id = 'TRADER02'",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })
        .unwrap();
        assert_eq!(desks, ["Moved Desk"]);
    }
}

/// The books of a Kafka test in PostgreSQL (when EOD_POSTGRES_URL is set), with reference data
/// for the simulated market minus one trader, whose rows must come out flagged.
struct Books {
    url: String,
    /// Reference data from the reference topic rather than CSV files.
    via_topic: bool,
    /// A Redis database of the test's own, when EOD_REDIS_URL is set: the speed path too.
    redis: Option<String>,
    traders: std::path::PathBuf,
    securities: std::path::PathBuf,
    reference: eod_runtime::books::ReferenceData,
}

impl Books {
    /// `database` in PostgreSQL and database number `redis_db` in Redis are the test's own.
    fn new(
        dir: &Path,
        database: &str,
        redis_db: u32,
        traders: usize,
        symbols: usize,
    ) -> Option<Books> {
        let admin = common::postgres_url()?;
        let redis = std::env::var("EOD_REDIS_URL").ok();
        Some(Books::on(
            &admin, redis, dir, database, redis_db, traders, symbols,
        ))
    }

    /// [`Books::new`] on the PostgreSQL server of `admin` and the Redis server of `redis`.
    fn on(
        admin: &str,
        redis: Option<String>,
        dir: &Path,
        database: &str,
        redis_db: u32,
        traders: usize,
        symbols: usize,
    ) -> Books {
        let redis = redis.map(|url| {
            let url = format!("{}/{redis_db}", url.trim_end_matches('/'));
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut conn = client.get_connection().unwrap();
            redis::cmd("FLUSHDB").query::<()>(&mut conn).unwrap();
            url
        });
        Books {
            url: common::fresh_database(admin, database),
            redis,
            ..Books::reference_files(dir, traders, symbols)
        }
    }

    /// SQLite books in `dir`, the reference data as [`Books::new`]'s; no Redis.
    fn sqlite(dir: &Path, traders: usize, symbols: usize) -> Books {
        Books {
            url: format!("sqlite:{}", dir.join("books.sqlite").display()),
            ..Books::reference_files(dir, traders, symbols)
        }
    }

    /// The simulator's reference data for `traders` and `symbols` in CSV files in `dir`, less
    /// TRADER01 (its rows must be written, flagged); no store yet.
    fn reference_files(dir: &Path, traders: usize, symbols: usize) -> Books {
        let mut sim = SimConfig::market_close(1);
        sim.traders = traders;
        sim.symbols = symbols;
        let (mut trader_refs, security_refs) =
            eod_sources::reference_data::simulated_reference(&sim);
        trader_refs.retain(|t| t.trader_id != "TRADER01");
        let (traders, securities) = (dir.join("traders.csv"), dir.join("securities.csv"));
        std::fs::write(
            &traders,
            eod_sources::reference_data::traders_csv(&trader_refs),
        )
        .unwrap();
        std::fs::write(
            &securities,
            eod_sources::reference_data::securities_csv(&security_refs),
        )
        .unwrap();
        Books {
            url: String::new(),
            via_topic: false,
            redis: None,
            traders,
            securities,
            reference: eod_runtime::books::ReferenceData {
                traders: trader_refs,
                securities: security_refs,
            },
        }
    }

    /// Publishes the reference data with `eod reference`, then a later version of TRADER02
    /// (another desk) and a tombstone for SYM003: the run must follow the topic to its end.
    fn publish_to_topic(&mut self, brokers: &str, topics: &Topics, dir: &Path) {
        let publish = |args: &[&std::ffi::OsStr]| {
            let out = Command::new(env!("CARGO_BIN_EXE_eod"))
                .args(["reference", "--brokers", brokers, "--reference-topic"])
                .arg(&topics.reference)
                .args(args)
                .output()
                .unwrap();
            assert_success(&out);
        };
        publish(&[
            "--trader-reference".as_ref(),
            self.traders.as_os_str(),
            "--security-reference".as_ref(),
            self.securities.as_os_str(),
        ]);
        let moved = self
            .reference
            .traders
            .iter_mut()
            .find(|t| t.trader_id == "TRADER02")
            .unwrap();
        moved.desk = "Moved Desk".into();
        let update = dir.join("update.csv");
        std::fs::write(
            &update,
            eod_sources::reference_data::traders_csv(std::slice::from_ref(moved)),
        )
        .unwrap();
        publish(&[
            "--trader-reference".as_ref(),
            update.as_os_str(),
            "--withdraw-securities".as_ref(),
            "SYM003".as_ref(),
        ]);
        self.reference.securities.retain(|s| s.symbol != "SYM003");
        self.via_topic = true;
    }

    fn assert_match(
        &self,
        events: &[TradeEvent],
        expected: &baseline::BaselineViews,
        archive: &Path,
    ) {
        let snapshot = eod_dataflow::ViewSnapshot {
            positions: expected.positions.clone().into(),
            ..Default::default()
        };
        let rows = match self.url.strip_prefix("sqlite:") {
            Some(path) => common::sqlite_rows(&rusqlite::Connection::open(path).unwrap()),
            None => common::postgres_rows(&self.url),
        };
        let stats = common::assert_books_match(&rows, events, &snapshot, &self.reference, archive);
        assert!(stats.enrichment_missing > 0, "{stats:?}");
    }

    /// Redis, written by process 0, holds exactly the final positions.
    fn assert_redis_equals(&self, positions: &serde_json::Value) {
        let Some(url) = &self.redis else { return };
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let mut stored = Vec::new();
        for row in positions.as_array().unwrap() {
            let key = format!("positions:{}", row["trader"].as_str().unwrap());
            let value: String = redis::cmd("HGET")
                .arg(&key)
                .arg(row["symbol"].as_str().unwrap())
                .query(&mut conn)
                .unwrap();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&value).unwrap(),
                *row
            );
            stored.push(key);
        }
        stored.sort();
        stored.dedup();
        let total: usize = stored
            .iter()
            .map(|key| {
                redis::cmd("HLEN")
                    .arg(key)
                    .query::<usize>(&mut conn)
                    .unwrap()
            })
            .sum();
        assert_eq!(total, positions.as_array().unwrap().len());
    }
}

/// Waits for a child, killing it after `timeout`.
fn wait_or_kill(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn kill_9_mid_burst_then_restart_gives_exact_views() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics("crash");
    create(&brokers, &topics);
    let eod = env!("CARGO_BIN_EXE_eod");
    let archive = dir.path().join("archive");
    let port = common::http::free_port();
    let gateway = spawn_gateway(dir.path(), port, &brokers, &topics, &["--connections", "1"]);
    // 15k messages over 6 s (500/s simulated at 5x speed), then 45k in the 10x burst of
    // 16:00 (about 1.8 s).
    let mut simulate = Command::new(eod);
    simulate
        .args(["simulate", "--to", &format!("127.0.0.1:{port}")])
        .args(["--messages", "60000", "--rate", "500", "--speed", "5"])
        .args(["--traders", "5", "--symbols", "12", "--seed", "21"])
        .args(["--brokers", &brokers, "--prices-topic", &topics.prices]);
    let mut simulate = simulate
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let books = Books::new(dir.path(), "eod_kafka_crash", 2, 5, 12);
    let started = std::time::Instant::now();
    // Both processes snapshot every second to one store, as they would to one S3 bucket.
    let snapshots = dir.path().join("snapshots");
    let with_snapshots = |_process: usize| -> Vec<String> {
        let location = snapshots.display().to_string();
        ["--serve", "127.0.0.1:0", "--snapshots", &location]
            .into_iter()
            .chain(["--snapshot-interval-s", "1"])
            .map(String::from)
            .collect()
    };
    let mut live = spawn_two_runs_with(
        &brokers,
        &topics,
        dir.path(),
        false,
        books.as_ref(),
        with_snapshots,
    );
    // Into the burst, and (with books) once the run has committed something, so that the
    // check below has offsets to hold against the books.
    std::thread::sleep(Duration::from_millis(6300));
    if books.is_some() {
        while committed_trade_offsets(&brokers, &topics)
            .iter()
            .all(|&c| c <= 0)
            && started.elapsed() < Duration::from_secs(7)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // kill -9 one process in the middle of the burst; its peer cannot go on without it.
    assert!(
        simulate.try_wait().unwrap().is_none(),
        "the traffic is still flowing when the process dies"
    );
    let parts = snapshots.join("eod-run").join("parts");
    assert!(
        complete_snapshots(&parts, 4).len() >= 2,
        "two snapshots before the kill: {:?}",
        files_below(&parts)
    );
    live[1].kill().unwrap();
    live[1].wait().unwrap();
    let survivor = wait_or_kill(&mut live[0], Duration::from_secs(10));
    assert!(
        survivor.is_none_or(|status| !status.success()),
        "a timely peer cannot finish without the other"
    );

    let simulate = simulate.wait_with_output().unwrap();
    assert_success(&simulate);
    let gateway = gateway.wait_with_output().unwrap();
    assert_success(&gateway);
    if let Some(books) = &books {
        assert_commits_never_ahead_of_books(&brokers, &topics, books);
    }

    // The newest complete snapshot is damaged (one part cut short, as a torn write would
    // leave it): the restart must notice and start from the one before, then read the tail.
    let complete = complete_snapshots(&parts, 4);
    let newest = complete.last().unwrap();
    let torn = std::fs::read(&newest[0]).unwrap();
    std::fs::write(&newest[0], &torn[..torn.len() / 2]).unwrap();
    let restarted = spawn_two_runs_with(
        &brokers,
        &topics,
        dir.path(),
        true,
        books.as_ref(),
        with_snapshots,
    );
    for (process, mut run) in restarted.into_iter().enumerate() {
        let status =
            wait_or_kill(&mut run, Duration::from_secs(120)).expect("restarted run finishes");
        let log = run_log(dir.path(), process);
        assert!(status.success(), "{log}");
        assert!(log.contains("damaged snapshot skipped"), "{log}");
        let mut summary = String::new();
        std::io::Read::read_to_string(&mut run.stdout.take().unwrap(), &mut summary).unwrap();
        assert!(summary.contains("records restored"), "{summary}\n{log}");
    }
    let segments = archive.join("gw1").join("20261125");
    let expected = baseline::compute(
        &decode_archive(&segments),
        &prices_on_topic(&brokers, &topics.prices),
    );
    let expected_json =
        serde_json::to_value(expected.positions.values().collect::<Vec<_>>()).unwrap();
    let trades: u64 = decode_archive(&segments).len() as u64;
    for process in 0..2 {
        let body = run_output(dir.path(), process);
        assert!(
            body["positions"] == expected_json,
            "process {process}: views differ after the restart"
        );
        assert_eq!(
            body["as_of"]["messages"].as_u64(),
            Some(trades),
            "every trade exactly once"
        );
    }
    if let Some(books) = &books {
        books.assert_match(&decode_archive(&segments), &expected, &archive);
    }
}

/// `eod simulate` to the gateway on `port`, prices to the topic, output piped.
fn spawn_simulator(
    port: u16,
    brokers: &str,
    topics: &Topics,
    pace: &[&str],
    shape: &[&str],
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_eod"))
        .args(["simulate", "--to", &format!("127.0.0.1:{port}")])
        .args(pace)
        .args(shape)
        .args(["--brokers", brokers, "--prices-topic", &topics.prices])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The parts of every snapshot all `peers` workers wrote, oldest first (a part's name is
/// `g<generation>-c<cut>-w<worker>-of<peers>.part`).
fn complete_snapshots(parts: &Path, peers: usize) -> Vec<Vec<std::path::PathBuf>> {
    let mut by_cut: std::collections::BTreeMap<String, Vec<std::path::PathBuf>> =
        Default::default();
    for path in files_below(parts) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some((snapshot, _worker)) = name.split_once("-w") {
            by_cut.entry(snapshot.to_owned()).or_default().push(path);
        }
    }
    by_cut.into_values().filter(|p| p.len() == peers).collect()
}

/// The dead letters the newest complete snapshot in `dir` counts, as a restart reads it (0
/// without one).
fn dead_letters_in_newest_snapshot(dir: &Path) -> eod_dataflow::Diff {
    let Ok(store) = object_store::local::LocalFileSystem::new_with_prefix(dir) else {
        return 0;
    };
    let metrics = Metrics::new().unwrap();
    let newest = eod_runtime::snapshot::load_newest(&store, &metrics.snapshots).unwrap();
    newest.map_or(0, |snapshot| {
        snapshot
            .parts
            .iter()
            .flat_map(|part| &part.counts)
            .filter(|(counter, _)| matches!(counter, eod_dataflow::Counter::DeadLetter(_)))
            .map(|(_, n)| *n)
            .sum()
    })
}

/// The offsets `eod run` (group `eod-run`) has committed per trades partition (-1: none).
fn committed_trade_offsets(brokers: &str, topics: &Topics) -> Vec<i64> {
    let partitions =
        partition_count(&plain(brokers), &topics.trades, Duration::from_secs(10)).unwrap();
    let assignments: Vec<(String, i32)> = (0..partitions)
        .map(|p| (topics.trades.clone(), p))
        .collect();
    eod_sources::kafka::committed_offsets(
        &plain(brokers),
        "eod-run",
        &assignments,
        Duration::from_secs(10),
    )
    .unwrap()
}

/// After the crash: every trade below the offsets the killed run committed is in the books.
fn assert_commits_never_ahead_of_books(brokers: &str, topics: &Topics, books: &Books) {
    let committed = committed_trade_offsets(brokers, topics);
    let assignments: Vec<(String, i32)> = (0..committed.len() as i32)
        .map(|p| (topics.trades.clone(), p))
        .collect();
    assert!(
        committed.iter().any(|&c| c > 0),
        "the run committed nothing before the kill"
    );
    let stored: std::collections::HashSet<String> = common::postgres_rows(&books.url)
        .into_iter()
        .map(|r| r.exec_id)
        .collect();
    let consumer = assigned_consumer(&plain(brokers), "eod-test-reader", &assignments).unwrap();
    let ends =
        eod_sources::kafka::end_offsets(&consumer, &assignments, Duration::from_secs(10)).unwrap();
    let (mut seen, mut checked) = (0i64, 0usize);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen < ends.iter().sum::<i64>() && std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.unwrap();
        seen += 1;
        if message.offset() >= committed[message.partition() as usize] {
            continue;
        }
        let Ok(received) = eod_sources::envelope::event_from_bytes(message.payload().unwrap())
        else {
            continue;
        };
        let Some(exec_id) = received.event.execution_id() else {
            continue;
        };
        assert!(
            stored.contains(exec_id.as_str()),
            "offset committed past {exec_id}, which the books do not hold"
        );
        checked += 1;
    }
    assert!(checked > 0, "no committed trade to check");
}

/// `eod ingest --listen` on `port`, archiving under `dir`, with `extra` flags.
fn spawn_gateway(
    dir: &Path,
    port: u16,
    brokers: &str,
    topics: &Topics,
    extra: &[&str],
) -> std::process::Child {
    let archive = dir.join("archive");
    spawn_gateway_to(
        dir,
        port,
        brokers,
        topics,
        archive.to_str().unwrap(),
        extra,
        &[],
    )
}

/// The gateway archiving to `archive_to`, with `env` added to its environment.
fn spawn_gateway_to(
    dir: &Path,
    port: u16,
    brokers: &str,
    topics: &Topics,
    archive_to: &str,
    extra: &[&str],
    env: &[(String, String)],
) -> std::process::Child {
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_eod"));
    gateway
        .args([
            "ingest",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--trading-date",
            "20261125",
        ])
        .arg("--spool")
        .arg(dir.join("spool"))
        .args(["--archive-to", archive_to])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    topic_args(&mut gateway, brokers, topics);
    gateway
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The FIX-session gateway for two connections, open to CLIENT (the scripted initiator) and
/// QFCLIENT (QuickFIX).
fn session_gateway(dir: &Path, port: u16, brokers: &str, topics: &Topics) -> std::process::Child {
    session_gateway_with(dir, port, brokers, topics, &["--connections", "2"])
}

fn session_gateway_with(
    dir: &Path,
    port: u16,
    brokers: &str,
    topics: &Topics,
    extra: &[&str],
) -> std::process::Child {
    let sessions = dir.join("sessions");
    let sessions = sessions.to_str().unwrap();
    let mut args = vec![
        "--fix-session",
        "--session-dir",
        sessions,
        "--counterparty",
        "CLIENT,QFCLIENT",
    ];
    args.extend_from_slice(extra);
    spawn_gateway(dir, port, brokers, topics, &args)
}

/// Two `eod run` processes (-n 2, -w 2 each) on fresh timely ports. Process p writes its final
/// positions to `dir/p{p}.json` and its log to `dir/p{p}.log` (a file, so it can never block).
fn spawn_two_runs(
    brokers: &str,
    topics: &Topics,
    dir: &Path,
    until_caught_up: bool,
    books: Option<&Books>,
) -> Vec<std::process::Child> {
    spawn_two_runs_with(brokers, topics, dir, until_caught_up, books, |_| {
        vec!["--serve".into(), "127.0.0.1:0".into()]
    })
}

/// [`spawn_two_runs`] with `per_process` flags (`--serve` among them) for each process.
fn spawn_two_runs_with(
    brokers: &str,
    topics: &Topics,
    dir: &Path,
    until_caught_up: bool,
    books: Option<&Books>,
    per_process: impl Fn(usize) -> Vec<String>,
) -> Vec<std::process::Child> {
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "127.0.0.1:{}\n127.0.0.1:{}\n",
            common::http::free_port(),
            common::http::free_port()
        ),
    )
    .unwrap();
    (0..2)
        .map(|process| {
            let mut run = Command::new(env!("CARGO_BIN_EXE_eod"));
            run.args(["run", "--epoch-ms", "5", "--output"])
                .arg(dir.join(format!("p{process}.json")))
                .args(per_process(process));
            if until_caught_up {
                run.arg("--until-caught-up");
            }
            topic_args(&mut run, brokers, topics);
            if let Some(redis) = books.and_then(|b| b.redis.as_ref()) {
                run.args(["--redis", redis]);
            }
            if let Some(books) = books {
                run.args(["--books", &books.url, "--books-batch-ms", "200"]);
                if !books.via_topic {
                    run.arg("--trader-reference")
                        .arg(&books.traders)
                        .arg("--security-reference")
                        .arg(&books.securities);
                }
            }
            run.args(["--", "-w", "2", "-n", "2", "-p", &process.to_string(), "-h"])
                .arg(&hosts);
            let log = std::fs::File::create(dir.join(format!("p{process}.log"))).unwrap();
            run.stdout(std::process::Stdio::piped())
                .stderr(log)
                .spawn()
                .unwrap()
        })
        .collect()
}

/// The final positions `eod run` process `process` wrote, as `GET /v1/positions` serves them.
fn run_output(dir: &Path, process: usize) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("p{process}.json"))).unwrap()).unwrap()
}

fn run_log(dir: &Path, process: usize) -> String {
    std::fs::read_to_string(dir.join(format!("p{process}.log"))).unwrap_or_default()
}

/// A scripted FIX initiator: sends what it is told and reads the acceptor's replies.
struct Initiator {
    stream: std::net::TcpStream,
    framer: Framer,
}

impl Initiator {
    fn connect(port: u16) -> Initiator {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    return Initiator {
                        stream,
                        framer: Framer::default(),
                    };
                }
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("connecting: {e}"),
            }
        }
    }

    /// Stamped with our clock: the gateway checks SendingTime against its own.
    fn message(seq: u64, msg_type: &str, extra: &[(u32, &str)]) -> Vec<u8> {
        let seq = seq.to_string();
        let sent = eod_fix::time::format_utc_timestamp(eod_fix::time::now_utc_nanos());
        let mut fields: Vec<(u32, &str)> =
            vec![(49, "CLIENT"), (56, "EOD"), (34, &seq), (52, &sent)];
        fields.extend_from_slice(extra);
        eod_fix::FixEncoder::new("FIX.4.4").message(msg_type, &fields)
    }

    /// A fill with `header` fields (PossDupFlag, OrigSendingTime) after the standard ones:
    /// header fields come before the body (FIX session test case 14g).
    fn fill_message(seq: u64, exec_id: &str, header: &[(u32, &str)]) -> Vec<u8> {
        let mut fields = header.to_vec();
        fields.extend([
            (50, "T1"),
            (17, exec_id),
            (150, "F"),
            (55, "SESS"),
            (54, "1"),
            (32, "10"),
            (31, "10"),
            (60, "20261125-21:00:00"),
        ]);
        Initiator::message(seq, "8", &fields)
    }

    fn send(&mut self, seq: u64, msg_type: &str, extra: &[(u32, &str)]) {
        self.send_raw(&Initiator::message(seq, msg_type, extra));
    }

    fn fill(&mut self, seq: u64, exec_id: &str, header: &[(u32, &str)]) {
        self.send_raw(&Initiator::fill_message(seq, exec_id, header));
    }

    /// Any bytes, as they are.
    fn send_raw(&mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self.stream, bytes).unwrap();
    }

    /// True once the acceptor has closed the connection (after what it sent is read).
    fn closed(&mut self) -> bool {
        let mut buffer = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut self.stream, &mut buffer) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// The next message from the acceptor, as `|`-separated text.
    fn receive(&mut self) -> String {
        loop {
            if let Some(Framed::Message { bytes, .. }) = self.framer.next_frame() {
                return String::from_utf8_lossy(bytes).replace('\x01', "|");
            }
            let mut buffer = [0u8; 4096];
            let n = std::io::Read::read(&mut self.stream, &mut buffer).expect("acceptor replies");
            assert!(n > 0, "acceptor closed the connection");
            self.framer.push(&buffer[..n]);
        }
    }
}

#[test]
fn fix_session_gap_resend_logout_and_reconnect() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics("session");
    create(&brokers, &topics);
    let port = common::http::free_port();
    let gateway = session_gateway(dir.path(), port, &brokers, &topics);

    let mut first = Initiator::connect(port);
    first.send(1, "A", &[(98, "0"), (108, "30")]);
    assert!(first.receive().contains("|35=A|"), "logon answered");
    first.fill(2, "S-2", &[]);
    first.fill(3, "S-3", &[]);
    // 4 and 5 are "lost"; 6 arrives and the acceptor asks for 4 onwards.
    first.fill(6, "S-6", &[]);
    let resend = first.receive();
    assert!(
        resend.contains("|35=2|") && resend.contains("|7=4|"),
        "resend request: {resend}"
    );
    // The resend, as FIX has it: PossDupFlag and the original SendingTime.
    let resent = [(43, "Y"), (122, "20261125-21:00:00")];
    first.fill(4, "S-4", &resent);
    first.fill(5, "S-5", &resent);
    first.fill(6, "S-6", &resent); // a duplicate: dropped
    first.send(7, "1", &[(112, "PING")]);
    let heartbeat = first.receive();
    assert!(
        heartbeat.contains("|35=0|") && heartbeat.contains("|112=PING|"),
        "{heartbeat}"
    );
    first.send(8, "5", &[]);
    assert!(first.receive().contains("|35=5|"), "logout answered");
    drop(first);

    // Reconnect without a reset: the sequence numbers carry on from the persisted state.
    let mut second = Initiator::connect(port);
    second.send(9, "A", &[(98, "0"), (108, "30")]);
    let logon = second.receive();
    assert!(
        logon.contains("|35=A|") && logon.contains("|34=5|"),
        "our numbering continues after Logon, ResendRequest, Heartbeat and Logout (1-4): {logon}"
    );
    second.fill(10, "S-10", &[]);
    second.send(11, "5", &[]);
    assert!(second.receive().contains("|35=5|"));
    drop(second);

    let out = gateway.wait_with_output().unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("trades") && l.trim_end().ends_with(" 6")),
        "{stdout}"
    );

    let summary = catch_up(&brokers, &topics, "eod-session-test");
    let position = &summary.snapshot.positions[&("T1".into(), "SESS".into())];
    assert_eq!(
        (position.trades, position.net_qty),
        (6, 60),
        "S-2..S-6 and S-10, each once"
    );
}

/// kill -9 of the gateway in the middle of a FIX session: the restarted gateway (same spool and
/// session state) asks the sender to resend everything it had not delivered to the broker, and
/// every fill reaches the views once. Without the sender's resend a killed gateway would lose
/// what was in flight; without the gateway persisting its sequence numbers only after the
/// broker has the records, it would not ask for them.
#[test]
fn a_killed_gateway_loses_no_fill_of_its_session() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics("gwkill");
    create(&brokers, &topics);
    let port = common::http::free_port();
    let gateway_once =
        || session_gateway_with(dir.path(), port, &brokers, &topics, &["--connections", "1"]);
    let mut gateway = gateway_once();
    let total: u64 = 3000;
    let mut client = Initiator::connect(port);
    client.send(1, "A", &[(98, "0"), (108, "30")]);
    assert!(client.receive().contains("|35=A|"), "logon answered");
    // Fills 2.. as fast as the socket takes them; the gateway dies in the middle. What the
    // sender wrote after that is gone with the connection, as FIX expects.
    let mut next_seq = 2;
    let send_until = |client: &mut Initiator, next_seq: &mut u64, end: u64| {
        while *next_seq < end {
            let fill = Initiator::fill_message(*next_seq, &format!("K-{next_seq}"), &[]);
            if std::io::Write::write_all(&mut client.stream, &fill).is_err() {
                return;
            }
            *next_seq += 1;
        }
    };
    send_until(&mut client, &mut next_seq, 2 + total / 2);
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    send_until(&mut client, &mut next_seq, 2 + total);
    drop(client);

    // The restarted gateway answers the next Logon and asks for the gap.
    let gateway = gateway_once();
    let mut client = Initiator::connect(port);
    client.send(next_seq, "A", &[(98, "0"), (108, "30")]);
    assert!(client.receive().contains("|35=A|"), "logon answered");
    let resend = client.receive();
    assert!(resend.contains("|35=2|"), "a resend request: {resend}");
    let from: u64 = resend
        .split('|')
        .find_map(|f| f.strip_prefix("7="))
        .and_then(|v| v.parse().ok())
        .expect("BeginSeqNo");
    assert!(
        from < 2 + total / 2 + 1,
        "it asks for what it had not made durable: {resend}"
    );
    let resent = [(43, "Y"), (122, "20261125-21:00:00")];
    if from == 1 {
        // Killed before it kept anything, even the Logon: an administrative message is not
        // sent again but gap-filled (SequenceReset, GapFillFlag).
        let gap_fill = [(123, "Y"), (36, "2")];
        client.send(1, "4", &[resent.as_slice(), &gap_fill].concat());
    }
    for seq in from.max(2)..next_seq {
        client.fill(seq, &format!("K-{seq}"), &resent);
    }
    let mut seq = next_seq + 1;
    for fill in next_seq..2 + total {
        client.fill(seq, &format!("K-{fill}"), &[]);
        seq += 1;
    }
    client.send(seq, "5", &[]);
    assert!(client.receive().contains("|35=5|"), "logout answered");
    drop(client);
    assert_success(&gateway.wait_with_output().unwrap());

    let summary = catch_up(&brokers, &topics, "gwkill");
    let position = &summary.snapshot.positions[&("T1".into(), "SESS".into())];
    assert_eq!(position.trades, total, "every fill once");
    assert_eq!(position.net_qty, 10 * i128::from(total));
}

/// A corrupt BodyLength on the gateway's TCP path: the message declares a span ending exactly
/// on the CheckSum field of the third message after it. Those three are delivered at once, the
/// bad one is dead-lettered alone, the session asks for its sequence number again and the
/// resend fills it; the archive keeps the bytes as they were received.
#[test]
fn fix_session_recovers_the_messages_behind_a_corrupt_body_length() {
    let Some(brokers) = brokers() else { return };
    let (dir, topics, gateway, mut client) = logged_on_session(&brokers, "corruptlen");

    let behind: Vec<Vec<u8>> = (3..=5)
        .map(|seq| Initiator::fill_message(seq, &format!("L-{seq}"), &[]))
        .collect();
    let good = Initiator::fill_message(2, "L-2", &[]);
    let length_at = good.windows(3).position(|w| w == b"\x019=").unwrap() + 3;
    let length_end = length_at + good[length_at..].iter().position(|b| *b == 1).unwrap();
    let declared: usize = std::str::from_utf8(&good[length_at..length_end])
        .unwrap()
        .parse()
        .unwrap();
    // Our own CheckSum field, then everything up to the third message's `10=`.
    let span = declared + 7 + behind.iter().map(Vec::len).sum::<usize>() - 7;
    let bad = [
        &good[..length_at],
        span.to_string().as_bytes(),
        &good[length_end..],
    ]
    .concat();
    let sent = [bad.clone(), behind.concat()].concat();
    client.send_raw(&sent);
    let resend = client.receive();
    assert!(
        resend.contains("|35=2|") && resend.contains("|7=2|"),
        "the lost sequence number is asked for again: {resend}"
    );
    client.fill(2, "L-2", &[(43, "Y"), (122, "20261125-21:00:00")]);
    client.send(6, "5", &[]);
    assert!(client.receive().contains("|35=5|"));
    drop(client);

    // L-2..L-5 each once; the bad message alone is dead.
    assert_session_outcome(gateway, &brokers, &topics, (4, 1), (4, 40));
    let archived: Vec<u8> = files_below(&dir.path().join("archive"))
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(
        archived.windows(sent.len()).any(|w| w == sent.as_slice()),
        "the archive holds the bytes as received"
    );
}

/// FIX session test cases 14b-14e over the wire: an execution report the classifier refuses
/// is answered with a session-level Reject naming the field and the reason, the session goes
/// on (the next fill is a trade, the Logout is answered), and the refused message is still
/// dead-lettered.
#[test]
fn fix_session_rejects_an_invalid_message_and_goes_on() {
    let Some(brokers) = brokers() else { return };
    let (_dir, topics, gateway, mut client) = logged_on_session(&brokers, "reject");
    let bad_side = [
        (50, "T1"),
        (17, "R-2"),
        (150, "F"),
        (55, "SESS"),
        (54, "Q"),
        (32, "10"),
        (31, "10"),
        (60, "20261125-21:00:00"),
    ];
    client.send(2, "8", &bad_side);
    let reject = client.receive();
    assert!(
        reject.contains("|35=3|")
            && reject.contains("|45=2|")
            && reject.contains("|371=54|")
            && reject.contains("|372=8|")
            && reject.contains("|373=5|"),
        "a Reject naming Side as out of range: {reject}"
    );
    // Structure (FIX session test case 14h): LastPx twice, which price is the fill's?
    let mut twice = bad_side;
    twice[1] = (17, "R-3");
    twice[4] = (54, "1");
    let mut twice = twice.to_vec();
    twice.push((31, "11"));
    client.send(3, "8", &twice);
    let reject = client.receive();
    assert!(
        reject.contains("|35=3|")
            && reject.contains("|45=3|")
            && reject.contains("|371=31|")
            && reject.contains("|373=13|"),
        "a Reject naming LastPx as repeated: {reject}"
    );
    client.fill(4, "R-4", &[]);
    client.send(5, "5", &[]);
    assert!(
        client.receive().contains("|35=5|"),
        "the session went on to its Logout"
    );
    drop(client);

    // R-4 alone is a trade; both refused messages are dead-lettered.
    assert_session_outcome(gateway, &brokers, &topics, (1, 2), (1, 10));
}

/// A session gateway for one connection on fresh topics, and a client logged on to it.
fn logged_on_session(
    brokers: &str,
    name: &str,
) -> (tempfile::TempDir, Topics, std::process::Child, Initiator) {
    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics(name);
    create(brokers, &topics);
    let port = common::http::free_port();
    let gateway = session_gateway_with(dir.path(), port, brokers, &topics, &["--connections", "1"]);
    let mut client = Initiator::connect(port);
    client.send(1, "A", &[(98, "0"), (108, "30")]);
    assert!(client.receive().contains("|35=A|"));
    (dir, topics, gateway, client)
}

/// The gateway of a session test ran to its end: it reports `trades` and `dead` letters with
/// every message accounted for, and the views over its topics hold T1's SESS position as
/// (trades, net quantity).
fn assert_session_outcome(
    gateway: std::process::Child,
    brokers: &str,
    topics: &Topics,
    (trades, dead): (u64, u64),
    position: (u64, i128),
) {
    let out = gateway.wait_with_output().unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(common::printed(&stdout, "trades"), trades, "{stdout}");
    assert_eq!(common::printed(&stdout, "dead letters"), dead, "{stdout}");
    assert!(stdout.contains("(all)"), "{stdout}");
    let summary = catch_up(
        brokers,
        topics,
        &format!("eod-session-test-{}", topics.trades),
    );
    let held = &summary.snapshot.positions[&("T1".into(), "SESS".into())];
    assert_eq!((held.trades, held.net_qty), position);
}

/// Only configured counterparties log on: an unknown SenderCompID, a Logon to another
/// TargetCompID, a FIX 4.2 Logon on the 4.4 gateway and a counterparty from an address it may
/// not use are each answered with a Logout naming the reason, logged and counted; a CompID
/// change after Logon is rejected (CompID problem) and logged out; a connection that does not
/// log on within the Logon timeout is closed. Nothing of theirs becomes a trade, and the
/// archive still holds every byte received.
#[test]
fn fix_session_refuses_strangers() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics("strangers");
    create(&brokers, &topics);
    let (port, metrics_port) = (common::http::free_port(), common::http::free_port());
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let gateway = session_gateway_with(
        dir.path(),
        port,
        &brokers,
        &topics,
        &[
            // Seven strangers, then one that only connects and leaves, after the metrics are
            // read: the gateway stops serving (and exporting metrics) after its last connection.
            "--connections",
            "8",
            "--counterparty",
            "FAR@10.0.0.0/8",
            "--logon-timeout",
            "1",
            "--metrics-listen",
            &metrics_addr,
        ],
    );
    let logon = |begin: &str, sender: &str, target: &str| {
        eod_fix::FixEncoder::new(begin).message(
            "A",
            &[
                (49, sender),
                (56, target),
                (34, "1"),
                (52, "20261125-21:00:00"),
                (98, "0"),
                (108, "30"),
            ],
        )
    };
    let mut sent_bytes = 0usize;
    for (message, reason) in [
        (
            logon("FIX.4.4", "STRANGER", "EOD"),
            "not a configured counterparty",
        ),
        (logon("FIX.4.4", "CLIENT", "SOMEONE-ELSE"), "TargetCompID"),
        (logon("FIX.4.2", "CLIENT", "EOD"), "BeginString"),
        (
            logon("FIX.4.4", "FAR", "EOD"),
            "may not log on from 127.0.0.1",
        ),
    ] {
        let mut initiator = Initiator::connect(port);
        initiator.send_raw(&message);
        sent_bytes += message.len();
        let reply = initiator.receive();
        assert!(
            reply.contains("|35=5|") && reply.contains(reason),
            "refused with a Logout saying {reason:?}: {reply}"
        );
        assert!(
            initiator.closed(),
            "the connection is closed after the Logout"
        );
    }

    // A configured counterparty logs on, then a message under another SenderCompID.
    let mut client = Initiator::connect(port);
    client.send(1, "A", &[(98, "0"), (108, "30")]);
    assert!(client.receive().contains("|35=A|"));
    let impostor = eod_fix::FixEncoder::new("FIX.4.4").message(
        "8",
        &[
            (49, "IMPOSTOR"),
            (56, "EOD"),
            (34, "2"),
            (52, "20261125-21:00:00"),
            (50, "T1"),
            (17, "IMP-1"),
            (150, "F"),
            (55, "SESS"),
            (54, "1"),
            (32, "10"),
            (31, "10"),
            (60, "20261125-21:00:00"),
        ],
    );
    client.send_raw(&impostor);
    let reject = client.receive();
    assert!(
        reject.contains("|35=3|") && reject.contains("|373=9|") && reject.contains("|45=2|"),
        "session-level Reject, CompID problem: {reject}"
    );
    assert!(client.receive().contains("|35=5|"), "then a Logout");
    assert!(client.closed());

    // No Logon within the timeout (1 s here): a silent peer, and one that keeps sending
    // garbage (its reads never time out), are both closed.
    let started = std::time::Instant::now();
    let mut silent = Initiator::connect(port);
    assert!(silent.closed(), "a silent connection is closed");
    let mut garbage = Initiator::connect(port);
    while std::io::Write::write_all(&mut garbage.stream, b"not FIX at all ").is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a connection sending garbage is closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let text = common::http::get_text(&metrics_addr, "/metrics").1;
    for (reason, refused) in [
        ("unknown_sender", 1.0),
        ("wrong_target", 1.0),
        ("wrong_begin_string", 1.0),
        ("address_not_allowed", 1.0),
        ("logon_timeout", 2.0),
    ] {
        let series = format!("eod_fix_logons_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(common::http::metric(&text, &series), refused, "{series}");
    }
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    let out = gateway.wait_with_output().unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["trades", "0"]),
        "nothing of theirs is a trade: {stdout}"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("FIX Logon refused").count(),
        6,
        "one log line per refusal: {log}"
    );
    assert!(log.contains("STRANGER"), "{log}");
    // The archive holds every byte received, refused ones included.
    let archived: usize = files_below(&dir.path().join("archive"))
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len() as usize)
        .sum();
    assert!(
        archived >= sent_bytes,
        "archived {archived} of the {sent_bytes} bytes the strangers sent"
    );
}

/// Every file below `dir`.
fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_below(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn quickfix_initiator_session() {
    let Some(brokers) = brokers() else { return };
    let Some(python) = common::env_or_skip(
        "EOD_QUICKFIX_PYTHON",
        "scripts/test-all.sh builds a QuickFIX venv",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics("quickfix");
    create(&brokers, &topics);
    let port = common::http::free_port();
    let gateway = session_gateway(dir.path(), port, &brokers, &topics);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fix/quickfix_initiator.py");
    let workdir = dir.path().join("quickfix");
    std::fs::create_dir_all(&workdir).unwrap();
    let initiator = Command::new(&python)
        .arg(&script)
        .arg(port.to_string())
        .arg(&workdir)
        .output()
        .unwrap();
    assert!(
        initiator.status.success(),
        "QuickFIX initiator failed:\n{}\n{}",
        String::from_utf8_lossy(&initiator.stdout),
        String::from_utf8_lossy(&initiator.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(
        initiator
            .stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .expect("a JSON summary"),
    )
    .unwrap();
    assert_eq!(report["logons"], 2, "{report}");
    assert!(
        report["resend_requests"].as_u64().unwrap() >= 1,
        "the acceptor asked for the gap: {report}"
    );

    let out = gateway.wait_with_output().unwrap();
    assert_success(&out);
    let summary = catch_up(&brokers, &topics, "eod-quickfix-test");
    let position = &summary.snapshot.positions[&("QF-TRADER".into(), "QFX".into())];
    assert_eq!(position.trades, 6, "Q-1..Q-6, each once");
    assert_eq!(position.net_qty, 100 + 200 + 300 + 400 + 500 + 600);
}

/// The AWS_* variables `eod` reads to reach the S3 server of `scripts/s3.sh`.
fn s3_env(s3: &common::server::OwnServer) -> Vec<(String, String)> {
    s3.script("env")
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn s3_store(
    s3: &common::server::OwnServer,
    prefix: &str,
) -> std::sync::Arc<dyn object_store::ObjectStore> {
    let env: std::collections::HashMap<String, String> = s3_env(s3).into_iter().collect();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&env["AWS_ENDPOINT"])
        .with_allow_http(true)
        .with_region(&env["AWS_REGION"])
        .with_access_key_id(&env["AWS_ACCESS_KEY_ID"])
        .with_secret_access_key(&env["AWS_SECRET_ACCESS_KEY"])
        .with_bucket_name("eod-archive")
        .build()
        .unwrap();
    std::sync::Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
}

#[test]
fn s3_outage_mid_ingest_spools_then_uploads_in_order_and_replays_exactly() {
    let Some(brokers) = brokers() else { return };
    if common::env_or_skip("EOD_S3_URL", "scripts/s3.sh start").is_none() {
        return;
    }
    // A SeaweedFS of the test's own: its outage must not disturb the other tests.
    let s3 = common::server::OwnServer::start("s3", 18_533);
    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics("s3");
    create(&brokers, &topics);
    let port = common::http::free_port();
    let mut gateway = spawn_gateway_to(
        dir.path(),
        port,
        &brokers,
        &topics,
        "s3://eod-archive/outage",
        &[
            "--connections",
            "1",
            // A cap below the segment size: the gateway must close the open segment to
            // make room, or nothing could ever be uploaded to free the spool.
            "--segment-bytes",
            "200000",
            "--spool-max-bytes",
            "120000",
        ],
        &s3_env(&s3),
    );
    let simulate = spawn_simulator(
        port,
        &brokers,
        &topics,
        &["--messages", "8000", "--rate", "1000", "--speed", "1"],
        &["--burst-multiplier", "1", "--seed", "4"],
    );

    // Traffic flows (the simulator may first wait for the new topics' metadata): the gateway
    // has rolled past its third segment, the first ones uploaded. A full segment keeps its
    // `.open` name until Kafka has its records, then goes at once: the number is in the stem.
    let newest_segment = |dir: &Path| {
        std::fs::read_dir(dir.join("spool"))
            .map(|entries| {
                entries
                    .filter_map(|e| {
                        let path = e.ok()?.path();
                        path.file_stem()?
                            .to_str()?
                            .rsplit('-')
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while newest_segment(dir.path()) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no traffic reached the gateway"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s3.script("stop");
    std::thread::sleep(Duration::from_millis(3000));
    let spooled = |dir: &Path| {
        std::fs::read_dir(dir.join("spool"))
            .unwrap()
            .filter(|e| {
                let path = e.as_ref().unwrap().path();
                path.extension().is_some_and(|x| x == "fix")
            })
            .count()
    };
    let waiting = spooled(dir.path());
    // The spool stops at its cap (one read of 64 KiB may land past it): the sender is held
    // back instead of the disk filling. At 1,000 messages/s, 3 s would be about 600 kB.
    let spool_bytes: u64 = std::fs::read_dir(dir.path().join("spool"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        spool_bytes <= 120_000 + 64 * 1024,
        "the spool grew past its cap: {spool_bytes} bytes"
    );
    if waiting < 1 {
        let _ = gateway.kill();
        let out = gateway.wait_with_output().unwrap();
        panic!(
            "segments should wait in the spool while S3 is down ({waiting}); gateway: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    s3.script("start");

    let simulate = simulate.wait_with_output().unwrap();
    assert_success(&simulate);
    let gateway = gateway.wait_with_output().unwrap();
    assert_success(&gateway);
    assert_eq!(spooled(dir.path()), 0, "the spool drained once S3 was back");
    assert!(
        String::from_utf8_lossy(&gateway.stderr).contains("archive spool full"),
        "the cap was never reached: {}",
        String::from_utf8_lossy(&gateway.stderr)
    );

    // S3 holds every byte sent, in segments numbered without a gap.
    let field = |name: &str| -> u64 {
        String::from_utf8_lossy(&simulate.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
            .unwrap()
    };
    let archive =
        eod_sources::archive::Archive::from_store(s3_store(&s3, "outage/gw1/20261125"), None, "s3");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let segments = runtime.block_on(archive.segments()).unwrap();
    let seqs: Vec<u64> = segments
        .iter()
        .map(|s| {
            let stem = s.key.trim_end_matches(".fix");
            stem.rsplit('-').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(seqs.len() >= 3, "{seqs:?}");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "segments in order without gaps: {seqs:?}"
    );
    let total: u64 = segments.iter().map(|s| s.size).sum();
    assert_eq!(total, field("fix bytes"), "every byte sent is in S3 once");

    // And `eod replay` reads it back from S3: every message accounted for.
    let replay = Command::new(env!("CARGO_BIN_EXE_eod"))
        .args(["replay", "--quiet", "--no-books"])
        .args(["--archive", "s3://eod-archive/outage/gw1/20261125"])
        .envs(s3_env(&s3))
        .output()
        .unwrap();
    assert_success(&replay);
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert!(
        stdout.contains("accounted") && stdout.contains("(all)"),
        "{stdout}"
    );
    let read: u64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("messages")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    assert_eq!(read, field("fix messages"));

    // Snapshots to the same S3: a run that stops leaves one; the next starts from it, reads
    // nothing more, and serves the same positions.
    let snapshot_run = |name: &str| {
        let mut run = Command::new(env!("CARGO_BIN_EXE_eod"));
        run.args([
            "run",
            "--until-caught-up",
            "--no-books",
            "--serve",
            "127.0.0.1:0",
        ])
        .args([
            "--snapshots",
            &format!("s3://eod-archive/{}", topics.trades),
        ])
        .arg("--output")
        .arg(dir.path().join(format!("{name}.json")))
        .envs(s3_env(&s3));
        topic_args(&mut run, &brokers, &topics);
        let out = run.args(["--", "-w", "2"]).output().unwrap();
        assert_success(&out);
        let positions: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), positions)
    };
    let (first, written) = snapshot_run("first");
    assert!(!first.contains("records restored"), "{first}");
    let (second, restored) = snapshot_run("second");
    assert!(second.contains("records restored"), "{second}");
    assert_eq!(written["positions"], restored["positions"]);
    assert_eq!(written["as_of"]["messages"], restored["as_of"]["messages"]);
}

/// The broker's SASL_SSL listener (PLAIN over TLS, certificate from a private CA): the gateway
/// publishes and the dataflow consumes through it with the security flags, and the views
/// equal the reference. A client that does not trust the CA gets nothing through.
#[test]
fn gateway_and_dataflow_over_sasl_ssl() {
    let Some(brokers) = brokers() else { return };
    let set_by = "scripts/kafka.sh env";
    let Some(secure) = common::env_or_skip("EOD_KAFKA_TLS_BROKERS", set_by) else {
        return;
    };
    let Some(tls) = common::env_or_skip("EOD_KAFKA_TLS_DIR", set_by) else {
        return;
    };
    let tls = Path::new(&tls);
    let read = |name: &str| {
        std::fs::read_to_string(tls.join(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (username, password) = (read("sasl-username"), read("sasl-password"));
    let fx = fixture();
    let topics = unique_topics("sasl");
    let ca = tls.join("ca.pem");
    let mut ingest = Command::new(env!("CARGO_BIN_EXE_eod"));
    ingest
        .args(["ingest", "--create-topics", "--archive"])
        .arg(&fx.archive)
        .arg("--prices")
        .arg(&fx.prices_csv);
    topic_args(&mut ingest, &secure, &topics);
    ingest
        .args(["--kafka-security-protocol", "sasl_ssl"])
        .args(["--kafka-sasl-mechanism", "PLAIN"])
        .args(["--kafka-sasl-username", &username])
        .arg("--kafka-ssl-ca")
        .arg(&ca)
        .env("EOD_KAFKA_SASL_PASSWORD", &password)
        .env("EOD_LOG", "debug");
    let out = ingest.output().unwrap();
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains(&password), "the SASL password was logged");

    let secured = eod_sources::kafka::KafkaConnection::plaintext(&secure)
        .with("security.protocol", "sasl_ssl")
        .with("sasl.mechanism", "PLAIN")
        .with("sasl.username", username.as_str())
        .with("sasl.password", password.as_str())
        .with("ssl.ca.location", ca.display().to_string());
    assert!(!format!("{secured:?}").contains(&password));
    let prices = parse_prices_csv(&std::fs::read_to_string(&fx.prices_csv).unwrap()).unwrap();
    let summary = catch_up_over(secured, &topics, "eod-sasl");
    let expected = baseline::compute(&decode_archive(&fx.archive), &prices);
    assert_eq!(summary.snapshot.positions, expected.positions);
    assert_eq!(summary.snapshot.firm, expected.firm);

    // Wrong credentials: a prompt, clear failure, not a hang in retries.
    let mut wrong = Command::new(env!("CARGO_BIN_EXE_eod"));
    wrong.args(["ingest", "--archive"]).arg(&fx.archive);
    topic_args(&mut wrong, &secure, &topics);
    let started = std::time::Instant::now();
    let out = wrong
        .args(["--kafka-security-protocol", "sasl_ssl"])
        .args([
            "--kafka-sasl-mechanism",
            "PLAIN",
            "--kafka-sasl-username",
            "eod",
        ])
        .args(["--kafka-sasl-password", "not-the-password-42"])
        .arg("--kafka-ssl-ca")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("refused our credentials"), "{said}");
    assert!(!said.contains("not-the-password-42"), "{said}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Without the CA the broker's certificate is not trusted: metadata never arrives.
    let untrusted = eod_sources::kafka::KafkaConnection::plaintext(&secure)
        .with("security.protocol", "sasl_ssl")
        .with("sasl.mechanism", "PLAIN")
        .with("sasl.username", username.as_str())
        .with("sasl.password", password.as_str());
    assert!(partition_count(&untrusted, &topics.trades, Duration::from_secs(3)).is_err());
    // The plaintext listener is the same cluster: the topics are there.
    assert_eq!(
        partition_count(&plain(&brokers), &topics.trades, Duration::from_secs(10)).unwrap(),
        12
    );
}

/// `eod ingest --metrics-listen`: the gateway's own Prometheus endpoint counts what it read,
/// archived, uploaded and produced, and agrees with what the simulator sent.
#[test]
fn gateway_metrics_account_for_every_byte_and_message() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics("gwmetrics");
    create(&brokers, &topics);
    let (port, metrics_port) = (common::http::free_port(), common::http::free_port());
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let gateway = spawn_gateway(
        dir.path(),
        port,
        &brokers,
        &topics,
        &[
            "--metrics-listen",
            &metrics_addr,
            "--segment-bytes",
            "20000",
        ],
    );
    let _gateway = common::http::KillOnDrop(gateway);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while common::http::try_get_text(&metrics_addr, "/health/live").is_err() {
        assert!(std::time::Instant::now() < deadline, "no metrics endpoint");
        std::thread::sleep(Duration::from_millis(100));
    }
    let simulate = Command::new(env!("CARGO_BIN_EXE_eod"))
        .args(["simulate", "--to", &format!("127.0.0.1:{port}")])
        .args([
            "--messages",
            "3000",
            "--speed",
            "0",
            "--broken-ratio",
            "0.02",
        ])
        .output()
        .unwrap();
    assert_success(&simulate);
    let said = String::from_utf8_lossy(&simulate.stdout);
    let sent = |name: &str| -> f64 {
        said.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
            .unwrap()
    };
    let (messages, bytes) = (sent("fix messages"), sent("fix bytes"));
    let metric = common::http::metric;
    let trades_sent = format!(
        "eod_kafka_records_sent_total{{topic=\"{}\"}}",
        topics.trades
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let text = loop {
        let (status, text) = common::http::get_text(&metrics_addr, "/metrics");
        assert_eq!(status, 200);
        let done = text.contains(&trades_sent)
            && metric(&text, "eod_archive_bytes_total") == bytes
            && text.contains("eod_archive_segments_uploaded_total")
            && metric(&text, "eod_archive_segments_uploaded_total") > 2.0;
        if done {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gateway metrics never caught up with {messages} messages / {bytes} bytes:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let fills = metric(&text, "eod_messages_total{outcome=\"fill\"}");
    let dead = metric(&text, "eod_messages_total{outcome=\"dead_letter\"}");
    assert!(fills > 0.0 && dead > 0.0, "{text}");
    assert_eq!(metric(&text, "eod_input_bytes_total"), bytes);
    assert!(metric(&text, &trades_sent) >= fills);
    assert!(metric(&text, "eod_archive_spool_segments") >= 0.0);
    // Metrics and the liveness probe only: the gateway holds no views.
    assert_eq!(
        common::http::get_text(&metrics_addr, "/v1/positions").0,
        404
    );
}

/// `eod run` reports the lag of every partition it reads, zero once caught up; and once quiet
/// after that, it returns its free memory to the system (`runtime/src/memory.rs`).
#[test]
fn run_reports_consumer_lag_of_every_partition_it_reads() {
    let Some(brokers) = brokers() else { return };
    let fx = fixture();
    let topics = unique_topics("lag");
    create(&brokers, &topics);
    let eod = env!("CARGO_BIN_EXE_eod");
    let mut ingest = Command::new(eod);
    ingest.args(["ingest", "--archive"]).arg(&fx.archive);
    topic_args(&mut ingest, &brokers, &topics);
    assert_success(&ingest.output().unwrap());
    let (produced, partitions) = (decode_archive(&fx.archive).len(), 12);

    let mut run = Command::new(eod);
    run.args(["run", "--serve", "127.0.0.1:0"]);
    // Quiet once caught up: it then returns its free memory (a small fixture grows it little).
    run.args([
        "--trim-memory-after-ms",
        "300",
        "--trim-memory-min-growth-mb",
        "0",
    ]);
    topic_args(&mut run, &brokers, &topics);
    run.args(["--", "-w", "2"]);
    let run = common::http::Serving::spawn(run, "serving");
    // Caught up, every trade partition reports a lag of zero; before that, what is left.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // The gauge of one partition, whatever order its labels are printed in.
    let lag = |text: &str, partition: i32| -> Option<f64> {
        text.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let ours = series.starts_with("eod_kafka_consumer_lag{")
                && series.contains(&format!("partition=\"{partition}\""))
                && series.contains(&format!("topic=\"{}\"", topics.trades));
            ours.then(|| value.parse().ok()).flatten()
        })
    };
    loop {
        let (_, text) = common::http::get_text(&run.addr, "/metrics");
        if common::http::metric(&text, "eod_messages_read_total") >= produced as f64
            && (0..partitions).all(|p| lag(&text, p) == Some(0.0))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "consumer lag never reported as caught up for {produced} trades:\n{}",
            text.lines()
                .filter(|l| l.contains("consumer_lag") || l.contains("messages_read"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = common::http::get_text(&run.addr, "/metrics");
        let trims = common::http::metric(&text, "eod_memory_trims_total");
        if trims >= 1.0 {
            assert_eq!(
                common::http::metric(&text, "eod_memory_trim_seconds_count"),
                trims
            );
            assert!(common::http::metric(&text, "eod_resident_memory_bytes") > 1e6);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a caught-up, quiet run never returned its free memory"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The gateway (`eod ingest`) classifies every public FIX sample and one message of every
/// dead-letter class exactly as the codec's classifier does: the same counts, every trade on
/// the trades topic and every dead letter on the DLQ with the same reason.
#[test]
fn gateway_classifies_every_outcome_like_the_codec() {
    let Some(brokers) = brokers() else { return };
    let stream = common::outcomes::every_outcome_stream();
    let (expected, mut reasons) = common::outcomes::classify_directly(&stream);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::write(archive.join("outcomes.fix"), &stream).unwrap();
    let topics = unique_topics("outcomes");
    create(&brokers, &topics);
    let mut ingest = Command::new(env!("CARGO_BIN_EXE_eod"));
    ingest.args(["ingest", "--archive"]).arg(&archive);
    topic_args(&mut ingest, &brokers, &topics);
    let out = ingest.output().unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed = |label: &str| common::printed(&stdout, label);
    assert_eq!(
        printed("bytes"),
        stream.len() as u64,
        "every byte read is counted"
    );
    assert_eq!(printed("messages"), expected.read);
    assert_eq!(printed("trades"), expected.trades());
    assert_eq!(printed("skipped"), expected.skipped);
    assert_eq!(printed("dead letters"), expected.dead_lettered());
    assert!(stdout.contains("(all)"), "{stdout}");
    assert_eq!(
        read_topic(&brokers, &topics.trades).len() as u64,
        expected.trades()
    );
    // The DLQ has several partitions: compare the reasons as a multiset.
    let mut dead: Vec<&str> = read_messages::<DeadLetter>(&brokers, &topics.dead_letters)
        .iter()
        .map(|letter| letter.reason().label())
        .collect();
    dead.sort_unstable();
    reasons.sort_unstable();
    assert_eq!(dead, reasons);
}

/// A fault of the schedule in `seeded_fault_schedule_loses_nothing` (tests/faults.md keeps the
/// table of what each does and what was seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// kill -9 of `eod run` process 1; both run supervised and come back from their snapshot.
    KillRun,
    /// The Kafka broker stopped and started again (its log kept).
    BrokerRestart,
    RedisOutage,
    PostgresOutage,
    /// The archive store down: the gateway's spool fills to its cap and holds the sender back.
    S3Outage,
    /// kill -9 of the gateway, started again on the same spool and session state; the
    /// simulator's FIX session logs on again and resends what the gateway had not kept.
    KillGateway,
}

/// The faults in the order `seed` gives them (Fisher-Yates with xorshift64): one seed, one
/// schedule, and EOD_FAULT_SEED replays any other.
fn fault_schedule(seed: u64) -> Vec<Fault> {
    let mut faults = vec![
        Fault::KillRun,
        Fault::BrokerRestart,
        Fault::RedisOutage,
        Fault::PostgresOutage,
        Fault::S3Outage,
        Fault::KillGateway,
    ];
    let mut state = seed.max(1);
    for i in (1..faults.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        faults.swap(i, (state % (i as u64 + 1)) as usize);
    }
    faults
}

/// The ExecIDs of the valid messages in the archive.
fn archived_exec_ids(segments: &Path) -> std::collections::BTreeSet<String> {
    let mut ids = std::collections::BTreeSet::new();
    let mut names = files_below(segments);
    names.sort();
    for path in names {
        let mut framer = Framer::default();
        framer.push(&std::fs::read(&path).unwrap());
        framer.finish();
        while let Some(frame) = framer.next_frame() {
            if let Framed::Message { bytes, .. } = frame {
                if let Some(id) = eod_fix::session::field(bytes, 17) {
                    ids.insert(String::from_utf8_lossy(id).into_owned());
                }
            }
        }
    }
    ids
}

/// Copies every object below `prefix` of the S3 server to `to`, keys kept.
fn download_archive(s3: &common::server::OwnServer, prefix: &str, to: &Path) {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let store = s3_store(s3, prefix);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
        for meta in listed {
            let bytes = store
                .get(&meta.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let path = to.join(meta.location.as_ref());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    });
}

/// The pids `eod run --supervise` started, from its log.
fn supervised_pids(dir: &Path, process: usize) -> Vec<u32> {
    run_log(dir, process)
        .lines()
        .filter_map(|l| l.strip_prefix("supervisor: started eod run (pid "))
        .filter_map(|rest| rest.split(',').next()?.parse().ok())
        .collect()
}

/// Issue 12, point 4: during a simulated burst through the real gateway, broker and stores,
/// a seeded schedule kills an `eod run` process and restarts or stops every service it needs;
/// afterwards a checker proves that nothing was lost or doubled: S3 holds every byte sent,
/// both processes serve exactly the views the archive gives, PostgreSQL holds every ExecID
/// once, Redis equals the views, and the DLQ holds every bad message once.
#[test]
fn seeded_fault_schedule_loses_nothing() {
    // With the full test command's services only (this test starts its own of each kind, so
    // that its outages disturb no other test).
    if brokers().is_none()
        || common::postgres_url().is_none()
        || common::env_or_skip("EOD_REDIS_URL", "scripts/redis.sh start").is_none()
        || common::env_or_skip("EOD_S3_URL", "scripts/s3.sh start").is_none()
    {
        return;
    }
    let seed = std::env::var("EOD_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_204);
    let schedule = fault_schedule(seed);
    eprintln!("fault schedule, seed {seed}: {schedule:?}");
    // The shared broker's jars serve this one too (no second download).
    let kafka_env: Vec<(String, String)> = std::env::var("EOD_KAFKA_DIR")
        .map(|dir| vec![("EOD_KAFKA_LIB".to_owned(), format!("{dir}/lib"))])
        .unwrap_or_default();
    let kafka = common::server::OwnServer::start_with("kafka", 19_392, kafka_env);
    let postgres = common::server::OwnServer::start("postgres", 15_592);
    let redis = common::server::OwnServer::start("redis", 16_592);
    let s3 = common::server::OwnServer::start("s3", 18_633);
    let brokers = format!("127.0.0.1:{}", kafka.port);

    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics("faults");
    create(&brokers, &topics);
    let books = Books::on(
        &format!("postgres://postgres@127.0.0.1:{}/eod", postgres.port),
        Some(format!("redis://127.0.0.1:{}", redis.port)),
        dir.path(),
        "eod_faults",
        0,
        5,
        12,
    );
    let port = common::http::free_port();
    let sessions = dir.path().join("sessions").display().to_string();
    // A FIX-session gateway: a restarted one asks the simulator for what it had not kept.
    let start_gateway = || {
        spawn_gateway_to(
            dir.path(),
            port,
            &brokers,
            &topics,
            "s3://eod-archive/faults",
            &[
                "--connections",
                "1",
                "--segment-bytes",
                "200000",
                "--spool-max-bytes",
                "150000",
                "--fix-session",
                "--session-dir",
                &sessions,
                "--counterparty",
                "EXCH",
            ],
            &s3_env(&s3),
        )
    };
    let mut gateway = start_gateway();
    let mut gateway_logs = String::new();
    // About 20 s before the burst and 20 s in it (3x), broken messages included, in a FIX
    // session that logs on again when the gateway goes away.
    let mut simulate = spawn_simulator(
        port,
        &brokers,
        &topics,
        &["--messages", "80000", "--rate", "500", "--speed", "2"],
        &[
            "--fix-session",
            "EXCH",
            "--burst-multiplier",
            "3",
            "--broken-ratio",
            "0.005",
            "--traders",
            "5",
            "--symbols",
            "12",
            "--seed",
            "31",
        ],
    );
    let addrs = [common::http::free_port(), common::http::free_port()]
        .map(|port| format!("127.0.0.1:{port}"));
    let snapshots = dir.path().join("snapshots").display().to_string();
    let supervisors: Vec<_> =
        spawn_two_runs_with(&brokers, &topics, dir.path(), false, Some(&books), |p| {
            [
                "--serve",
                &addrs[p],
                "--supervise",
                "--snapshots",
                &snapshots,
            ]
            .into_iter()
            .chain(["--snapshot-interval-s", "1"])
            .map(String::from)
            .collect()
        })
        .into_iter()
        .map(common::http::KillOnDrop)
        .collect();

    // The schedule starts once the cluster has formed: a process killed before its peer has
    // connected is only waited for by that peer (timely connects at start), so only its own
    // supervisor has anything to restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    for addr in &addrs {
        while !common::http::try_get_text(addr, "/health/ready").is_ok_and(|(code, _)| code == 200)
        {
            assert!(Instant::now() < deadline, "{addr} never ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The schedule, one fault at a time, while the traffic flows.
    let started = Instant::now();
    let mut seen = Vec::new();
    for fault in &schedule {
        std::thread::sleep(Duration::from_secs(1));
        let at = started.elapsed();
        let sending = simulate.try_wait().unwrap().is_none();
        let outcome = match fault {
            Fault::KillRun => {
                let before = [0, 1].map(|p| supervised_pids(dir.path(), p).len());
                let victim = *supervised_pids(dir.path(), 1).last().expect("run started");
                assert!(Command::new("kill")
                    .args(["-9", &victim.to_string()])
                    .status()
                    .unwrap()
                    .success());
                let deadline = Instant::now() + Duration::from_secs(30);
                while [0, 1]
                    .iter()
                    .any(|&p| supervised_pids(dir.path(), p).len() <= before[p])
                {
                    assert!(Instant::now() < deadline, "the cluster did not restart");
                    std::thread::sleep(Duration::from_millis(100));
                }
                "both processes started again".to_owned()
            }
            Fault::BrokerRestart => {
                kafka.script("stop");
                kafka.script("start");
                "broker back".to_owned()
            }
            Fault::RedisOutage => {
                redis.script("stop");
                std::thread::sleep(Duration::from_secs(3));
                redis.script("start");
                "down 3 s".to_owned()
            }
            Fault::PostgresOutage => {
                postgres.script("stop");
                std::thread::sleep(Duration::from_secs(3));
                postgres.script("start");
                "down 3 s".to_owned()
            }
            Fault::S3Outage => {
                s3.script("stop");
                std::thread::sleep(Duration::from_secs(3));
                s3.script("start");
                "down 3 s".to_owned()
            }
            Fault::KillGateway => {
                gateway.kill().unwrap();
                let killed = gateway.wait_with_output().unwrap();
                gateway_logs.push_str(&String::from_utf8_lossy(&killed.stderr));
                gateway = start_gateway();
                "started again on its spool".to_owned()
            }
        };
        seen.push((*fault, at, started.elapsed() - at, sending, outcome));
    }
    let simulated = wait_or_kill(&mut simulate, Duration::from_secs(180));
    let simulate_out = simulate.wait_with_output().unwrap();
    assert!(
        simulated.is_some_and(|s| s.success()),
        "simulator: {}",
        String::from_utf8_lossy(&simulate_out.stderr)
    );
    let gateway_status = wait_or_kill(&mut gateway, Duration::from_secs(120));
    let gateway_out = gateway.wait_with_output().unwrap();
    gateway_logs.push_str(&String::from_utf8_lossy(&gateway_out.stderr));
    assert!(
        gateway_status.is_some_and(|s| s.success()),
        "gateway: {gateway_logs}"
    );
    eprintln!("fault             at      took   traffic flowing  outcome");
    for (fault, at, took, sending, outcome) in &seen {
        eprintln!(
            "{:<16} {:>6.1} s {:>6.1} s  {:<15}  {outcome}",
            format!("{fault:?}"),
            at.as_secs_f64(),
            took.as_secs_f64(),
            sending
        );
    }
    assert!(
        seen.iter().filter(|(_, _, _, sending, _)| *sending).count() >= 4,
        "the faults strike while the traffic flows"
    );
    if seen
        .iter()
        .any(|(f, _, _, sending, _)| *f == Fault::S3Outage && *sending)
    {
        assert!(
            gateway_logs.contains("archive spool full"),
            "the spool reached its cap and held the sender back"
        );
    }

    // 1. S3 holds every message sent, intact: the simulator's stream, generated again here
    // from its seed, names an ExecID in every execution report; each is in a valid message
    // of the archive (a garbled one as sent again by the session).
    let field = |name: &str| -> u64 {
        String::from_utf8_lossy(&simulate_out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
            .unwrap()
    };
    eprintln!(
        "simulator:\n{}",
        String::from_utf8_lossy(&simulate_out.stdout)
    );
    let archive = dir.path().join("archive-copy");
    download_archive(&s3, "faults", &archive);
    let segments = archive.join("gw1").join("20261125");
    let mut market = eod_sources::simulator::SimConfig::market_close(31);
    (market.traders, market.symbols) = (5, 12);
    (market.base_rate, market.burst_multiplier) = (500.0, 3.0);
    (market.broken_ratio, market.fix42_ratio) = (0.005, 0.0);
    let mut sent_fix = 0;
    let mut sent_ids = std::collections::BTreeSet::new();
    for message in eod_sources::simulator::Simulator::new(market).take(80_000) {
        if let eod_sources::simulator::SimEvent::Fix(bytes) = message.event {
            sent_fix += 1;
            if let Some(id) = eod_fix::session::field(&bytes, 17) {
                sent_ids.insert(String::from_utf8(id.to_vec()).unwrap());
            }
        }
    }
    assert_eq!(
        sent_fix,
        field("fix messages"),
        "the stream generated again"
    );
    let archived = archived_exec_ids(&segments);
    let missing: Vec<&String> = sent_ids.difference(&archived).collect();
    assert!(
        missing.is_empty(),
        "{} of {} executions sent are not in the archive: {:?}",
        missing.len(),
        sent_ids.len(),
        &missing[..missing.len().min(20)]
    );
    if seen.iter().any(|(f, ..)| *f == Fault::KillGateway) {
        assert!(field("reconnects") >= 1, "the simulator logged on again");
    }

    // 2. Both processes serve exactly the views of the archive, every trade once (a resend
    // may repeat a trade in the archive and on the topic; it counts once), having read every
    // trade the gateway published.
    let events = decode_archive(&segments);
    let published = read_topic(&brokers, &topics.trades).len() as u64;
    let expected = baseline::compute(&events, &prices_on_topic(&brokers, &topics.prices));
    let expected_json =
        serde_json::to_value(expected.positions.values().collect::<Vec<_>>()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    for addr in &addrs {
        loop {
            let served = common::http::try_get_text(addr, "/v1/positions")
                .ok()
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok());
            if served.as_ref().is_some_and(|body| {
                body["positions"] == expected_json
                    && body["as_of"]["messages"].as_u64() == Some(published)
            }) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr}: views not exact\n{}\n{}",
                run_log(dir.path(), 0),
                run_log(dir.path(), 1)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    // 3. The books hold every ExecID once (once the writer has caught up), Redis the views.
    let executions: std::collections::BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e.execution_id().map(|id| id.as_str()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = common::postgres_rows(&books.url).len();
        if rows >= executions.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "books incomplete: {rows} of {} executions\n{}\n{}",
            executions.len(),
            run_log(dir.path(), 0),
            run_log(dir.path(), 1)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    books.assert_match(&events, &expected, &archive);
    books.assert_redis_equals(&expected_json);

    // 4. The DLQ holds every bad message once: as many of each reason as a replay of the
    // archive finds, each from its own place in the archive.
    let letters: Vec<DeadLetter> = read_messages(&brokers, &topics.dead_letters);
    // Where a letter came from: the archive segment's file name and the byte offset.
    let mut dlq: std::collections::BTreeMap<(String, u64), String> = Default::default();
    for letter in &letters {
        let (key, offset) = letter.source_location.rsplit_once('@').unwrap();
        let name = key.rsplit('/').next().unwrap().to_owned();
        let reason = letter.reason().label().to_owned();
        let place = (name, offset.parse().unwrap());
        assert!(
            dlq.insert(place.clone(), reason).is_none(),
            "a bad message dead-lettered twice: {place:?}"
        );
    }
    let output = dir.path().join("replay.json");
    let replay = Command::new(env!("CARGO_BIN_EXE_eod"))
        .args(["replay", "--quiet", "--no-books", "--archive"])
        .arg(&segments)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert_success(&replay);
    // The replay reads the archive without a session: a bad message the session dropped as a
    // duplicate of one it already had (PossDupFlag) is the only one it may find that the
    // gateway did not dead-letter.
    let jsonl = std::fs::read_to_string(dir.path().join("replay.dead-letters.jsonl")).unwrap();
    let mut replayed = std::collections::BTreeSet::new();
    for line in jsonl.lines() {
        let letter: serde_json::Value = serde_json::from_str(line).unwrap();
        let source = letter["source"].as_str().unwrap();
        let name = source.rsplit('/').next().unwrap().to_owned();
        let place = (name, letter["offset"].as_u64().unwrap());
        let reason = letter["reason"].as_str().unwrap();
        match dlq.get(&place) {
            Some(dead_lettered) => assert_eq!(dead_lettered, reason, "reason at {place:?}"),
            None => assert!(
                letter["original"].as_str().unwrap().contains("|43=Y|"),
                "a bad message the gateway did not dead-letter: {letter}"
            ),
        }
        replayed.insert(place);
    }
    assert!(!dlq.is_empty(), "the simulator sent broken messages");
    for place in dlq.keys() {
        assert!(
            replayed.contains(place),
            "dead-lettered, but not bad in the archive: {place:?}"
        );
    }

    for supervisor in &supervisors {
        let pid = supervisor.0.id().to_string();
        assert!(Command::new("kill").arg(&pid).status().unwrap().success());
    }
    for mut supervisor in supervisors {
        let _ = wait_or_kill(&mut supervisor.0, Duration::from_secs(30));
    }
}

/// `eod check` against a gateway, one `eod run` with books in PostgreSQL and views in Redis,
/// and a local archive: every scenario passes, the check's position is flat afterwards, and a
/// dependency or an eod process that is down fails `health`, named. The thresholds are the
/// issue's except latency's, which a debug build on a busy test machine is not held to.
#[test]
fn eod_check_passes_and_names_what_is_down() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(books) = Books::new(dir.path(), "eod_check", 3, 5, 12) else {
        return;
    };
    let topics = unique_topics("check");
    create(&brokers, &topics);
    let port = common::http::free_port();
    let archive = dir.path().join("archive");
    let sessions = dir.path().join("sessions");
    let gateway = common::http::KillOnDrop(spawn_gateway_to(
        dir.path(),
        port,
        &brokers,
        &topics,
        archive.to_str().unwrap(),
        &[
            "--fix-session",
            "--session-dir",
            sessions.to_str().unwrap(),
            "--counterparty",
            "EODCHECK",
            "--segment-seconds",
            "1",
        ],
        &[],
    ));
    let addr = format!("127.0.0.1:{}", common::http::free_port());
    let redis = books
        .redis
        .clone()
        .expect("the full test command starts Redis");
    let mut run = Command::new(env!("CARGO_BIN_EXE_eod"));
    run.args(["run", "--epoch-ms", "5", "--serve", &addr])
        .args([
            "--books",
            &books.url,
            "--books-batch-ms",
            "200",
            "--redis",
            &redis,
        ]);
    topic_args(&mut run, &brokers, &topics);
    let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
    let mut run = common::http::KillOnDrop(
        run.args(["--", "-w", "2"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !common::http::try_get_text(&addr, "/health/ready").is_ok_and(|(code, _)| code == 200) {
        assert!(Instant::now() < deadline, "eod run never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = dir.path().join("report");
    let check = |scenarios: &[&str], redis: &str| {
        let mut check = Command::new(env!("CARGO_BIN_EXE_eod"));
        check
            .arg("check")
            .args(scenarios)
            .args(["--gateway", &format!("127.0.0.1:{port}"), "--views", &addr])
            .args(["--books", &books.url, "--redis", redis])
            .arg("--archive-to")
            .arg(&archive)
            .args(["--target-rate", "2000", "--drive-seconds", "2"])
            .args(["--burst-multiplier", "3", "--settle-s", "30"])
            .args(["--latency-p95-ms", "10000"])
            .arg("--report")
            .arg(&report);
        topic_args(&mut check, &brokers, &topics);
        check.output().unwrap()
    };

    let passed = check(&[], &redis);
    let stdout = String::from_utf8_lossy(&passed.stdout);
    eprintln!("{stdout}");
    assert!(
        passed.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    for scenario in [
        "health",
        "throughput",
        "latency",
        "burst",
        "integrity",
        "dead-letters",
    ] {
        assert!(
            stdout.contains(&format!("PASS  {scenario:<13}")),
            "{scenario}: {stdout}"
        );
    }
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("check.json")).unwrap()).unwrap();
    assert_eq!(result["passed"], true);
    assert_eq!(result["verdicts"].as_array().unwrap().len(), 6);
    assert!(!result["latency"].as_array().unwrap().is_empty());
    for drive in ["throughput", "latency", "burst"] {
        let seconds = result["throughput"][drive].as_array().unwrap();
        let sent: u64 = seconds.iter().map(|s| s["sent"].as_u64().unwrap()).sum();
        assert!(sent > 0, "{drive}: {seconds:?}");
    }
    // The report in a real browser: every verdict, and three charts with data in them.
    if let Ok(python) = std::env::var("EOD_BROWSER_PYTHON") {
        // `scripts/report_check.py URL SCREENSHOT ARGS...` must pass and leave a PNG.
        let in_browser = |url: String, screenshot: &str, args: &[&str]| {
            let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(screenshot);
            let _ = std::fs::remove_file(&screenshot);
            let browser = Command::new(&python)
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/scripts/report_check.py"
                ))
                .arg(url)
                .arg(&screenshot)
                .args(args)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&browser.stdout).into_owned();
            assert!(
                browser.status.success(),
                "{said}\n{}",
                String::from_utf8_lossy(&browser.stderr)
            );
            assert_eq!(&std::fs::read(&screenshot).unwrap()[..4], b"\x89PNG");
            said
        };
        let page = format!("file://{}", report.join("check.html").display());
        let seen = in_browser(page, "check.png", &["--charts", "3", "--rows", "6"]);
        eprintln!("report: {seen}");
        // The dashboard of the checked process: firm and trader P&L over the day, the
        // fill-to-view p99, and the verdicts the check reported to it.
        let run_id = format!("run {}", result["run_id"].as_str().unwrap());
        let seen = in_browser(
            format!("http://{addr}/"),
            "dashboard-check.png",
            &[
                "--charts",
                "3",
                "--contains",
                &run_id,
                "--contains",
                "dead-letters",
            ],
        );
        eprintln!("dashboard: {seen}");
    }
    // Everything it traded is busted: its position is flat, and no real position moved.
    let (_, body) = common::http::try_get_text(&addr, "/v1/positions?trader=EODCHECK").unwrap();
    let positions: serde_json::Value = serde_json::from_str(&body).unwrap();
    for row in positions["positions"].as_array().unwrap() {
        assert_eq!(row["trades"], 0, "{row}");
    }
    let (_, body) = common::http::try_get_text(&addr, "/v1/positions").unwrap();
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(all["positions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|row| row["trader"] == "EODCHECK" && row["symbol"] == "EODCHECK"));

    // A dependency down: Redis where nothing listens.
    let nobody = format!("redis://127.0.0.1:{}", common::http::free_port());
    let failed = check(&["health"], &nobody);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL  health") && stdout.contains("redis:"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&failed.stderr).contains("check failed: health"));

    // An eod process down.
    run.0.kill().unwrap();
    run.0.wait().unwrap();
    let failed = check(&["health"], &redis);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("eod {addr}:")), "{stdout}");
    drop(gateway);
}

/// A fill as the gateway would publish it, at a whole-unit price.
fn fill_envelope(
    exec_id: &str,
    trader: &str,
    symbol: &str,
    side: Side,
    quantity: i64,
    price: i64,
    transact_time: i64,
) -> TradeEnvelope {
    TradeEnvelope {
        exec_id: exec_id.into(),
        kind: TradeKind::Fill as i32,
        side: side as i32,
        quantity,
        price_mantissa: price * 100_000_000,
        symbol: symbol.into(),
        trader_id: trader.into(),
        transact_time,
        ..Default::default()
    }
}

fn schema_registry() -> Option<String> {
    common::env_or_skip(
        "EOD_TEST_SCHEMA_REGISTRY_URL",
        "scripts/test-all.sh starts Apicurio Registry",
    )
}

/// `http://HOST:PORT/prefix` as (`HOST:PORT`, `/prefix`), for the test's own HTTP requests.
fn split_url(url: &str) -> (String, String) {
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    (
        addr.to_owned(),
        format!("/{path}").trim_end_matches('/').to_owned(),
    )
}

/// The id the registry gives the latest version of `subject`, asked over HTTP by the test
/// itself rather than through eod's client.
fn latest_schema_id(registry: &str, subject: &str) -> u32 {
    let (addr, prefix) = split_url(registry);
    let (status, body) = common::http::get_text(
        &addr,
        &format!("{prefix}/subjects/{subject}/versions/latest"),
    );
    assert_eq!(status, 200, "{subject}: {body}");
    let latest: serde_json::Value = serde_json::from_str(&body).unwrap();
    latest["id"].as_u64().unwrap() as u32
}

/// Issue 13, point 2: with `--schema-registry`, the gateway registers the schema and frames
/// every trade, dead letter and price in the Confluent wire format with the registry's ids;
/// `eod run` reads them (and plain records written before), refuses a record whose schema id
/// the registry does not hold, and a gateway whose schema is incompatible with a subject's
/// latest version refuses to start and writes nothing.
#[test]
fn schema_registry_frames_every_record_and_refuses_an_incompatible_schema() {
    let Some(brokers) = brokers() else { return };
    let Some(registry) = schema_registry() else {
        return;
    };
    let fx = fixture();
    let topics = unique_topics("registry");
    create(&brokers, &topics);
    let mut ingest = Command::new(env!("CARGO_BIN_EXE_eod"));
    ingest
        .args(["ingest", "--archive"])
        .arg(&fx.archive)
        .arg("--prices")
        .arg(&fx.prices_csv)
        .args(["--schema-registry", &registry]);
    topic_args(&mut ingest, &brokers, &topics);
    assert_success(&ingest.output().unwrap());

    // Every record of the three topics: magic byte, the subject's id, the message's index.
    let framed = [
        (&topics.trades, &[0u8][..]),
        (&topics.prices, &[2, 4][..]),
        (&topics.dead_letters, &[2, 8][..]),
    ];
    let mut read = Vec::new();
    for (topic, index) in framed {
        let id = latest_schema_id(&registry, &format!("{topic}-value"));
        let records = read_topic(&brokers, topic);
        assert!(!records.is_empty(), "{topic} is empty");
        for record in &records {
            assert_eq!(record[0], 0, "{topic}: not framed");
            assert_eq!(u32::from_be_bytes(record[1..5].try_into().unwrap()), id);
            assert_eq!(&record[5..5 + index.len()], index, "{topic}: message index");
        }
        read.push(records);
    }
    let letters_from_gateway = read[2].len();

    // Beside them, straight to the topic: a plain envelope (written before the registry was
    // turned on), and a framed one whose schema id the registry never issued.
    let before = fill_envelope("PLAIN-1", "PLAINTRADER", "PLAINSYM", Side::Buy, 7, 100, 1);
    let stranger = TradeEnvelope {
        exec_id: "STRANGER-1".into(),
        ..before.clone()
    };
    let unknown_id = 987_654_321;
    let producer = RecordProducer::new(&plain(&brokers)).unwrap();
    producer
        .send(&topics.trades, b"p", &before.encode_to_vec())
        .unwrap();
    let stranger_bytes =
        eod_sources::schema_registry::frame(unknown_id, 0, &stranger.encode_to_vec());
    producer
        .send(&topics.trades, b"s", &stranger_bytes)
        .unwrap();
    // And a price framed as the registry's PriceUpdate, on the trades topic.
    let prices_id = latest_schema_id(&registry, &format!("{}-value", topics.prices));
    let misplaced = eod_sources::schema_registry::frame(prices_id, 2, &read[1][0][7..]);
    producer.send(&topics.trades, b"m", &misplaced).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    // Two `eod run` processes, each registering at startup as a deployment's would.
    let dir = tempfile::tempdir().unwrap();
    let flags = |_| {
        ["--serve", "127.0.0.1:0", "--schema-registry", &registry]
            .map(String::from)
            .to_vec()
    };
    for (process, child) in spawn_two_runs_with(&brokers, &topics, dir.path(), true, None, flags)
        .into_iter()
        .enumerate()
    {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", run_log(dir.path(), process));
    }
    let prices = parse_prices_csv(&std::fs::read_to_string(&fx.prices_csv).unwrap()).unwrap();
    let mut events = decode_archive(&fx.archive);
    events.push(
        eod_sources::envelope::event_from_bytes(&before.encode_to_vec())
            .unwrap()
            .event,
    );
    let expected = baseline::compute(&events, &prices);
    let expected = serde_json::to_value(expected.positions.values().collect::<Vec<_>>()).unwrap();
    for process in 0..2 {
        let body = run_output(dir.path(), process);
        assert!(
            body["positions"] == expected,
            "process {process} does not hold the complete view"
        );
    }

    // The run's dead letters: the stranger and the price, framed like every other letter.
    let letters = read_topic(&brokers, &topics.dead_letters);
    assert_eq!(letters.len(), letters_from_gateway + 2);
    let dlq_id = latest_schema_id(&registry, &format!("{}-value", topics.dead_letters));
    let from_run: Vec<DeadLetter> = letters
        .iter()
        .map(|bytes| {
            assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), dlq_id);
            DeadLetter::decode(&bytes[7..]).unwrap()
        })
        .filter(|l| l.source_location.starts_with(&topics.trades))
        .collect();
    assert_eq!(from_run.len(), 2);
    assert!(from_run
        .iter()
        .all(|l| l.reason() == DeadLetterReason::Deserialization));
    let letter_of = |original: &[u8]| {
        from_run
            .iter()
            .find(|l| l.original == original)
            .unwrap_or_else(|| panic!("no dead letter for {original:?}: {from_run:?}"))
    };
    let unknown = letter_of(&stranger_bytes);
    assert!(
        unknown.detail.contains(&unknown_id.to_string()),
        "{}",
        unknown.detail
    );
    let price = letter_of(&misplaced);
    assert!(
        price.detail.contains("PriceUpdate, not TradeEnvelope"),
        "{}",
        price.detail
    );

    // An incompatible change: the subject's latest version has receive_time as a string.
    let refused = unique_topics("registry-refused");
    create(&brokers, &refused);
    let older = eod_proto::SCHEMA.replace("int64 receive_time = 2;", "string receive_time = 2;");
    assert_ne!(older, eod_proto::SCHEMA);
    let (addr, prefix) = split_url(&registry);
    let subject = format!("{}-value", refused.trades);
    let body = serde_json::json!({ "schemaType": "PROTOBUF", "schema": older }).to_string();
    let (status, said) = common::http::try_send_json(
        "POST",
        &addr,
        &format!("{prefix}/subjects/{subject}/versions"),
        &body,
    )
    .unwrap();
    assert_eq!(status, 200, "{said}");
    let mut ingest = Command::new(env!("CARGO_BIN_EXE_eod"));
    ingest
        .args(["ingest", "--archive"])
        .arg(&fx.archive)
        .args(["--schema-registry", &registry]);
    topic_args(&mut ingest, &brokers, &refused);
    let out = ingest.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on an incompatible schema");
    assert!(
        stderr.contains("incompatible") && stderr.contains(&subject),
        "{stderr}"
    );
    assert!(read_topic(&brokers, &refused.trades).is_empty());
    assert!(read_topic(&brokers, &refused.dead_letters).is_empty());
}

/// Issue 12: a snapshot part covers only dead letters the broker has. While the dead-letter
/// topic cannot take them (here it does not exist yet), no snapshot is stored and the views
/// still move; once the letters are in, a snapshot is, and a `kill -9` then a restart from it
/// gives exact views without sending any letter twice.
#[test]
fn a_snapshot_waits_for_its_dead_letters() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics("dlqcut");
    ensure(&brokers, &[(&topics.trades, 4), (&topics.prices, 1)]);
    // Two records the run refuses, then fills.
    let producer = RecordProducer::new(&plain(&brokers)).unwrap();
    let refused: [&[u8]; 2] = [b"\xff\xfe not protobuf", b"\xff\xfd nor this"];
    for (n, bad) in refused.iter().enumerate() {
        producer
            .send(&topics.trades, format!("bad{n}").as_bytes(), bad)
            .unwrap();
    }
    let mut events = Vec::new();
    let mut send_fills = |range: std::ops::Range<i64>| {
        for n in range {
            let side = if n % 3 == 0 { Side::Sell } else { Side::Buy };
            let envelope = fill_envelope(
                &format!("DLQCUT-{n}"),
                &format!("T{}", n % 3),
                &format!("S{}", n % 5),
                side,
                10 + n,
                100 + n % 7,
                1 + n,
            );
            let bytes = envelope.encode_to_vec();
            events.push(
                eod_sources::envelope::event_from_bytes(&bytes)
                    .unwrap()
                    .event,
            );
            producer
                .send(&topics.trades, envelope.symbol.as_bytes(), &bytes)
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    send_fills(0..200);

    let snapshots = dir.path().join("snapshots");
    let run = |until_caught_up: bool| {
        let mut run = Command::new(env!("CARGO_BIN_EXE_eod"));
        run.args([
            "run",
            "--epoch-ms",
            "5",
            "--serve",
            "127.0.0.1:0",
            "--output",
        ])
        .arg(dir.path().join("p0.json"))
        .arg("--snapshots")
        .arg(&snapshots)
        .args(["--snapshot-interval-s", "1"]);
        if until_caught_up {
            run.arg("--until-caught-up");
        }
        topic_args(&mut run, &brokers, &topics);
        run.args(["--", "-w", "2"]);
        run
    };
    let parts = snapshots.join("eod-run").join("parts");
    let mut live = common::http::Serving::spawn(run(false), "serving");
    let messages_in_view = |addr: &str| {
        let (_, body) = common::http::get(addr, "/v1/positions");
        body["as_of"]["messages"].as_u64().unwrap_or(0)
    };
    // Cuts come and go with the letters in the producer's queue: none may be stored, and the
    // views keep up with new fills meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    send_fills(200..300);
    let sent = Instant::now();
    // Every record read is a message of the view's `as_of`, the refused ones too.
    while messages_in_view(&live.addr) < 300 + refused.len() as u64 {
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "the views stalled: {}",
            live.said()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        live.child.0.try_wait().unwrap().is_none(),
        "{}",
        live.said()
    );
    // A snapshot from before the refused records were read may be stored: it covers none.
    assert_eq!(
        dead_letters_in_newest_snapshot(&snapshots.join("eod-run")),
        0,
        "a snapshot covers dead letters the broker does not have: {:?}",
        files_below(&parts)
    );
    ensure(&brokers, &[(&topics.dead_letters, 1)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while dead_letters_in_newest_snapshot(&snapshots.join("eod-run")) < refused.len() as isize {
        assert!(
            Instant::now() < deadline,
            "no snapshot once the letters were in: {}",
            live.said()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let letters_before = read_topic(&brokers, &topics.dead_letters);
    assert_eq!(letters_before.len(), refused.len());
    drop(live); // kill -9

    let restarted = run(true).output().unwrap();
    let log = String::from_utf8_lossy(&restarted.stderr);
    assert!(restarted.status.success(), "{log}");
    let summary = String::from_utf8_lossy(&restarted.stdout);
    assert!(summary.contains("records restored"), "{summary}\n{log}");
    let expected = baseline::compute(&events, &[]);
    let expected = serde_json::to_value(expected.positions.values().collect::<Vec<_>>()).unwrap();
    assert!(run_output(dir.path(), 0)["positions"] == expected);
    let letters: Vec<DeadLetter> = read_messages(&brokers, &topics.dead_letters);
    assert_eq!(letters.len(), refused.len(), "a letter sent twice");
    for bad in refused {
        assert!(letters
            .iter()
            .any(|l| l.original == bad && l.reason() == DeadLetterReason::Deserialization));
    }
}

/// A full archive segment leaves the gateway's spool once the broker has acknowledged its
/// records, as `poll_deliveries` serves the reports. rdkafka's `poll` serves one event, one
/// partition's batch of reports, per call: polled once per round, a gateway at 1,000 msg/s fell
/// ever further behind its reports, its full segments never left the spool, and the spool's cap
/// held the sender back for good. One call must serve every report that has arrived.
#[test]
fn one_poll_serves_every_delivery_report_that_has_arrived() {
    let Some(brokers) = brokers() else { return };
    let topics = unique_topics("reports");
    create(&brokers, &topics);
    let producer = RecordProducer::new(&plain(&brokers)).unwrap();
    let deliveries = Arc::new(eod_sources::kafka::Deliveries::default());
    let records = 2_000;
    for n in 0..records {
        let key = format!("key-{n}");
        producer
            .send_awaited(&topics.trades, key.as_bytes(), b"x", Some(&deliveries))
            .unwrap();
    }
    // A consumer sees only what the broker acknowledged (acks=all, one broker); then the
    // reports have time to come back.
    let deadline = Instant::now() + Duration::from_secs(30);
    let acknowledged_and_reported = |records: usize| {
        while read_topic(&brokers, &topics.trades).len() < records {
            assert!(
                Instant::now() < deadline,
                "the broker never had every record"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    acknowledged_and_reported(records);
    producer.poll_deliveries();
    assert!(
        deliveries.all_acknowledged(),
        "reports left unserved after one poll_deliveries"
    );
    // The same for the question a live run asks before it cuts a snapshot part behind its
    // dead letters (a one-event poll deferred the cut while reports were queued).
    for n in 0..records {
        let key = format!("again-{n}");
        producer.send(&topics.trades, key.as_bytes(), b"x").unwrap();
    }
    acknowledged_and_reported(2 * records);
    assert!(producer.all_delivered().unwrap(), "reports left unserved");
}

/// Issue 12: a gateway killed after archiving a read but before the broker confirmed it lost
/// that read's trades and dead letters (a FIX session resends messages, not the garbage
/// between them; a plain stream resends nothing). The restarted gateway finds the segment the
/// killed one left in its spool, frames and classifies it as a replay would, and publishes
/// what the topics do not hold: each unit once, at the place the archive has it.
#[test]
fn a_restarted_gateway_publishes_what_its_spool_holds_and_the_broker_lacks() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topics = unique_topics("leftover");
    create(&brokers, &topics);
    // What a killed gateway left: an open segment with a fill, garbage, a fill without a symbol
    // and another fill. The broker has the first fill and the second bad unit's letter.
    let good = common::fixture::fill("LEFT-1", "AAA", "1", "10", "100", "20261125-15:59:00", "T1");
    let garbage = b"GARBAGE\x01NOT\x01FIX\x01".to_vec();
    let no_symbol = common::fixture::er(&[(50, "T1"), (17, "LEFT-2"), (150, "F"), (54, "1")]);
    let last = common::fixture::fill("LEFT-3", "AAA", "2", "5", "101", "20261125-15:59:01", "T1");
    let segment = [good.clone(), garbage.clone(), no_symbol.clone(), last].concat();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(spool.join("gw1-20261125-00000000.open"), &segment).unwrap();
    let key = "gw1/20261125/gw1-20261125-00000000.fix";
    let garbage_at = format!("{key}@{}", good.len());
    let no_symbol_at = format!("{key}@{}", good.len() + garbage.len());
    let producer = RecordProducer::new(&plain(&brokers)).unwrap();
    producer
        .send_dead_letter(
            &topics.dead_letters,
            no_symbol.clone(),
            DeadLetterReason::MissingField,
            "delivered before the kill".into(),
            &no_symbol_at,
            0,
        )
        .unwrap();
    let mut delivered = fill_envelope("LEFT-1", "T1", "AAA", Side::Buy, 10, 100, 1);
    delivered.source = Some(eod_proto::ArchiveRef {
        object_key: key.into(),
        offset: 0,
        length: good.len() as u32,
    });
    producer
        .send(&topics.trades, b"AAA", &delivered.encode_to_vec())
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    let port = common::http::free_port();
    let archive = dir.path().join("archive");
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_eod"));
    gateway
        .args(["ingest", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--trading-date", "20261125", "--spool"])
        .arg(&spool)
        .arg("--archive-to")
        .arg(&archive);
    topic_args(&mut gateway, &brokers, &topics);
    let gateway = common::http::Serving::spawn(gateway, "gateway listening on");
    assert!(
        gateway
            .said()
            .contains("recovered from the spool: 1 trades, 1 dead letters"),
        "{}",
        gateway.said()
    );
    let envelopes: Vec<TradeEnvelope> = read_messages(&brokers, &topics.trades);
    let exec_ids: Vec<&str> = envelopes.iter().map(|e| e.exec_id.as_str()).collect();
    assert_eq!(exec_ids.len(), 2, "{exec_ids:?}");
    let republished = envelopes
        .iter()
        .find(|e| e.exec_id == "LEFT-3")
        .unwrap_or_else(|| panic!("LEFT-3 not published: {exec_ids:?}"));
    let source = republished.source.as_ref().unwrap();
    assert_eq!(source.object_key, key);
    let last_at = good.len() + garbage.len() + no_symbol.len();
    assert_eq!(source.offset, last_at as u64);
    assert_eq!(republished.raw_fix, segment[last_at..]);
    let letters: Vec<DeadLetter> = read_messages(&brokers, &topics.dead_letters);
    let places: Vec<&str> = letters.iter().map(|l| l.source_location.as_str()).collect();
    assert_eq!(letters.len(), 2, "{places:?}");
    let recovered = letters
        .iter()
        .find(|l| l.source_location == garbage_at)
        .unwrap_or_else(|| panic!("no letter at {garbage_at}: {places:?}"));
    assert_eq!(recovered.reason(), DeadLetterReason::Garbled);
    assert_eq!(recovered.original, garbage);
    assert!(places.contains(&no_symbol_at.as_str()));
    // The segment goes on to the archive as it was.
    drop(gateway);
    let archived = files_below(&archive);
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert_eq!(std::fs::read(&archived[0]).unwrap(), segment);
}
