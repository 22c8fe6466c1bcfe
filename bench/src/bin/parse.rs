//! The parse stage alone, round after round: frame, validate and decode every message of an
//! archive on one thread, as a replay worker does with its share. The replay bench times this
//! stage once per run, and one run's figure swung by half on the 2-core box (bench/RESULTS.md,
//! 2026-12-07); here each round is timed, and the fastest and the median compare two builds.
//! The outcome counts and a hash of the trades' fields are printed so that two builds can be
//! seen to decode alike.
//!
//!     cargo run --release -p eod-bench --bin eod-bench-parse -- --archive DIR --rounds 7

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use eod_fix::{CheckedTrade, Classifier, Outcome};
use eod_sources::archive::Archive;

#[derive(Parser, Debug)]
struct Args {
    /// An archive directory (`eod generate --out DIR`).
    #[arg(long)]
    archive: PathBuf,
    /// Rounds over the whole archive.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
}

/// What one round decoded: the outcomes by kind and a hash of every trade's fields.
#[derive(Debug, Default, PartialEq, Eq)]
struct Decoded {
    trades: u64,
    not_trades: u64,
    dead: u64,
    fields_hash: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let location = args.archive.to_str().context("archive path is not UTF-8")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let archive = Archive::open(location)?;
    let segments = runtime.block_on(archive.read_all())?;
    let bytes: usize = segments.iter().map(|s| s.len()).sum();
    // Once, untimed: what the rounds decode, with every trade's fields hashed.
    let decoded = parse(&segments, |trade, hasher| format!("{trade:?}").hash(hasher));
    let mut times = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        let started = Instant::now();
        let counted = parse(&segments, |trade, _| {
            std::hint::black_box(trade);
        });
        let took = started.elapsed();
        println!("round {round}: {:.3} s", took.as_secs_f64());
        times.push(took);
        anyhow::ensure!(
            (counted.trades, counted.not_trades, counted.dead)
                == (decoded.trades, decoded.not_trades, decoded.dead),
            "a round decoded differently"
        );
    }
    times.sort();
    let fastest = times.first().copied().unwrap_or_default();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let messages = decoded.trades + decoded.not_trades + decoded.dead;
    println!(
        "{messages} messages ({} trades, {} not trades, {} dead letters), {bytes} bytes, \
         trade fields hash {:016x}",
        decoded.trades, decoded.not_trades, decoded.dead, decoded.fields_hash
    );
    println!(
        "fastest {:.3} s ({:.0} ns per message), median {:.3} s",
        fastest.as_secs_f64(),
        per_message(fastest, messages),
        median.as_secs_f64()
    );
    Ok(())
}

fn per_message(time: Duration, messages: u64) -> f64 {
    time.as_nanos() as f64 / messages.max(1) as f64
}

/// Frames and classifies every message; `on_trade` sees each trade's fields.
fn parse(
    segments: &[bytes::Bytes],
    mut on_trade: impl FnMut(&CheckedTrade<'_>, &mut DefaultHasher),
) -> Decoded {
    let mut classifier = Classifier::new();
    let mut decoded = Decoded::default();
    let mut hasher = DefaultHasher::new();
    for segment in segments {
        for frame in eod_fix::frames(segment, eod_fix::DEFAULT_MAX_MESSAGE) {
            match classifier.classify(&frame) {
                Outcome::Trade(trade) => {
                    decoded.trades += 1;
                    on_trade(&trade, &mut hasher);
                }
                Outcome::NotATrade { .. } => decoded.not_trades += 1,
                Outcome::Dead(_) => decoded.dead += 1,
            }
        }
    }
    decoded.fields_hash = hasher.finish();
    decoded
}
