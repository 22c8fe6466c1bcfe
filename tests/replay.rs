//! End to end: an archive with busts, corrections, out-of-order fills, noise and broken
//! messages replays to the reference answer, and every message is accounted for.

mod common;

use std::path::Path;
use std::process::Command;

use eod::books::{BooksTarget, ReferenceData};
use eod::generate::generate_archive;
use eod::replay::{run_replay, ReplayOptions};
use eod_dataflow::reference;
use eod_dataflow::{PriceUpdate, ViewStore};
use eod_sources::fix::FixEncoder;
use eod_sources::prices::parse_prices_csv;
use eod_sources::simulator::SimConfig;

fn er(fields: &[(u32, &str)]) -> Vec<u8> {
    FixEncoder::new("FIX.4.4").message("8", fields)
}

fn fill(
    exec_id: &str,
    symbol: &str,
    side: &str,
    qty: &str,
    px: &str,
    time: &str,
    trader: &str,
) -> Vec<u8> {
    er(&[
        (17, exec_id),
        (150, "F"),
        (55, symbol),
        (54, side),
        (32, qty),
        (31, px),
        (60, time),
        (50, trader),
    ])
}

/// Hand-written edge cases, in files named to replay before and after the simulated segments.
fn write_edge_segments(dir: &Path) {
    // Replays first: a bust and a correction whose targets only arrive in the last file.
    let mut early = er(&[(17, "EDGE-B1"), (150, "H"), (19, "EDGE-F1")]);
    early.extend(er(&[
        (17, "EDGE-C2"),
        (150, "G"),
        (19, "EDGE-C1"),
        (55, "EDGEX"),
        (54, "1"),
        (32, "5"),
        (31, "20.5"),
        (60, "20261125-21:00:09"),
        (50, "EDGE-T"),
    ]));
    early.extend(b"\r\nnot fix at all\n");
    std::fs::write(dir.join("aaa-early.fix"), early).unwrap();

    // Replays last: fills out of TransactTime order, the bust/correction targets, a duplicate
    // resend, a bad checksum and a truncated tail.
    let mut late = Vec::new();
    late.extend(fill(
        "EDGE-F3",
        "EDGEX",
        "2",
        "30",
        "21.25",
        "20261125-21:00:05.000",
        "EDGE-T",
    ));
    late.extend(fill(
        "EDGE-F2",
        "EDGEX",
        "1",
        "100",
        "20",
        "20261125-21:00:01.000",
        "EDGE-T",
    ));
    late.extend(fill(
        "EDGE-F1",
        "EDGEX",
        "1",
        "999",
        "19",
        "20261125-21:00:02.000",
        "EDGE-T",
    ));
    late.extend(fill(
        "EDGE-F2",
        "EDGEX",
        "1",
        "100",
        "20",
        "20261125-21:00:01.000",
        "EDGE-T",
    ));
    late.extend(fill(
        "EDGE-F4",
        "EDGEX",
        "1",
        "10",
        "22",
        "20261125-21:00:03.000",
        "EDGE-T",
    ));
    late.extend(er(&[
        (17, "EDGE-C1"),
        (150, "G"),
        (19, "EDGE-F4"),
        (55, "EDGEX"),
        (54, "1"),
        (32, "12"),
        (31, "22.5"),
        (60, "20261125-21:00:03"),
        (50, "EDGE-T"),
    ]));
    let mut bad = fill(
        "EDGE-F5",
        "EDGEX",
        "1",
        "1",
        "1",
        "20261125-21:00:04",
        "EDGE-T",
    );
    let n = bad.len();
    bad[n - 2] = if bad[n - 2] == b'0' { b'1' } else { b'0' };
    late.extend(bad);
    let truncated = fill(
        "EDGE-F6",
        "EDGEX",
        "1",
        "1",
        "1",
        "20261125-21:00:04",
        "EDGE-T",
    );
    late.extend(&truncated[..truncated.len() / 2]);
    std::fs::write(dir.join("zzz-late.fix"), late).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    archive: std::path::PathBuf,
    prices_path: std::path::PathBuf,
    prices: Vec<PriceUpdate>,
    reference: ReferenceData,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let mut sim = SimConfig::market_close(11);
    sim.traders = 5;
    sim.symbols = 8;
    sim.bust_ratio = 0.03;
    sim.correct_ratio = 0.03;
    sim.broken_ratio = 0.01;
    let generated = generate_archive(&archive, sim, 30_000, 256 * 1024).unwrap();
    write_edge_segments(&archive);
    let mut csv = std::fs::read_to_string(&generated.prices).unwrap();
    csv.push_str("EDGEX,prev_close,19.75\n");
    std::fs::write(&generated.prices, &csv).unwrap();
    let prices = parse_prices_csv(&csv).unwrap();
    // One simulated trader and one symbol have no reference data (nor has the EDGE trader):
    // their rows must still be written, flagged.
    let mut reference =
        ReferenceData::load(Some(&generated.traders), Some(&generated.securities)).unwrap();
    reference.traders.retain(|t| t.trader_id != "TRADER04");
    reference.securities.retain(|s| s.symbol != "SYM007");
    Fixture {
        archive,
        prices_path: generated.prices,
        prices,
        reference,
        _dir: dir,
    }
}

#[test]
fn replay_equals_reference_and_accounts_for_every_message() {
    let fx = fixture();
    let dead_letters = fx.archive.with_extension("dead.jsonl");
    let books = fx.archive.with_extension("books.sqlite");
    let options = ReplayOptions {
        archive: fx.archive.to_str().unwrap().to_owned(),
        prices: fx.prices.clone(),
        dead_letters: dead_letters.clone(),
        epoch_messages: 1_000,
        max_epochs_in_flight: 2,
        max_message: eod_sources::fix::DEFAULT_MAX_MESSAGE,
        timely_args: vec!["-w".into(), "2".into()],
        progress: false,
        books: Some(BooksTarget::Sqlite(books.clone())),
        books_batch: Default::default(),
        reference: fx.reference.clone(),
    };
    let summary = run_replay(
        options,
        ViewStore::new(),
        eod::metrics::Metrics::new().unwrap(),
    )
    .unwrap();
    let snapshot = &summary.snapshot;
    let (events, framed) = common::decode_archive(&fx.archive);
    let expected = reference::compute(&events, &fx.prices);

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

    common::assert_books_match(
        &common::sqlite_rows(&rusqlite::Connection::open(&books).unwrap()),
        &events,
        snapshot,
        &fx.reference,
        &fx.archive,
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
    assert!(one["positions"].as_array().unwrap().len() > 30);
    assert!(
        one["positions"][0]["total_pnl"].is_string(),
        "money travels as strings"
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
