//! `eod generate`.

use super::options::*;
use anyhow::Result;
use clap::Args;
use eod_runtime::generate::generate_archive;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct GenerateArgs {
    /// Directory to write FIX segments into; the prices CSV is written beside it.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Simulator events to generate (FIX messages and price updates).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) messages: u64,
    #[command(flatten)]
    pub(crate) market: MarketArgs,
    /// Fraction of deliberately broken messages.
    #[arg(long, default_value_t = 0.001)]
    pub(crate) broken_ratio: f64,
    /// Approximate size of each FIX segment in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    pub(crate) segment_bytes: usize,
}

pub(crate) fn generate(args: GenerateArgs) -> Result<()> {
    let mut sim = args.market.sim_config();
    sim.broken_ratio = args.broken_ratio.clamp(0.0, 1.0);
    let archive = generate_archive(&args.out, sim, args.messages, args.segment_bytes.max(1024))?;
    println!(
        "wrote {} FIX messages in {} segments to {} and {} prices to {}",
        archive.fix_messages,
        archive.segments,
        archive.dir.display(),
        archive.price_updates,
        archive.prices.display()
    );
    Ok(())
}
