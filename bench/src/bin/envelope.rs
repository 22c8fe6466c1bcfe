//! A trade envelope's two ends, per record: the gateway's encode and a live worker's decode,
//! prost's owned `TradeEnvelope` against `BorrowedEnvelope` (read and written in place), over
//! the same simulator trades in one process.
//!
//!     cargo run --release -p eod-bench --bin eod-bench-envelope -- --messages 500000

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use clap::Parser;
use eod_fix::{check_envelope, CheckedTrade, Classifier, Outcome};
use eod_proto::borrowed::{BorrowedArchiveRef, BorrowedEnvelope};
use eod_proto::{ArchiveRef, TradeEnvelope};
use eod_sources::envelope::{event_from_bytes, to_event};
use eod_sources::simulator::{SimConfig, SimEvent, Simulator};
use prost::Message;

#[derive(Parser, Debug)]
struct Args {
    /// Simulator messages to take the trades from.
    #[arg(long, default_value_t = 500_000)]
    messages: usize,
    /// Rounds of the four timings, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

const OBJECT_KEY: &str = "bench/20261125/segment-000001.fix";

fn main() -> Result<()> {
    let args = Args::parse();
    let mut sim = SimConfig::market_close(7);
    sim.price_ratio = 0.0;
    let fix: Vec<Vec<u8>> = Simulator::new(sim)
        .take(args.messages)
        .filter_map(|message| match message.event {
            SimEvent::Fix(bytes) => Some(bytes),
            SimEvent::Price(_) => None,
        })
        .collect();
    let mut classifier = Classifier::new();
    let mut trades: Vec<(CheckedTrade<'_>, &[u8])> = Vec::new();
    for bytes in &fix {
        for frame in eod_fix::frames(bytes, eod_fix::DEFAULT_MAX_MESSAGE) {
            if let Outcome::Trade(trade) = classifier.classify(&frame) {
                trades.push((trade, frame.bytes()));
            }
        }
    }
    let records: Vec<Vec<u8>> = trades
        .iter()
        .enumerate()
        .map(|(at, (trade, raw))| {
            let mut record = Vec::new();
            borrowed_envelope(trade, raw, at).encode(&mut record);
            record
        })
        .collect();
    for (at, (trade, raw)) in trades.iter().enumerate() {
        ensure!(
            records[at] == owned_envelope(trade, raw, at).encode_to_vec(),
            "the two encodings differ"
        );
    }
    println!(
        "{} trades; per path: owned (prost) / borrowed",
        trades.len()
    );
    for round in 1..=args.rounds {
        let mut record = Vec::new();
        let encode_owned = timed(|| {
            for (at, (trade, raw)) in trades.iter().enumerate() {
                record.clear();
                owned_envelope(trade, raw, at).encode(&mut record)?;
                std::hint::black_box(&record);
            }
            Ok(())
        })?;
        let encode_borrowed = timed(|| {
            for (at, (trade, raw)) in trades.iter().enumerate() {
                record.clear();
                borrowed_envelope(trade, raw, at).encode(&mut record);
                std::hint::black_box(&record);
            }
            Ok(())
        })?;
        let decode_owned = timed(|| {
            for record in &records {
                let envelope = TradeEnvelope::decode(record.as_slice())?;
                let checked =
                    check_envelope(&(&envelope).into()).map_err(|r| anyhow::anyhow!(r.detail))?;
                std::hint::black_box((to_event(&checked), &envelope.source));
            }
            Ok(())
        })?;
        let decode_borrowed = timed(|| {
            for record in &records {
                let received = event_from_bytes(record).map_err(|r| anyhow::anyhow!(r.detail))?;
                std::hint::black_box(received);
            }
            Ok(())
        })?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "round {round}: encode (gateway) {:.1} / {:.1} ms, {:.2}x; decode, check, event (worker) {:.1} / {:.1} ms, {:.2}x",
            ms(encode_owned),
            ms(encode_borrowed),
            encode_borrowed.as_secs_f64() / encode_owned.as_secs_f64(),
            ms(decode_owned),
            ms(decode_borrowed),
            decode_borrowed.as_secs_f64() / decode_owned.as_secs_f64(),
        );
    }
    Ok(())
}

fn timed(work: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let started = Instant::now();
    work()?;
    Ok(started.elapsed())
}

/// What the gateway published before 2026-12-06 (tenth session): an owned envelope.
fn owned_envelope(trade: &CheckedTrade<'_>, raw: &[u8], at: usize) -> TradeEnvelope {
    let mut envelope = trade.to_envelope();
    envelope.receive_time = 1_764_104_400_000_000_000;
    envelope.gateway_id = "bench".into();
    envelope.source = Some(ArchiveRef {
        object_key: OBJECT_KEY.into(),
        offset: at as u64 * 256,
        length: raw.len() as u32,
    });
    envelope.raw_fix = raw.to_vec();
    envelope
}

/// What the gateway publishes: the same envelope, borrowing its text.
fn borrowed_envelope<'a>(
    trade: &'a CheckedTrade<'_>,
    raw: &'a [u8],
    at: usize,
) -> BorrowedEnvelope<'a> {
    BorrowedEnvelope {
        raw_fix: raw,
        receive_time: 1_764_104_400_000_000_000,
        gateway_id: "bench",
        source: Some(BorrowedArchiveRef {
            object_key: OBJECT_KEY,
            offset: at as u64 * 256,
            length: raw.len() as u32,
        }),
        ..trade.borrowed_envelope()
    }
}
