//! A seeded FIX drop-copy simulator: fills and partial fills, busts, corrections, order-status
//! noise, heartbeats, price ticks and, optionally, broken messages, with the 16:00 burst.
//! The same seed always produces the same byte stream.

use std::collections::VecDeque;

use eod_dataflow::{PriceKind, PriceUpdate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use eod_fix::time::{days_from_civil, format_utc_timestamp};
use eod_fix::FixEncoder;

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const TICK: i64 = 1_000_000; // one cent, as a 10^-8 mantissa

/// What to simulate. Rates are messages per simulated second.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub traders: usize,
    pub symbols: usize,
    /// Messages per simulated second outside the burst.
    pub base_rate: f64,
    /// Rate multiplier from `burst_start` for `burst_seconds`.
    pub burst_multiplier: f64,
    /// Simulated clock at the first message, UTC nanoseconds.
    pub start: i64,
    pub burst_start: i64,
    pub burst_seconds: i64,
    /// Fractions of messages (the rest are fills).
    pub bust_ratio: f64,
    pub correct_ratio: f64,
    pub noise_ratio: f64,
    pub price_ratio: f64,
    /// Fraction of deliberately broken messages (bad checksum, missing field, junk).
    pub broken_ratio: f64,
    /// Fraction of fills written as FIX 4.2 rather than 4.4.
    pub fix42_ratio: f64,
}

impl SimConfig {
    /// A trading day 2026-11-25 (UTC = New York + 5h): starts at 15:59:30 local, burst at 16:00.
    pub fn market_close(seed: u64) -> SimConfig {
        let day = days_from_civil(2026, 11, 25) * 86_400 * NANOS_PER_SECOND;
        let close = day + 21 * 3600 * NANOS_PER_SECOND;
        SimConfig {
            seed,
            traders: 20,
            symbols: 50,
            base_rate: 1_000.0,
            burst_multiplier: 10.0,
            start: close - 30 * NANOS_PER_SECOND,
            burst_start: close,
            burst_seconds: 30,
            bust_ratio: 0.01,
            correct_ratio: 0.01,
            noise_ratio: 0.05,
            price_ratio: 0.02,
            broken_ratio: 0.0,
            fix42_ratio: 0.2,
        }
    }
}

/// One simulated input.
#[derive(Clone, Debug, PartialEq)]
pub enum SimEvent {
    /// Raw FIX bytes as the gateway would receive them.
    Fix(Vec<u8>),
    Price(PriceUpdate),
}

/// A simulated event and its simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct SimMessage {
    pub time: i64,
    pub event: SimEvent,
}

struct SymbolState {
    name: String,
    price: i64,
}

struct RecentFill {
    exec_id: String,
    fields: Vec<(u32, String)>,
}

pub struct Simulator {
    config: SimConfig,
    rng: ChaCha8Rng,
    clock: f64,
    seq: u64,
    exec_counter: u64,
    symbols: Vec<SymbolState>,
    traders: Vec<String>,
    recent: VecDeque<RecentFill>,
    opening: VecDeque<SimMessage>,
    closed: bool,
    fix44: FixEncoder,
    fix42: FixEncoder,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Simulator {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let symbols: Vec<SymbolState> = (0..config.symbols.max(1))
            .map(|i| SymbolState {
                name: format!("SYM{i:03}"),
                price: rng.random_range(500..50_000) * TICK,
            })
            .collect();
        let traders = (0..config.traders.max(1))
            .map(|i| format!("TRADER{i:02}"))
            .collect();
        // Every symbol starts with a previous close so positions are marked from the start.
        let opening = symbols
            .iter()
            .map(|s| SimMessage {
                time: config.start,
                event: SimEvent::Price(PriceUpdate {
                    symbol: s.name.as_str().into(),
                    kind: PriceKind::PrevClose,
                    price: s.price,
                    time: config.start,
                }),
            })
            .collect();
        Simulator {
            clock: config.start as f64,
            config,
            rng,
            seq: 0,
            exec_counter: 0,
            symbols,
            traders,
            recent: VecDeque::new(),
            opening,
            closed: false,
            fix44: FixEncoder::new("FIX.4.4"),
            fix42: FixEncoder::new("FIX.4.2"),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn now(&self) -> i64 {
        self.clock as i64
    }

    fn rate_at(&self, time: i64) -> f64 {
        let burst_end = self.config.burst_start + self.config.burst_seconds * NANOS_PER_SECOND;
        if (self.config.burst_start..burst_end).contains(&time) {
            self.config.base_rate * self.config.burst_multiplier
        } else {
            self.config.base_rate
        }
    }

    fn next_exec_id(&mut self) -> String {
        self.exec_counter += 1;
        format!("X{:010}", self.exec_counter)
    }

    fn header(&mut self) -> Vec<(u32, String)> {
        self.seq += 1;
        vec![
            (49, "EXCH".into()),
            (56, "EOD".into()),
            (34, self.seq.to_string()),
            (52, format_utc_timestamp(self.now())),
        ]
    }

    fn encode(&self, fix42: bool, msg_type: &str, fields: &[(u32, String)]) -> Vec<u8> {
        let borrowed: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
        let encoder = if fix42 { &self.fix42 } else { &self.fix44 };
        encoder.message(msg_type, &borrowed)
    }

    fn fill(&mut self) -> Vec<u8> {
        let exec_id = self.next_exec_id();
        let symbol_index = self.rng.random_range(0..self.symbols.len());
        let step = self.rng.random_range(-3..=3) * TICK;
        let symbol = &mut self.symbols[symbol_index];
        symbol.price = (symbol.price + step).max(TICK);
        let (name, price) = (symbol.name.clone(), symbol.price);
        let trader = self.traders[self.rng.random_range(0..self.traders.len())].clone();
        let qty = self.rng.random_range(1..=50) * 100;
        let side = if self.rng.random_bool(0.5) { "1" } else { "2" };
        let partial = self.rng.random_bool(0.3);
        let fix42 = self.rng.random_bool(self.config.fix42_ratio);
        let mut fields = self.header();
        let body = vec![
            (37, format!("O{}", self.exec_counter)),
            (17, exec_id.clone()),
            (39, if partial { "1" } else { "2" }.to_string()),
            (55, name),
            (54, side.to_string()),
            (32, qty.to_string()),
            (31, eod_proto::decimal::format_fixed(i128::from(price))),
            (60, format_utc_timestamp(self.now())),
            (1, format!("ACC-{trader}")),
            (453, "1".into()),
            (448, trader),
            (447, "D".into()),
            (452, "12".into()),
        ];
        if fix42 {
            fields.extend([
                (20, "0".into()),
                (150, if partial { "1" } else { "2" }.into()),
            ]);
        } else {
            fields.push((150, "F".into()));
        }
        fields.extend(body.iter().cloned());
        self.recent.push_back(RecentFill {
            exec_id,
            fields: body,
        });
        if self.recent.len() > 1000 {
            self.recent.pop_front();
        }
        self.encode(fix42, "8", &fields)
    }

    fn bust(&mut self) -> Option<Vec<u8>> {
        let index = self.rng.random_range(0..self.recent.len().max(1));
        let target = self.recent.remove(index)?;
        let exec_id = self.next_exec_id();
        let fix42 = self.rng.random_bool(self.config.fix42_ratio);
        let mut fields = self.header();
        if fix42 {
            fields.extend([(20, "1".into()), (150, "2".into())]);
        } else {
            fields.push((150, "H".into()));
        }
        let now = format_utc_timestamp(self.now());
        fields.extend([(17, exec_id), (19, target.exec_id), (60, now)]);
        Some(self.encode(fix42, "8", &fields))
    }

    fn correct(&mut self) -> Option<Vec<u8>> {
        let index = self.rng.random_range(0..self.recent.len().max(1));
        let target = self.recent.remove(index)?;
        let exec_id = self.next_exec_id();
        let mut body = target.fields.clone();
        for (tag, value) in body.iter_mut() {
            match *tag {
                17 => *value = exec_id.clone(),
                32 => *value = (self.rng.random_range(1..=50) * 100).to_string(),
                60 => *value = format_utc_timestamp(self.now()),
                _ => {}
            }
        }
        let mut fields = self.header();
        fields.push((150, "G".into()));
        fields.push((19, target.exec_id));
        fields.extend(body.iter().cloned());
        self.recent.push_back(RecentFill {
            exec_id,
            fields: body,
        });
        Some(self.encode(false, "8", &fields))
    }

    fn noise(&mut self) -> Vec<u8> {
        let mut fields = self.header();
        if self.rng.random_bool(0.3) {
            return self.encode(false, "0", &fields);
        }
        let exec_id = self.next_exec_id();
        let symbol = self.symbols[self.rng.random_range(0..self.symbols.len())]
            .name
            .clone();
        let (exec_type, status) = [("0", "0"), ("4", "4"), ("5", "5"), ("8", "8"), ("D", "0")]
            [self.rng.random_range(0..5)];
        fields.extend([
            (37, format!("O{}", self.exec_counter)),
            (17, exec_id),
            (150, exec_type.into()),
            (39, status.into()),
            (55, symbol),
            (54, "1".into()),
        ]);
        self.encode(false, "8", &fields)
    }

    fn broken(&mut self) -> Vec<u8> {
        match self.rng.random_range(0..3) {
            0 => {
                let mut message = self.fill();
                self.recent.pop_back();
                eod_fix::break_checksum(&mut message);
                message
            }
            1 => {
                let mut fields = self.header();
                fields.extend([
                    (150, "F".into()),
                    (17, self.next_exec_id()),
                    (55, "SYM000".into()),
                ]);
                self.encode(false, "8", &fields)
            }
            _ => b"GARBAGE\x01NOT\x01FIX\x01".to_vec(),
        }
    }

    fn price(&mut self) -> SimEvent {
        let symbol = &self.symbols[self.rng.random_range(0..self.symbols.len())];
        let half_spread = TICK * 2;
        let kind = if self.now()
            >= self.config.burst_start + self.config.burst_seconds * NANOS_PER_SECOND / 2
            && self.rng.random_bool(0.2)
        {
            PriceKind::OfficialClose
        } else if self.rng.random_bool(0.5) {
            PriceKind::Bid
        } else {
            PriceKind::Ask
        };
        let price = match kind {
            PriceKind::Bid => (symbol.price - half_spread).max(TICK),
            PriceKind::Ask => symbol.price + half_spread,
            _ => symbol.price,
        };
        SimEvent::Price(PriceUpdate {
            symbol: symbol.name.as_str().into(),
            kind,
            price,
            time: self.now(),
        })
    }
}

impl Iterator for Simulator {
    type Item = SimMessage;

    fn next(&mut self) -> Option<SimMessage> {
        if let Some(opening) = self.opening.pop_front() {
            return Some(opening);
        }
        if self.closed {
            return None;
        }
        let time = self.now();
        let draw: f64 = self.rng.random();
        let c = &self.config;
        let (bust, correct, noise, price, broken) = (
            c.bust_ratio,
            c.correct_ratio,
            c.noise_ratio,
            c.price_ratio,
            c.broken_ratio,
        );
        let event = if draw < bust {
            self.bust()
                .map(SimEvent::Fix)
                .unwrap_or_else(|| SimEvent::Fix(self.fill()))
        } else if draw < bust + correct {
            self.correct()
                .map(SimEvent::Fix)
                .unwrap_or_else(|| SimEvent::Fix(self.fill()))
        } else if draw < bust + correct + noise {
            SimEvent::Fix(self.noise())
        } else if draw < bust + correct + noise + price {
            self.price()
        } else if draw < bust + correct + noise + price + broken {
            SimEvent::Fix(self.broken())
        } else {
            SimEvent::Fix(self.fill())
        };
        self.clock += 1e9 / self.rate_at(time).max(1e-9);
        if self.clock >= i64::MAX as f64 {
            self.closed = true;
        }
        Some(SimMessage { time, event })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eod_fix::{Decoded, Decoder, Framed};

    #[test]
    fn same_seed_same_stream() {
        let a: Vec<_> = Simulator::new(SimConfig::market_close(7))
            .take(500)
            .collect();
        let b: Vec<_> = Simulator::new(SimConfig::market_close(7))
            .take(500)
            .collect();
        let c: Vec<_> = Simulator::new(SimConfig::market_close(8))
            .take(500)
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn every_message_frames_and_decodes() {
        let mut config = SimConfig::market_close(1);
        config.bust_ratio = 0.05;
        config.correct_ratio = 0.05;
        let mut decoder = Decoder::new();
        let (mut trades, mut other) = (0, 0);
        for message in Simulator::new(config).take(3000) {
            let SimEvent::Fix(bytes) = message.event else {
                continue;
            };
            let Some(Framed::Message { bytes, .. }) =
                eod_fix::frames(&bytes, eod_fix::DEFAULT_MAX_MESSAGE).next()
            else {
                panic!("simulator produced an unframeable message")
            };
            match decoder.decode(bytes).expect("simulator messages decode") {
                Decoded::Trade(_) => trades += 1,
                Decoded::NotATrade { .. } => other += 1,
            }
        }
        assert!(
            trades > 2000 && other > 50,
            "{trades} trades, {other} others"
        );
    }

    #[test]
    fn burst_is_ten_times_denser() {
        let config = SimConfig::market_close(3);
        let burst_start = config.burst_start;
        let times: Vec<i64> = Simulator::new(config)
            .take(200_000)
            .map(|m| m.time)
            .collect();
        let count = |from: i64| {
            times
                .iter()
                .filter(|t| (from..from + NANOS_PER_SECOND).contains(t))
                .count()
        };
        let before = count(burst_start - 2 * NANOS_PER_SECOND);
        let during = count(burst_start + NANOS_PER_SECOND);
        assert!(during >= before * 9, "before {before}, during {during}");
    }
}
