//! Writes a simulated archive: FIX segments (bounded in size, named in replay order) and the
//! matching prices CSV. Used by the benchmark, the integration tests and anyone trying eod out.

use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use eod_sources::prices::kind_name;
use eod_sources::reference_data::{securities_csv, simulated_reference, traders_csv};
use eod_sources::simulator::{SimConfig, SimEvent, Simulator};

pub struct GeneratedArchive {
    pub dir: PathBuf,
    pub prices: PathBuf,
    /// Reference data for the simulated traders and symbols, beside the archive.
    pub traders: PathBuf,
    pub securities: PathBuf,
    pub segments: usize,
    pub fix_messages: u64,
    pub price_updates: u64,
}

/// Generates `messages` simulator events into `dir` (FIX into `segment-NNNNN.fix` files of about
/// `segment_bytes`, prices into `<dir>.prices.csv` beside it, reference data into
/// `<dir>.traders.csv` and `<dir>.securities.csv`).
pub fn generate_archive(
    dir: &Path,
    config: SimConfig,
    messages: u64,
    segment_bytes: usize,
) -> Result<GeneratedArchive> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let prices_path = dir.with_extension("prices.csv");
    let (traders, securities) = simulated_reference(&config);
    let traders_path = dir.with_extension("traders.csv");
    let securities_path = dir.with_extension("securities.csv");
    fs::write(&traders_path, traders_csv(&traders))
        .with_context(|| format!("writing {}", traders_path.display()))?;
    fs::write(&securities_path, securities_csv(&securities))
        .with_context(|| format!("writing {}", securities_path.display()))?;
    let mut prices = String::from("symbol,kind,price\n");
    let mut segment = Vec::with_capacity(segment_bytes + 4096);
    let (mut segments, mut fix_messages, mut price_updates) = (0usize, 0u64, 0u64);
    let flush = |segment: &mut Vec<u8>, segments: &mut usize| -> Result<()> {
        if segment.is_empty() {
            return Ok(());
        }
        let path = dir.join(format!("segment-{:05}.fix", *segments));
        fs::write(&path, &segment).with_context(|| format!("writing {}", path.display()))?;
        *segments += 1;
        segment.clear();
        Ok(())
    };
    for message in Simulator::new(config).take(messages as usize) {
        match message.event {
            SimEvent::Fix(bytes) => {
                segment.extend_from_slice(&bytes);
                // Real drop-copy logs mix both styles; the framer must not care.
                if fix_messages % 2 == 0 {
                    segment.push(b'\n');
                }
                fix_messages += 1;
                if segment.len() >= segment_bytes {
                    flush(&mut segment, &mut segments)?;
                }
            }
            SimEvent::Price(update) => {
                let _ = writeln!(
                    prices,
                    "{},{},{}",
                    update.symbol,
                    kind_name(update.kind),
                    eod_dataflow::money::format_fixed(i128::from(update.price))
                );
                price_updates += 1;
            }
        }
    }
    flush(&mut segment, &mut segments)?;
    fs::write(&prices_path, prices)
        .with_context(|| format!("writing {}", prices_path.display()))?;
    Ok(GeneratedArchive {
        dir: dir.to_owned(),
        prices: prices_path,
        traders: traders_path,
        securities: securities_path,
        segments,
        fix_messages,
        price_updates,
    })
}
