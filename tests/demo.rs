//! `eod demo` as a user runs it: the simulator feeds the dataflow live and the HTTP views
//! fill up and keep changing, each response one consistent snapshot.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::http::{get, get_text, metric, try_get_text, KillOnDrop};
use std::time::{Duration, Instant};

#[test]
fn demo_serves_live_changing_views() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eod"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--rate",
            "3000",
            "--duration",
            "20",
            "--traders",
            "5",
            "--symbols",
            "10",
        ])
        .args(["--dead-letters"])
        .arg(std::env::temp_dir().join(format!("eod-demo-test-{}.jsonl", std::process::id())))
        .args(["--", "-w", "2"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = KillOnDrop(child);
    let mut lines = BufReader::new(stderr).lines();
    let mut addr = None;
    let mut log = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push(line.clone());
        if let Some(rest) = line.trim().strip_prefix("positions") {
            let url = rest.trim();
            addr = Some(
                url.trim_start_matches("http://")
                    .trim_end_matches("/v1/positions")
                    .to_owned(),
            );
            break;
        }
    }
    let addr =
        addr.unwrap_or_else(|| panic!("demo prints its address; it said:\n{}", log.join("\n")));
    // Keep draining the demo's stderr so a failure can say what the demo said.
    let demo_log = std::sync::Arc::new(std::sync::Mutex::new(log));
    let sink = demo_log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let mut last_error = None;

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_trades = Vec::new();
    while Instant::now() < deadline && seen_trades.len() < 3 {
        let (status, body) = match try_get_text(&addr, "/v1/pnl/firm") {
            Ok(response) => response,
            Err(error) => {
                last_error = Some(error.to_string());
                std::thread::sleep(Duration::from_millis(300));
                continue;
            }
        };
        assert_eq!(status, 200);
        let firm: serde_json::Value = serde_json::from_str(&body).unwrap();
        let trades = firm["firm"]["trades"].as_u64().unwrap_or(0);
        if trades > 0 && seen_trades.last() != Some(&trades) {
            seen_trades.push(trades);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        seen_trades.len() >= 3,
        "firm trades should grow while the demo runs: {seen_trades:?}; last error {last_error:?}; demo said:\n{}",
        demo_log.lock().unwrap().join("\n")
    );

    let (status, positions) = get(&addr, "/v1/positions");
    assert_eq!(status, 200);
    let rows = positions["positions"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r["mark_source"].is_string()),
        "simulated symbols always have a mark"
    );
    let (status, accounting) = get(&addr, "/v1/accounting");
    assert_eq!(status, 200);
    let a = &accounting["accounting"];
    let dead: u64 = a["dead_letters"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let accounted = ["fills", "busts", "corrections", "skipped"]
        .iter()
        .map(|k| a[k].as_u64().unwrap())
        .sum::<u64>()
        + dead;
    assert_eq!(
        accounted,
        a["read"].as_u64().unwrap(),
        "a snapshot is consistent: {a}"
    );
    let (status, _) = get(&addr, "/v1/pnl/traders/NOBODY");
    assert_eq!(status, 404);

    let (status, text) = get_text(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(metric(&text, "eod_messages_read_total") > 0.0);
    assert!(metric(&text, "eod_messages_total{outcome=\"fill\"}") > 0.0);
    assert!(metric(&text, "eod_dataflow_epochs_total") > 0.0);
    assert!(metric(&text, "eod_view_positions") > 0.0);
    drop(child);
}
