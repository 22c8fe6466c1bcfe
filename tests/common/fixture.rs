//! The replay fixture: a simulated archive with hand-written edge cases around it, its prices
//! and reference data (with deliberate gaps).
#![allow(dead_code)]

use std::path::Path;

use eod_dataflow::PriceUpdate;
use eod_fix::FixEncoder;
use eod_runtime::books::ReferenceData;
use eod_runtime::generate::generate_archive;
use eod_sources::prices::parse_prices_csv;
use eod_sources::simulator::SimConfig;

pub fn er(fields: &[(u32, &str)]) -> Vec<u8> {
    FixEncoder::new("FIX.4.4").message("8", fields)
}

pub fn fill(
    exec_id: &str,
    symbol: &str,
    side: &str,
    qty: &str,
    px: &str,
    time: &str,
    trader: &str,
) -> Vec<u8> {
    er(&[
        (50, trader),
        (17, exec_id),
        (150, "F"),
        (55, symbol),
        (54, side),
        (32, qty),
        (31, px),
        (60, time),
    ])
}

/// Hand-written edge cases, in files named to replay before and after the simulated segments.
fn write_edge_segments(dir: &Path) {
    // Replays first: a bust and a correction whose targets only arrive in the last file.
    let mut early = er(&[(17, "EDGE-B1"), (150, "H"), (19, "EDGE-F1")]);
    early.extend(er(&[
        (50, "EDGE-T"),
        (17, "EDGE-C2"),
        (150, "G"),
        (19, "EDGE-C1"),
        (55, "EDGEX"),
        (54, "1"),
        (32, "5"),
        (31, "20.5"),
        (60, "20261125-21:00:09"),
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
        (50, "EDGE-T"),
        (17, "EDGE-C1"),
        (150, "G"),
        (19, "EDGE-F4"),
        (55, "EDGEX"),
        (54, "1"),
        (32, "12"),
        (31, "22.5"),
        (60, "20261125-21:00:03"),
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
    eod_fix::break_checksum(&mut bad);
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

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub archive: std::path::PathBuf,
    pub prices_path: std::path::PathBuf,
    pub prices: Vec<PriceUpdate>,
    pub reference: ReferenceData,
}

pub fn fixture() -> Fixture {
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
