//! End to end: an archive with busts, corrections, out-of-order fills, noise and broken
//! messages replays to the reference answer, and every message is accounted for.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture::fixture;
use eod_dataflow::baseline;
use eod_dataflow::ViewStore;
use eod_runtime::books::BooksTarget;
use eod_runtime::replay::{run_replay, ReplayOptions};

/// A replay of the fixture's archive without books, in epochs of `epoch_messages` per worker.
fn fixture_options(
    fx: &common::fixture::Fixture,
    epoch_messages: u64,
    workers: usize,
) -> ReplayOptions {
    ReplayOptions {
        archive: fx.archive.to_str().unwrap().to_owned(),
        prices: fx.prices.clone(),
        dead_letters: fx.archive.with_extension("dead.jsonl"),
        epoch_messages,
        limits: eod_runtime::driver::replay_limits(epoch_messages, workers),
        max_message: eod_fix::DEFAULT_MAX_MESSAGE,
        timely_args: vec!["-w".into(), workers.to_string()],
        progress: false,
        books: None,
        books_batch: Default::default(),
        reference: fx.reference.clone(),
        worker_nice: eod_runtime::replay::REPLAY_WORKER_NICE,
        exit_after: false,
    }
}

#[test]
fn replay_equals_reference_and_accounts_for_every_message() {
    let fx = fixture();
    let dead_letters = fx.archive.with_extension("dead.jsonl");
    let books = fx.archive.with_extension("books.sqlite");
    let options = ReplayOptions {
        dead_letters: dead_letters.clone(),
        limits: eod_runtime::driver::EpochLimits {
            in_flight: 2,
            not_durable: 2,
        },
        books: Some(BooksTarget::Sqlite(books.clone())),
        ..fixture_options(&fx, 1_000, 2)
    };
    let summary = run_replay(
        options,
        ViewStore::new(),
        eod_runtime::metrics::Metrics::new().unwrap(),
    )
    .unwrap();
    let snapshot = &summary.snapshot;
    let (events, framed) = common::decode_archive(&fx.archive);
    let expected = baseline::compute(&events, &fx.prices);

    assert!(snapshot.as_of.complete);
    assert_eq!(snapshot.positions, expected.positions);
    assert_eq!(snapshot.traders, expected.traders);
    assert_eq!(snapshot.firm, expected.firm);

    let a = &snapshot.accounting;
    assert_eq!(a.read, framed, "every framed unit is read once");
    assert_eq!(
        a.accounted(),
        a.read,
        "processed + skipped + dead-lettered = read"
    );
    assert_eq!(a.fills + a.busts + a.corrections, events.len() as u64);
    assert!(
        a.busts > 100 && a.corrections > 100 && a.skipped > 100,
        "{a:?}"
    );
    assert!(
        a.dead_letters.contains_key("checksum") && a.dead_letters.contains_key("garbled"),
        "{a:?}"
    );
    let lines = std::fs::read_to_string(&dead_letters)
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(lines, a.dead_lettered());
    assert_eq!(summary.dead_letters_written, lines);

    // The edge cases by hand: F1 busted (bust replayed first), F2 counted once, F4 replaced by
    // C1 which C2 replaced in turn; F3 sold 30 @ 21.25.
    let edge = &snapshot.positions[&("EDGE-T".into(), "EDGEX".into())];
    assert_eq!(edge.trades, 3, "F2, F3 and C2 are live");
    assert_eq!(edge.net_qty, 100 - 30 + 5);
    // The last trade by TransactTime is C2 (21:00:09, 20.5), later than F3 (21:00:05).
    assert_eq!(edge.mark.unwrap().to_string(), "20.5");
    assert!(snapshot.unmatched.is_empty(), "{:?}", snapshot.unmatched);

    let stats = common::assert_books_match(
        &common::sqlite_rows(&rusqlite::Connection::open(&books).unwrap()),
        &events,
        snapshot,
        &fx.reference,
        &fx.archive,
    );
    assert!(
        stats.busted > 0 && stats.corrected > 0 && stats.enrichment_missing > 0,
        "the fixture exercises every status: {stats:?}"
    );
}

/// An epoch holds --epoch-messages units, not whatever one read of an archive segment brings
/// (the replay used to enter a whole 1 MiB slice, some 4,700 messages, whatever the epoch
/// size): with one worker and epochs of 100, the last epoch's number is the units over 100.
#[test]
fn epochs_hold_the_messages_asked_for() {
    let fx = fixture();
    let options = fixture_options(&fx, 100, 1);
    let summary = run_replay(
        options,
        ViewStore::new(),
        eod_runtime::metrics::Metrics::new().unwrap(),
    )
    .unwrap();
    let units = summary.accounting().read;
    // Epochs are numbered from 1 and the frontier ends one past the last.
    let epochs = summary.snapshot.as_of.time - 1;
    assert!(
        epochs.abs_diff(units.div_ceil(100)) <= 1,
        "{epochs} epochs for {units} units in epochs of 100"
    );
}

#[test]
fn binary_output_is_identical_for_one_and_two_workers() {
    let fx = fixture();
    let run = |workers: &str, output: &Path| {
        let status = Command::new(env!("CARGO_BIN_EXE_eod"))
            .args(["replay", "--quiet", "--archive"])
            .arg(&fx.archive)
            .arg("--prices")
            .arg(&fx.prices_path)
            .arg("--output")
            .arg(output)
            .arg("--dead-letters")
            .arg(output.with_extension("jsonl"))
            .args(["--epoch-messages", "500", "--", "-w", workers])
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        let stdout = String::from_utf8(status.stdout).unwrap();
        assert!(
            stdout.contains("accounted") && stdout.contains("(all)"),
            "{stdout}"
        );
        std::fs::read(output).unwrap()
    };
    let one: serde_json::Value =
        serde_json::from_slice(&run("1", &fx.archive.with_extension("one.json"))).unwrap();
    let two: serde_json::Value =
        serde_json::from_slice(&run("2", &fx.archive.with_extension("two.json"))).unwrap();
    // Epoch numbering depends on the worker count; the data reflected must not.
    assert!(
        one["positions"] == two["positions"],
        "positions differ between -w 1 and -w 2"
    );
    assert_eq!(one["as_of"]["messages"], two["as_of"]["messages"]);
    assert_eq!(one["as_of"]["complete"], true);
    assert_eq!(two["as_of"]["complete"], true);
    // The dead letters come in the archive's order, whichever worker read which segment.
    let letters = |name: &str| std::fs::read(fx.archive.with_extension(name)).unwrap();
    let (one_letters, two_letters) = (letters("one.jsonl"), letters("two.jsonl"));
    assert!(
        one_letters == two_letters,
        "dead letters differ between -w 1 and -w 2"
    );
    let sources: std::collections::BTreeSet<String> = String::from_utf8(one_letters)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["source"].to_string())
        .collect();
    assert!(
        sources.len() > 1,
        "letters from several segments: {sources:?}"
    );
    assert!(one["positions"].as_array().unwrap().len() > 30);
    assert!(
        one["positions"][0]["total_pnl"].is_string(),
        "money travels as strings"
    );
}

/// A replay split over two processes (`-n 2`) as a user runs it, both on one SQLite books file:
/// both start (each opens and migrates the new file as it starts, and one of them used to fail
/// on the other's lock and leave its peer waiting for it), each writes the whole day's
/// positions, and the books are those of a one-process replay: the same rows, each once.
#[test]
fn a_replay_over_two_processes_writes_the_books_of_one() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    // Each run by its name: `NAME.json` its positions, `NAME.log` what it printed.
    let replay = |name: &str, books: &str, timely: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_eod"))
            .args(["replay", "--quiet", "--archive"])
            .arg(&fx.archive)
            .arg("--prices")
            .arg(&fx.prices_path)
            .arg("--output")
            .arg(dir.path().join(format!("{name}.json")))
            .arg("--books")
            .arg(format!("sqlite:{}", dir.path().join(books).display()))
            .arg("--")
            .args(timely)
            .stdout(Stdio::null())
            // A file, not a pipe nobody reads while the processes run.
            .stderr(std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap()
    };
    let hosts = dir.path().join("hosts");
    let ports = [common::http::free_port(), common::http::free_port()];
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]),
    )
    .unwrap();
    let hosts = hosts.to_str().unwrap();
    let names = ["one", "two-0", "two-1"];
    let mut runs = [
        replay(names[0], "one.sqlite", &["-w", "2"]),
        replay(names[1], "two.sqlite", &["-n", "2", "-p", "0", "-h", hosts]),
        replay(names[2], "two.sqlite", &["-n", "2", "-p", "1", "-h", hosts]),
    ];
    // A process that fails leaves its peer waiting for it for ever: the others are stopped
    // once one fails, or at a deadline.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let exits: Vec<_> = runs.iter_mut().map(|run| run.try_wait().unwrap()).collect();
        let failed = exits.iter().flatten().any(|status| !status.success());
        if exits.iter().all(Option::is_some) {
            break;
        }
        if failed || Instant::now() > deadline {
            runs.iter_mut()
                .for_each(|run| run.kill().unwrap_or_default());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let outcomes: Vec<_> = runs
        .iter_mut()
        .zip(names)
        .map(|(run, name)| {
            let log = std::fs::read_to_string(dir.path().join(format!("{name}.log")));
            (run.wait().unwrap(), log.unwrap_or_default())
        })
        .collect();
    assert!(
        outcomes.iter().all(|(status, _)| status.success()),
        "{}",
        outcomes
            .iter()
            .map(|(status, log)| format!("{status}: {log}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let output = |name: &str| -> serde_json::Value {
        let json = std::fs::read(dir.path().join(format!("{name}.json"))).unwrap();
        serde_json::from_slice(&json).unwrap()
    };
    let one = output(names[0]);
    assert_eq!(one["as_of"]["complete"], true);
    assert!(one["positions"].as_array().unwrap().len() > 30);
    for process in &names[1..] {
        let two = output(process);
        assert_eq!(two["as_of"]["complete"], true, "{process}");
        assert!(
            two["positions"] == one["positions"],
            "{process}: positions differ"
        );
    }
    let rows = |books: &str| {
        let mut rows =
            common::sqlite_rows(&rusqlite::Connection::open(dir.path().join(books)).unwrap());
        rows.sort_by(|a, b| a.exec_id.cmp(&b.exec_id));
        rows
    };
    let (one_rows, two_rows) = (rows("one.sqlite"), rows("two.sqlite"));
    assert!(one_rows.len() > 1_000, "{} rows", one_rows.len());
    assert!(
        one_rows.windows(2).all(|w| w[0].exec_id != w[1].exec_id),
        "each ExecID once"
    );
    assert!(
        two_rows == one_rows,
        "the two processes' books differ from one's"
    );
}

#[test]
fn missing_archive_and_bad_prices_fail_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_eod"))
        .args(["replay", "--quiet", "--archive", "/nonexistent/eod-archive"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("archive"));
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("p.csv");
    std::fs::write(&prices, "AAPL,close,abc\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eod"))
        .args(["replay", "--quiet", "--archive"])
        .arg(dir.path())
        .arg("--prices")
        .arg(&prices)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("prices line 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--otlp-endpoint`: the replay's stage spans reach a real OTLP collector (Jaeger), under
/// the service name given, with their attributes.
#[test]
fn spans_are_exported_over_otlp() {
    let Some(otlp) = common::env_or_skip("EOD_JAEGER_OTLP", "scripts/jaeger.sh env") else {
        return;
    };
    let Some(query) = common::env_or_skip("EOD_JAEGER_QUERY", "scripts/jaeger.sh env") else {
        return;
    };
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let service = format!("eod-test-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_eod"))
        .args(["replay", "--quiet", "--archive"])
        .arg(&fx.archive)
        .arg("--books")
        .arg(format!(
            "sqlite:{}",
            dir.path().join("books.sqlite").display()
        ))
        // Not the default ./dead-letters.jsonl: that is the checkout's root under cargo test.
        .arg("--dead-letters")
        .arg(dir.path().join("dead-letters.jsonl"))
        .args(["--otlp-endpoint", &otlp, "--otlp-service-name", &service])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The exporter flushed at exit; the collector may take a moment to index.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let operations = loop {
        let (status, body) = common::http::get(&query, &format!("/api/traces?service={service}"));
        let operations: std::collections::BTreeSet<String> = if status == 200 {
            body["data"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|trace| trace["spans"].as_array().cloned().unwrap_or_default())
                .filter_map(|span| span["operationName"].as_str().map(str::to_owned))
                .collect()
        } else {
            Default::default()
        };
        if operations.contains("replay_segment") && operations.contains("sink_batch") {
            break operations;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spans never arrived: {operations:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let (_, body) = common::http::get(&query, &format!("/api/traces?service={service}"));
    let tagged = body["data"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tags"].as_array().cloned().unwrap_or_default())
        .any(|tag| tag["key"] == "key" || tag["key"] == "rows");
    assert!(tagged, "span attributes exported: {operations:?}");
}

/// The FIX log that lost trades: corrupt BodyLengths in front of valid fills, one of them
/// declaring a span that ends exactly on the CheckSum field of a fill five messages later,
/// in files separated by nothing, LF and CRLF. Every valid fill reaches the views, and the
/// summary's accounting (independent of the framer) says all.
#[test]
fn corrupt_body_lengths_never_cost_a_valid_fill() {
    use eod_fix::FixEncoder;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let fill = |n: usize| {
        let (exec, qty) = (format!("H-{n}"), (1 + n % 7).to_string());
        FixEncoder::new("FIX.4.4").message(
            "8",
            &[
                (17, exec.as_str()),
                (150, "F"),
                (55, "HARSH"),
                (54, "1"),
                (32, qty.as_str()),
                (31, "10"),
                (60, "20261125-21:00:00"),
                (1, "HARSH-T"),
            ],
        )
    };
    let with_body_length = |message: &[u8], length: usize| {
        let start = message.windows(3).position(|w| w == b"\x019=").unwrap() + 3;
        let end = start + message[start..].iter().position(|b| *b == 1).unwrap();
        [
            &message[..start],
            length.to_string().as_bytes(),
            &message[end..],
        ]
        .concat()
    };
    let body_length = |message: &[u8]| {
        let start = message.windows(3).position(|w| w == b"\x019=").unwrap() + 3;
        let end = start + message[start..].iter().position(|b| *b == 1).unwrap();
        std::str::from_utf8(&message[start..end])
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    let (mut valid, mut expected_qty, mut n) = (0u64, 0i64, 0usize);
    for (file, separator) in [
        ("a-soh.fix", &b""[..]),
        ("b-lf.fix", b"\n"),
        ("c-crlf.fix", b"\r\n"),
    ] {
        let mut bytes = Vec::new();
        for round in 0..100 {
            let fills: Vec<Vec<u8>> = (0..5).map(|i| fill(n + i)).collect();
            n += 5;
            let bad = fill(1_000_000 + n);
            let corrupt = match round % 4 {
                // The span runs exactly onto the fifth fill's CheckSum field.
                0 => {
                    // From the bad message's end to the fifth fill's `10=`.
                    let tail: usize = fills
                        .iter()
                        .map(|f| f.len() + separator.len())
                        .sum::<usize>()
                        - 7;
                    with_body_length(&bad, body_length(&bad) + 7 + tail)
                }
                1 => with_body_length(&bad, body_length(&bad) * 10 + 3),
                2 => with_body_length(&bad, body_length(&bad) / 10),
                _ => bad[..bad.len() - 7].to_vec(),
            };
            bytes.extend_from_slice(&corrupt);
            bytes.extend_from_slice(separator);
            for (i, f) in fills.iter().enumerate() {
                bytes.extend_from_slice(f);
                bytes.extend_from_slice(separator);
                valid += 1;
                expected_qty += (1 + (n - 5 + i) % 7) as i64;
            }
        }
        std::fs::write(archive.join(file), bytes).unwrap();
    }
    let output = dir.path().join("out.json");
    let stdout = common::replay_no_books(&archive, &dir.path().join("dead.jsonl"), Some(&output));
    assert_eq!(
        common::printed(&stdout, "trades"),
        valid,
        "every valid fill is a trade"
    );
    assert!(stdout.contains("(all)"), "{stdout}");
    // Each position went into a published snapshot at least once, and the counts with it.
    let (changes, snapshots) = stdout
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("view changes")?.trim();
            let (changes, rest) = rest.split_once(" in ")?;
            let snapshots = rest.strip_suffix(" snapshots")?;
            Some((changes.parse::<u64>().ok()?, snapshots.parse::<u64>().ok()?))
        })
        .unwrap_or_else(|| panic!("no view changes line in:\n{stdout}"));
    assert!(snapshots >= 1, "{stdout}");
    assert!(changes > common::printed(&stdout, "positions"), "{stdout}");
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    assert_eq!(
        dead.lines().count(),
        300,
        "one dead letter per corrupt message"
    );
    let positions: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let harsh = &positions["positions"][0];
    assert_eq!(harsh["trades"], valid);
    assert_eq!(harsh["net_qty"].as_i64(), Some(expected_qty), "{harsh}");
}

/// `eod replay` classifies every public FIX sample and one message of every dead-letter class
/// exactly as the codec's classifier does: the same counts, the same reasons in the same order.
#[test]
fn replay_classifies_every_outcome_like_the_codec() {
    let stream = common::outcomes::every_outcome_stream();
    let (expected, reasons) = common::outcomes::classify_directly(&stream);
    let mut classes: Vec<&str> = reasons.clone();
    classes.sort_unstable();
    classes.dedup();
    assert_eq!(
        classes,
        [
            "body_length",
            "checksum",
            "garbled",
            "invalid_value",
            "missing_field"
        ],
        "the input holds every dead-letter class of the FIX path"
    );
    assert!(expected.fills > 0 && expected.skipped > 0 && expected.all_accounted());

    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::write(archive.join("outcomes.fix"), &stream).unwrap();
    let dead_letters = dir.path().join("dead.jsonl");
    let stdout = common::replay_no_books(&archive, &dead_letters, None);
    let printed = common::printed;
    assert_eq!(printed(&stdout, "messages"), expected.read);
    assert_eq!(printed(&stdout, "trades"), expected.fills);
    assert_eq!(printed(&stdout, "busts"), expected.busts);
    assert_eq!(printed(&stdout, "corrections"), expected.corrections);
    assert_eq!(printed(&stdout, "skipped"), expected.skipped);
    assert_eq!(printed(&stdout, "dead letters"), expected.dead_lettered());
    for (reason, n) in &expected.dead {
        assert_eq!(printed(&stdout, reason.label()), *n, "{reason:?}");
    }
    assert!(stdout.contains("(all)"), "{stdout}");
    let written: Vec<String> = std::fs::read_to_string(&dead_letters)
        .unwrap()
        .lines()
        .map(|l| {
            let record: serde_json::Value = serde_json::from_str(l).unwrap();
            record["reason"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(written, reasons);
}
