//! `eod demo` as a user runs it: the simulator feeds the dataflow live and the HTTP views
//! fill up and keep changing, each response one consistent snapshot.

mod common;

use std::process::Command;

use common::http::{get, get_text, get_with_headers, metric, try_get_text, Serving};
use std::time::{Duration, Instant};

#[test]
fn demo_serves_live_changing_views() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eod"));
    command
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
        .args(["--", "-w", "2"]);
    let demo = Serving::spawn(command, "positions");
    let addr = demo.addr.clone();
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
        demo.said()
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
    drop(demo);
}

fn eod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eod"))
}

/// The dashboard in a real browser: headless Chromium loads it during `eod demo`, sees firm
/// and trader P&L and positions with their mark source, sees them change, and filters by a
/// trader, with 10k positions: the size the page is meant to stay fast at.
#[test]
fn dashboard_shows_live_numbers_in_a_real_browser() {
    let Some(python) =
        common::env_or_skip("EOD_BROWSER_PYTHON", "scripts/test-all.sh sets up Chromium")
    else {
        return;
    };
    let mut command = eod();
    command.args([
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--rate",
        "4000",
        "--burst-multiplier",
        "1",
        "--duration",
        "120",
        "--traders",
        "60",
        "--symbols",
        "250",
        "--no-books",
    ]);
    let demo = Serving::spawn(command, "positions");
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let check = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/dashboard_check.py"
        ))
        .arg(format!("http://{}/", demo.addr))
        .arg(&screenshot)
        .args(["--timeout", "90", "--min-positions", "10000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "browser check failed: {}\n{stdout}\ndemo said:\n{}",
        String::from_utf8_lossy(&check.stderr),
        demo.said()
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("dashboard: {seen}");
    assert!(seen["second"]["messages"].as_u64() > seen["first"]["messages"].as_u64());
    assert!(seen["positions"].as_u64().unwrap() >= 10_000, "{seen}");
    let png = std::fs::read(&screenshot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG screenshot");
}

/// A network address needs a token; with one, every view wants it and probes do not; the
/// token never shows up in what the process prints, even at debug level.
#[test]
fn the_endpoint_is_private_unless_told_and_guarded_by_a_token() {
    let refused = eod()
        .args(["demo", "--listen", "0.0.0.0:0", "--duration", "1"])
        .env_remove("EOD_AUTH_TOKEN")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("without an auth token"), "{said}");

    let token = "correct-horse-battery-staple-42";
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut command = eod();
    command
        .args(["demo", "--listen", "0.0.0.0:0", "--rate", "2000"])
        .args(["--duration", "30", "--no-books", "--auth-token-file"])
        .arg(&token_file)
        .env("EOD_LOG", "trace");
    let demo = Serving::spawn(command, "positions");
    let port = demo.addr.rsplit(':').next().unwrap().to_owned();
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_text(&addr, "/health/ready").0 != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get_text(&addr, "/health/live").0, 200);
    assert_eq!(get_text(&addr, "/v1/positions").0, 401);
    assert_eq!(get_text(&addr, "/metrics").0, 401);
    let wrong = get_with_headers(&addr, "/v1/pnl/firm", &["Authorization: Bearer nope"]);
    assert_eq!(wrong.0, 401);
    let bearer = format!("Authorization: Bearer {token}");
    let (status, body) = get_with_headers(&addr, "/v1/pnl/firm", &[&bearer]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("total_pnl"));
    let (status, _) = get_with_headers(&addr, "/metrics", &[&bearer]);
    assert_eq!(status, 200);
    let Serving { child, log, .. } = demo;
    drop(child);
    std::thread::sleep(Duration::from_millis(200));
    let said = log.lock().unwrap().join("\n");
    assert!(said.contains("http endpoint listening"), "logged:\n{said}");
    assert!(!said.contains(token), "the token was printed:\n{said}");
}

/// File < environment < flags, unknown keys refused, secrets redacted in `config show`.
#[test]
fn config_layers_file_env_and_flags_and_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eod.toml");
    std::fs::write(
        &file,
        r#"
brokers = "file-broker:9092"
epoch-ms = 5
[run]
group-id = "from-file"
books = "postgres://eod:hunter2@db:5432/eod"
redis = "redis://:redispw@cache:6379"
auth-token = "file-token-0123456789abcdef"
"#,
    )
    .unwrap();
    let show = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = eod();
        command
            .arg("--config")
            .arg(&file)
            .args(["config", "show", "run"]);
        command.args(args);
        for key in [
            "EOD_EPOCH_MS",
            "EOD_GROUP_ID",
            "EOD_KAFKA_BROKERS",
            "EOD_AUTH_TOKEN",
        ] {
            command.env_remove(key);
        }
        command.envs(env.iter().copied());
        let out = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let from_file = show(&[], &[]);
    assert!(
        from_file.contains("brokers = \"file-broker:9092\""),
        "{from_file}"
    );
    assert!(from_file.contains("epoch-ms = 5   # file"), "{from_file}");
    assert!(
        from_file.contains("group-id = \"from-file\""),
        "{from_file}"
    );
    assert!(
        from_file.contains("serve = \"127.0.0.1:8080\"   # default"),
        "{from_file}"
    );
    for secret in ["hunter2", "redispw", "file-token-0123456789abcdef"] {
        assert!(!from_file.contains(secret), "{secret} shown:\n{from_file}");
    }
    assert!(
        from_file.contains("postgres://eod:***@db:5432/eod"),
        "{from_file}"
    );
    let from_env = show(&[], &[("EOD_EPOCH_MS", "7")]);
    assert!(from_env.contains("epoch-ms = 7   # env"), "{from_env}");
    let from_flag = show(&["--epoch-ms", "9"], &[("EOD_EPOCH_MS", "7")]);
    assert!(from_flag.contains("epoch-ms = 9   # flag"), "{from_flag}");

    // --help prints the variables' current values, except secrets'.
    for argv in [
        &["--help"][..],
        &["--version"],
        &["config", "show", "--help"],
    ] {
        let out = eod().args(argv).output().unwrap();
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let help = eod()
        .args(["run", "--help"])
        .env("EOD_REDIS", "redis://:redispw@cache:6379")
        .env("EOD_BOOKS", "postgres://eod:hunter2@db/eod")
        .env("EOD_AUTH_TOKEN", "help-token-0123456789")
        .env("EOD_KAFKA_SASL_PASSWORD", "saslpw")
        .env("EOD_EPOCH_MS", "7")
        .output()
        .unwrap();
    assert!(
        help.status.success(),
        "{}",
        String::from_utf8_lossy(&help.stderr)
    );
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("EOD_EPOCH_MS=7"), "{help}");
    for secret in ["redispw", "hunter2", "help-token-0123456789", "saslpw"] {
        assert!(!help.contains(secret), "{secret} in --help:\n{help}");
    }

    std::fs::write(&file, "[run]\nepoch-msec = 5\n").unwrap();
    let out = eod()
        .arg("--config")
        .arg(&file)
        .args(["config", "show", "run"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("unknown key `epoch_msec` in [run]"), "{said}");
}

/// The compose deployment's config file is valid for every command it configures.
#[test]
fn the_docker_config_file_is_valid_for_each_role() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/eod.toml");
    for (command, expect) in [
        ("run", "serve = \"0.0.0.0:8080\"   # file"),
        ("ingest", "listen = \"0.0.0.0:9878\"   # file"),
        ("simulate", "to = \"eod-ingest:9878\"   # file"),
    ] {
        let out = eod()
            .args(["--config", file, "config", "show", command])
            .env_remove("EOD_KAFKA_BROKERS")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(expect), "{command}:\n{stdout}");
        assert!(
            stdout.contains("brokers = \"kafka:9092\"   # file"),
            "{stdout}"
        );
    }
}

/// Percent-encodes a query parameter value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus scrapes `eod demo` with the bearer token, and every query of the Grafana
/// dashboard is valid PromQL that Prometheus evaluates over what it scraped; the core panels
/// have data.
#[test]
fn prometheus_scrapes_the_demo_and_evaluates_every_dashboard_query() {
    let Some(prometheus) =
        common::env_or_skip("EOD_PROMETHEUS", "scripts/test-all.sh installs Prometheus")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = "prometheus-scrape-token-0123";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let mut command = eod();
    command
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--rate",
            "3000",
            "--no-books",
        ])
        .args(["--duration", "90", "--auth-token-file"])
        .arg(&token_file);
    let demo = Serving::spawn(command, "positions");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: eod\n    \
             authorization:\n      credentials_file: {}\n    static_configs:\n      \
             - targets: [\"{}\"]\n",
            token_file.display(),
            demo.addr
        ),
    )
    .unwrap();
    let port = common::http::free_port();
    let server = std::process::Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let _server = common::http::KillOnDrop(server);
    let prom = format!("127.0.0.1:{port}");
    let query = |expr: &str| -> serde_json::Value {
        get(&prom, &format!("/api/v1/query?query={}", encode(expr))).1
    };
    // Up means the scrape with the bearer token succeeded.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = try_get_text(&prom, &format!("/api/v1/query?query={}", encode("up")))
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_owned)
            });
        if up.as_deref() == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped the demo (up = {up:?}): {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // rate() over [1m] needs two samples of each series.
    std::thread::sleep(Duration::from_secs(4));
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docker/grafana/dashboards/eod.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut with_data = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let answer = query(expr);
            assert_eq!(answer["status"], "success", "{expr}: {answer}");
            if !answer["data"]["result"].as_array().unwrap().is_empty() {
                with_data.push(expr.to_owned());
            }
        }
    }
    for core in [
        "sum by (outcome) (rate(eod_messages_total[1m]))",
        "max(eod_view_positions)",
        "sum(rate(eod_dataflow_epochs_total[1m]))",
    ] {
        assert!(
            with_data.iter().any(|e| e == core),
            "no data for {core}; had data: {with_data:#?}"
        );
    }
    drop(demo);
}
