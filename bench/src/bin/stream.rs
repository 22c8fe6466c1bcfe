//! The dashboard stream's cost per tick with 10k positions: the delta event `/v1/stream`
//! sends (the rows the dataflow's deltas touched since the last tick) against the baseline of
//! resending the whole view each tick, in the same run.
//!
//!   cargo run --release -p eod-bench --bin eod-bench-stream -- --positions 10000 --changed 200

use std::time::Instant;

use clap::Parser;
use eod_dataflow::{MarkSource, Money, PositionView, Touched, ViewSnapshot};
use eod_queries::stream::positions_event;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    positions: usize,
    /// Positions whose P&L moves between two ticks.
    #[arg(long, default_value_t = 200)]
    changed: usize,
    #[arg(long, default_value_t = 400)]
    ticks: usize,
}

fn snapshot(positions: usize) -> ViewSnapshot {
    let mut snapshot = ViewSnapshot::default();
    for i in 0..positions {
        let (trader, symbol) = (format!("TRADER{:02}", i % 50), format!("SYM{:04}", i / 50));
        let row = PositionView {
            trader: trader.as_str().into(),
            symbol: symbol.as_str().into(),
            net_qty: (i as i128 % 97) * 100 - 4_800,
            trades: 1 + i as u64 % 13,
            avg_cost: Some(Money(10_000_000_000 + i as i128 * 1_000_000)),
            mark: Some(Money(10_050_000_000 + i as i128 * 1_000_000)),
            mark_source: Some(MarkSource::LastTrade),
            realized_pnl: Some(Money(0)),
            unrealized_pnl: Some(Money(i as i128 * 5_000_000)),
            total_pnl: Some(Money(i as i128 * 5_000_000)),
        };
        snapshot
            .positions
            .insert((trader.as_str().into(), symbol.as_str().into()), row);
    }
    snapshot
}

fn main() {
    let args = Args::parse();
    let mut old = snapshot(args.positions);
    let mut ticks = Vec::with_capacity(args.ticks);
    for tick in 0..args.ticks {
        let mut new = old.clone();
        let mut touched = Touched::default();
        let keys: Vec<_> = new.positions.keys().cloned().collect();
        for (n, key) in keys.into_iter().enumerate() {
            let Some(row) = new.positions.get_mut(&key) else {
                continue;
            };
            if (n + tick * 7919) % args.positions < args.changed {
                let moved = Money(row.mark.map_or(0, |m| m.0) + 1_000_000);
                row.mark = Some(moved);
                row.total_pnl = Some(Money(row.total_pnl.map_or(0, |p| p.0) + 100_000_000));
                touched.positions.insert(key);
            }
        }
        ticks.push((touched, new.clone()));
        old = new;
    }
    let measure = |full: bool| {
        let started = Instant::now();
        let mut bytes = 0usize;
        for (touched, new) in &ticks {
            let event = positions_event((!full).then_some(touched), new);
            bytes += event.to_string().len();
        }
        (started.elapsed(), bytes)
    };
    let (delta_time, delta_bytes) = measure(false);
    let (full_time, full_bytes) = measure(true);
    let per_tick = |t: std::time::Duration| t.as_secs_f64() * 1e3 / args.ticks as f64;
    println!(
        "eod stream benchmark ({} positions, {} change per tick, {} ticks)",
        args.positions, args.changed, args.ticks
    );
    println!(
        "delta event (what /v1/stream sends)   {:>8.3} ms/tick  {:>9} bytes/tick",
        per_tick(delta_time),
        delta_bytes / args.ticks
    );
    println!(
        "  baseline: whole view every tick    {:>8.3} ms/tick  {:>9} bytes/tick",
        per_tick(full_time),
        full_bytes / args.ticks
    );
    println!(
        "ratio                                 {:>8.1}x less time, {:.1}x fewer bytes",
        full_time.as_secs_f64() / delta_time.as_secs_f64(),
        full_bytes as f64 / delta_bytes as f64
    );
}
