//! The speed path end to end: `eod replay --redis` mirrors the HTTP views into a real Redis,
//! keeps the views current while Redis is down, and resynchronises when it is back, so that
//! Redis equals the views again.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{get, get_text, metric, Serving};
use eod_runtime::generate::generate_archive;
use eod_sources::simulator::SimConfig;

fn redis_url(server: &common::server::OwnServer) -> String {
    format!("redis://127.0.0.1:{}", server.port)
}

/// Every hash the sink writes (and `pnl:firm` as a one-field hash), by key.
type Hashes = HashMap<String, HashMap<String, String>>;

/// `pnl:as_of` and the hashes, or `None` while Redis is unreachable or still empty.
fn redis_state(url: &str) -> Option<(String, Hashes)> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    let as_of: Option<String> = redis::cmd("GET").arg("pnl:as_of").query(&mut conn).ok()?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("positions:*")
        .query(&mut conn)
        .ok()?;
    let mut hashes = HashMap::new();
    for key in keys.into_iter().chain(["pnl:traders".to_owned()]) {
        let hash: HashMap<String, String> =
            redis::cmd("HGETALL").arg(&key).query(&mut conn).ok()?;
        hashes.insert(key, hash);
    }
    let firm: Option<String> = redis::cmd("GET").arg("pnl:firm").query(&mut conn).ok()?;
    hashes.insert(
        "pnl:firm".into(),
        HashMap::from([(String::new(), firm.unwrap_or_default())]),
    );
    Some((as_of?, hashes))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn redis_restart_mid_replay_then_redis_equals_the_views() {
    if common::env_or_skip("EOD_REDIS_URL", "scripts/redis.sh start").is_none() {
        return;
    }
    // A Redis of the test's own: its restart must not disturb other tests.
    let redis = common::server::OwnServer::start("redis", 16_492);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("archive");
    let mut sim = SimConfig::market_close(8);
    sim.traders = 6;
    sim.symbols = 10;
    generate_archive(&archive, sim, 150_000, 256 * 1024).unwrap();

    let mut command = Command::new(env!("CARGO_BIN_EXE_eod"));
    command
        .args(["replay", "--quiet", "--no-books", "--epoch-messages", "500"])
        .arg("--archive")
        .arg(&archive)
        .arg("--dead-letters")
        .arg(work.path().join("dead-letters.jsonl"))
        .arg("--prices")
        .arg(archive.with_extension("prices.csv"))
        .args([
            "--serve",
            "127.0.0.1:0",
            "--redis",
            &redis_url(&redis),
            "--",
            "-w",
            "2",
        ]);
    let replay = Serving::spawn(command, "serving");
    let addr = replay.addr.clone();

    // Redis follows the replay; then it goes away in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while redis_state(&redis_url(&redis)).is_none() {
        assert!(Instant::now() < deadline, "redis never got the views");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, before) = get(&addr, "/v1/pnl/firm");
    assert_eq!(
        before["as_of"]["complete"], false,
        "the replay is still running"
    );
    redis.script("stop");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, during) = get(&addr, "/v1/pnl/firm");
    assert!(
        during["as_of"]["messages"].as_u64() > before["as_of"]["messages"].as_u64()
            || during["as_of"]["complete"] == true,
        "the views stood still while redis was down: {before} / {during}"
    );
    redis.script("start");

    // The replay completes; Redis catches up with a full resynchronisation.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (firm, traders, positions) = loop {
        assert!(Instant::now() < deadline, "the replay did not complete");
        let (_, firm) = get(&addr, "/v1/pnl/firm");
        if firm["as_of"]["complete"] == true {
            let (_, traders) = get(&addr, "/v1/pnl/traders");
            let (_, positions) = get(&addr, "/v1/positions");
            break (firm, traders, positions);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let hashes = loop {
        if let Some((as_of, hashes)) = redis_state(&redis_url(&redis)) {
            if json(&as_of) == firm["as_of"] {
                break hashes;
            }
        }
        assert!(
            Instant::now() < deadline,
            "redis never caught up: {}",
            replay.said()
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    let rows = positions["positions"].as_array().unwrap();
    assert!(rows.len() >= 50);
    let stored: usize = hashes
        .iter()
        .filter(|(k, _)| k.starts_with("positions:"))
        .map(|(_, h)| h.len())
        .sum();
    assert_eq!(
        stored,
        rows.len(),
        "redis holds exactly the view's positions"
    );
    for row in rows {
        let key = format!("positions:{}", row["trader"].as_str().unwrap());
        let symbol = row["symbol"].as_str().unwrap();
        assert_eq!(json(&hashes[&key][symbol]), *row, "{key} {symbol}");
    }
    for totals in traders["traders"].as_array().unwrap() {
        let mut expected = totals.clone();
        let trader = expected.as_object_mut().unwrap().remove("trader").unwrap();
        let stored = json(&hashes["pnl:traders"][trader.as_str().unwrap()]);
        assert_eq!(stored, expected, "{trader}");
    }
    assert_eq!(json(&hashes["pnl:firm"][""]), firm["firm"]);

    let metrics = get_text(&addr, "/metrics").1;
    assert!(metric(&metrics, "eod_sink_resyncs_total{sink=\"redis\"}") >= 2.0);
    assert_eq!(
        metric(&metrics, "eod_sink_breaker_state{sink=\"redis\"}"),
        0.0
    );
}

/// The views mirrored over TLS (`rediss://`) to a server whose certificate comes from a
/// private CA given with --redis-ca; without that CA the sink cannot connect.
#[test]
fn views_mirror_over_tls_with_a_private_ca() {
    if common::env_or_skip("EOD_REDIS_URL", "scripts/redis.sh start").is_none() {
        return;
    }
    let redis = common::server::OwnServer::start("redis", 16_494);
    let env: HashMap<String, String> = redis
        .script("env")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let (tls_url, ca, plain_url) = (
        env["EOD_REDIS_TLS_URL"].clone(),
        env["EOD_REDIS_TLS_CA"].clone(),
        env["EOD_REDIS_URL"].clone(),
    );
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("archive");
    let mut sim = SimConfig::market_close(17);
    sim.traders = 3;
    sim.symbols = 4;
    generate_archive(&archive, sim, 5_000, 256 * 1024).unwrap();
    let replay = |with_ca: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eod"));
        command
            .args(["replay", "--quiet", "--no-books", "--archive"])
            .arg(&archive)
            .arg("--prices")
            .arg(archive.with_extension("prices.csv"))
            .arg("--output")
            .arg(work.path().join("positions.json"))
            .args(["--redis", &tls_url]);
        if with_ca {
            command.args(["--redis-ca", &ca]);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let untrusted = replay(false);
    assert!(
        redis_state(&plain_url).is_none(),
        "nothing written without the CA"
    );
    assert!(
        untrusted.contains("redis"),
        "the failure is reported: {untrusted}"
    );
    replay(true);
    let (as_of, hashes) = redis_state(&plain_url).expect("the views reached redis over TLS");
    let positions = json(&std::fs::read_to_string(work.path().join("positions.json")).unwrap());
    let rows = positions["positions"].as_array().unwrap();
    let mirrored: usize = hashes
        .iter()
        .filter(|(k, _)| k.starts_with("positions:"))
        .map(|(_, h)| h.len())
        .sum();
    assert_eq!(mirrored, rows.len(), "as of {as_of}");
}
