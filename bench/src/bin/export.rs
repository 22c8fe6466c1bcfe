//! Writes an archive's trade events as CSV, for engines that cannot read FIX (the peer
//! comparison in `bench/peers/`). The events come through the same framer and classifier as
//! `eod replay`, so the peers start where eod's dataflow starts: parsing is eod's cost alone.
//!
//!     cargo run --release -p eod-bench --bin eod-bench-export -- --archive arch --out arch.events.csv
//!
//! One row per trade event, in archive order:
//! `kind,exec_id,target,trader,symbol,qty,price` where `kind` is `fill`, `correct` (its row is
//! the replacing execution, `target` the one it replaces) or `bust` (only `exec_id` and
//! `target`), `qty` is signed (buys positive) and `price` an exact decimal.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use eod_dataflow::money::format_fixed;
use eod_dataflow::{Fill, TradeEvent};
use eod_fix::{Classifier, Outcome};
use eod_sources::archive::Archive;
use eod_sources::envelope::to_event;

#[derive(Parser, Debug)]
#[command(about = "export an archive's trade events as CSV")]
struct Args {
    /// Archive directory (as `eod replay --archive`).
    #[arg(long)]
    archive: PathBuf,
    /// CSV file to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let location = args
        .archive
        .to_str()
        .context("archive path is not UTF-8")?
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let archive = Archive::open(&location)?;
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = BufWriter::new(file);
    writeln!(out, "kind,exec_id,target,trader,symbol,qty,price")?;
    let mut classifier = Classifier::new();
    let (mut messages, mut events) = (0u64, 0u64);
    for segment in runtime.block_on(archive.segments())? {
        let bytes = runtime.block_on(archive.read(&segment.key))?;
        for frame in eod_fix::frames(&bytes, eod_fix::DEFAULT_MAX_MESSAGE) {
            messages += 1;
            if let Outcome::Trade(trade) = classifier.classify(&frame) {
                events += 1;
                write_event(&mut out, &to_event(&trade))?;
            }
        }
    }
    out.flush()?;
    eprintln!(
        "{messages} messages, {events} trade events -> {}",
        args.out.display()
    );
    Ok(())
}

fn write_event(out: &mut impl Write, event: &TradeEvent) -> std::io::Result<()> {
    let fill_columns = |out: &mut dyn Write, fill: &Fill| {
        write!(
            out,
            "{},{},{},{}",
            fill.trader.as_str(),
            fill.symbol.as_str(),
            fill.qty,
            format_fixed(i128::from(fill.price))
        )
    };
    match event {
        TradeEvent::Fill(fill) => {
            write!(out, "fill,{},,", fill.exec_id.as_str())?;
            fill_columns(out, fill)?;
        }
        TradeEvent::Correct(correction) => {
            write!(
                out,
                "correct,{},{},",
                correction.fill.exec_id.as_str(),
                correction.target.as_str()
            )?;
            fill_columns(out, &correction.fill)?;
        }
        TradeEvent::Bust(bust) => {
            write!(
                out,
                "bust,{},{},,,,",
                bust.exec_id.as_str(),
                bust.target.as_str()
            )?;
        }
    }
    writeln!(out)
}
