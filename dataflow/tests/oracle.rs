//! Property test: the incremental dataflow equals a from-scratch recomputation over the same
//! input at every completed time, whatever the order, batching and number of workers.
//!
//! The oracle below is deliberately naive: it rebuilds everything from the full input prefix
//! with `rust_decimal` arithmetic, sharing no code with the dataflow but the input types.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use eod_dataflow::{
    build_graph, BookKind, BookRow, BookStatus, BooksRestore, Bust, Correction, Fill, GraphOptions,
    Inputs, MarkSource, Money, PositionView, PriceKind, PriceUpdate, RowLinks, SecurityRef,
    SourceAt, Text, Totals, TradeEvent, TradeSource, TraderRef, Unmatched, ViewSnapshot, ViewStore,
};
use proptest::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};

#[derive(Clone, Debug)]
enum Input {
    Trade(TradeEvent),
    Price(PriceUpdate),
    Source(TradeSource),
    Trader(TraderRef),
    /// A reference record withdrawn (an update is a withdrawal plus a new record).
    TraderWithdrawn(TraderRef),
    Security(SecurityRef),
}

// ---------------------------------------------------------------- oracle

fn dec(mantissa: i64) -> Decimal {
    Decimal::from_i128_with_scale(i128::from(mantissa), 8)
}

fn money(value: Decimal) -> Money {
    let scaled = value * Decimal::from(100_000_000i64);
    assert_eq!(
        scaled.fract(),
        Decimal::ZERO,
        "oracle produced more than 8 decimals: {value}"
    );
    Money(scaled.trunc().mantissa() / 10i128.pow(scaled.trunc().scale()))
}

fn round8(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(8, RoundingStrategy::MidpointNearestEven)
}

struct Expected {
    positions: BTreeMap<(Text, Text), PositionView>,
    traders: BTreeMap<Text, Totals>,
    firm: Option<Totals>,
    unmatched: BTreeSet<Unmatched>,
}

fn oracle(inputs: &[Input]) -> Expected {
    let mut fills: BTreeMap<Text, Vec<Fill>> = BTreeMap::new();
    let mut corrections: BTreeMap<Text, Vec<(Text, Fill)>> = BTreeMap::new();
    let mut busts: BTreeSet<(Text, Text)> = BTreeSet::new();
    let mut prices: BTreeMap<(Text, PriceKind), (i64, i64)> = BTreeMap::new();
    for input in inputs {
        match input {
            Input::Trade(TradeEvent::Fill(f)) => {
                fills.entry(f.exec_id.clone()).or_default().push(f.clone())
            }
            Input::Trade(TradeEvent::Correct(c)) => corrections
                .entry(c.fill.exec_id.clone())
                .or_default()
                .push((c.target.clone(), c.fill.clone())),
            Input::Trade(TradeEvent::Bust(b)) => {
                busts.insert((b.exec_id.clone(), b.target.clone()));
            }
            Input::Source(_)
            | Input::Trader(_)
            | Input::TraderWithdrawn(_)
            | Input::Security(_) => {}
            Input::Price(p) => {
                let slot = prices
                    .entry((p.symbol.clone(), p.kind))
                    .or_insert((p.time, p.price));
                *slot = (*slot).max((p.time, p.price));
            }
        }
    }
    // Killed: named by any bust or any correction.
    let mut killed: BTreeSet<Text> = busts.iter().map(|(_, t)| t.clone()).collect();
    for list in corrections.values() {
        killed.extend(list.iter().map(|(t, _)| t.clone()));
    }
    // Present corrections: least fixed point of "target is an arrived fill or present correction".
    let mut present: BTreeSet<Text> = BTreeSet::new();
    loop {
        let before = present.len();
        for (id, list) in &corrections {
            if list
                .iter()
                .any(|(t, _)| fills.contains_key(t) || present.contains(t))
            {
                present.insert(id.clone());
            }
        }
        if present.len() == before {
            break;
        }
    }
    let mut live: Vec<Fill> = Vec::new();
    for (id, list) in &fills {
        if !killed.contains(id) {
            live.push(list.iter().min().unwrap().clone());
        }
    }
    let mut unmatched = BTreeSet::new();
    for (id, list) in &corrections {
        let (target, fill) = list.iter().min().unwrap();
        if !present.contains(id) {
            unmatched.insert(Unmatched {
                kind: "correction".into(),
                exec_id: id.clone(),
                target: target.clone(),
            });
        } else if !killed.contains(id) {
            live.push(fill.clone());
        }
    }
    for (bust, target) in &busts {
        if !fills.contains_key(target) && !present.contains(target) {
            unmatched.insert(Unmatched {
                kind: "bust".into(),
                exec_id: bust.clone(),
                target: target.clone(),
            });
        }
    }

    // Last traded price per symbol: the live fill with the greatest (TransactTime, ExecID).
    let mut last_trade: BTreeMap<Text, (i64, Text, i64)> = BTreeMap::new();
    for f in &live {
        let candidate = (f.transact_time, f.exec_id.clone(), f.price);
        let slot = last_trade
            .entry(f.symbol.clone())
            .or_insert(candidate.clone());
        if (candidate.0, &candidate.1) > (slot.0, &slot.1) {
            *slot = candidate;
        }
    }
    let mark_of = |symbol: &str| -> Option<(Decimal, MarkSource)> {
        let price = |kind| {
            prices
                .get(&(Text::from(symbol), kind))
                .map(|(_, p)| dec(*p))
        };
        if let Some(p) = price(PriceKind::OfficialClose) {
            return Some((p, MarkSource::OfficialClose));
        }
        if let Some((_, _, p)) = last_trade.get(symbol) {
            return Some((dec(*p), MarkSource::LastTrade));
        }
        if let (Some(b), Some(a)) = (price(PriceKind::Bid), price(PriceKind::Ask)) {
            return Some((round8((b + a) / Decimal::TWO), MarkSource::Mid));
        }
        price(PriceKind::PrevClose).map(|p| (p, MarkSource::PrevClose))
    };

    let mut by_position: BTreeMap<(Text, Text), Vec<&Fill>> = BTreeMap::new();
    for f in &live {
        by_position
            .entry((f.trader.clone(), f.symbol.clone()))
            .or_default()
            .push(f);
    }
    let mut positions = BTreeMap::new();
    for ((trader, symbol), mut list) in by_position {
        list.sort_by(|a, b| (a.transact_time, &a.exec_id).cmp(&(b.transact_time, &b.exec_id)));
        let (mut net, mut cash, mut open, mut avg, mut realized) = (
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
        );
        for f in &list {
            let q = Decimal::from(f.qty);
            let p = dec(f.price);
            net += q;
            cash -= q * p;
            if open.is_zero() || open.is_sign_positive() == q.is_sign_positive() {
                avg = round8((avg * open.abs() + p * q.abs()) / (open.abs() + q.abs()));
                open += q;
            } else {
                let closed = q.abs().min(open.abs());
                let sign = if open.is_sign_positive() {
                    Decimal::ONE
                } else {
                    Decimal::NEGATIVE_ONE
                };
                realized += closed * (p - avg) * sign;
                let was_long = open.is_sign_positive();
                open += q;
                if open.is_zero() {
                    avg = Decimal::ZERO;
                } else if open.is_sign_positive() != was_long {
                    avg = p;
                }
            }
        }
        let mark = mark_of(&symbol);
        let total = mark.map(|(m, _)| cash + net * m);
        let row = PositionView {
            trader: trader.clone(),
            symbol: symbol.clone(),
            net_qty: net.mantissa(),
            trades: list.len() as u64,
            avg_cost: (!open.is_zero()).then(|| money(avg)),
            mark: mark.map(|(m, _)| money(m)),
            mark_source: mark.map(|(_, s)| s),
            realized_pnl: total.map(|_| money(realized)),
            unrealized_pnl: total.map(|t| money(t - realized)),
            total_pnl: total.map(money),
        };
        positions.insert((trader, symbol), row);
    }

    let mut traders: BTreeMap<Text, Totals> = BTreeMap::new();
    let mut grouped: BTreeMap<Text, Vec<&PositionView>> = BTreeMap::new();
    for row in positions.values() {
        grouped.entry(row.trader.clone()).or_default().push(row);
    }
    for (trader, rows) in grouped {
        traders.insert(trader, naive_totals(&rows));
    }
    let all: Vec<&PositionView> = positions.values().collect();
    let firm = (!all.is_empty()).then(|| naive_totals(&all));
    Expected {
        positions,
        traders,
        firm,
        unmatched,
    }
}

fn naive_totals(rows: &[&PositionView]) -> Totals {
    let marked: Vec<_> = rows.iter().filter(|r| r.total_pnl.is_some()).collect();
    let sum = |f: fn(&PositionView) -> Option<Money>| {
        (!marked.is_empty()).then(|| Money(marked.iter().map(|r| f(r).unwrap().0).sum()))
    };
    Totals {
        positions: rows.len() as u64,
        unmarked_positions: (rows.len() - marked.len()) as u64,
        trades: rows.iter().map(|r| r.trades).sum(),
        realized_pnl: sum(|r| r.realized_pnl),
        unrealized_pnl: sum(|r| r.unrealized_pnl),
        total_pnl: sum(|r| r.total_pnl),
    }
}

/// The books from scratch: one row per ExecID that carries a trade, the smallest record
/// winning among duplicates, the earliest bust or correction deciding its status.
fn books_oracle(inputs: &[Input]) -> BTreeMap<Text, BookRow> {
    let mut trades: BTreeMap<Text, (BookKind, Option<Text>, Fill)> = BTreeMap::new();
    let mut kills: BTreeMap<Text, (i64, Text, BookStatus)> = BTreeMap::new();
    let mut sources: BTreeMap<Text, TradeSource> = BTreeMap::new();
    // Reference records with their counts: a withdrawal lets the next smallest record win.
    let mut traders: BTreeMap<Text, BTreeMap<TraderRef, i64>> = BTreeMap::new();
    let mut securities: BTreeMap<Text, BTreeMap<SecurityRef, i64>> = BTreeMap::new();
    let mut fill_ids = BTreeSet::new();
    let mut edges: Vec<(Text, Text)> = Vec::new();
    fn keep_min<K: Ord, V: Ord>(map: &mut BTreeMap<K, V>, key: K, value: V) {
        match map.get(&key) {
            Some(existing) if *existing <= value => {}
            _ => {
                map.insert(key, value);
            }
        }
    }
    for input in inputs {
        match input {
            Input::Trade(TradeEvent::Fill(f)) => {
                fill_ids.insert(f.exec_id.clone());
                keep_min(
                    &mut trades,
                    f.exec_id.clone(),
                    (BookKind::Fill, None, f.clone()),
                );
            }
            Input::Trade(TradeEvent::Correct(c)) => {
                edges.push((c.target.clone(), c.fill.exec_id.clone()));
                let id = c.fill.exec_id.clone();
                keep_min(
                    &mut trades,
                    id.clone(),
                    (BookKind::Correction, Some(c.target.clone()), c.fill.clone()),
                );
                let kill = (c.fill.transact_time, id, BookStatus::Corrected);
                keep_min(&mut kills, c.target.clone(), kill);
            }
            Input::Trade(TradeEvent::Bust(b)) => {
                let kill = (b.transact_time, b.exec_id.clone(), BookStatus::Busted);
                keep_min(&mut kills, b.target.clone(), kill);
            }
            Input::Source(source) => keep_min(&mut sources, source.exec_id.clone(), source.clone()),
            Input::Trader(t) => {
                *traders
                    .entry(t.trader_id.clone())
                    .or_default()
                    .entry(t.clone())
                    .or_default() += 1
            }
            Input::TraderWithdrawn(t) => {
                *traders
                    .entry(t.trader_id.clone())
                    .or_default()
                    .entry(t.clone())
                    .or_default() -= 1
            }
            Input::Security(sec) => {
                *securities
                    .entry(sec.symbol.clone())
                    .or_default()
                    .entry(sec.clone())
                    .or_default() += 1
            }
            Input::Price(_) => {}
        }
    }
    let mut present: BTreeSet<Text> = BTreeSet::new();
    loop {
        let before = present.len();
        for (target, correction) in &edges {
            if fill_ids.contains(target) || present.contains(target) {
                present.insert(correction.clone());
            }
        }
        if present.len() == before {
            break;
        }
    }
    trades
        .into_iter()
        .map(|(id, (kind, corrects, fill))| {
            let kill = kills.get(&id);
            let status = match (kill, kind) {
                (Some((_, _, status)), _) => *status,
                (None, BookKind::Correction) if !present.contains(&id) => BookStatus::Pending,
                (None, _) => BookStatus::Live,
            };
            let row = BookRow {
                exec_id: id.clone(),
                kind,
                links: RowLinks::boxed(
                    corrects,
                    kill.map(|(_, by, _)| by.clone()),
                    kill.map(|(time, _, _)| *time),
                ),
                trader_ref: smallest_present(traders.get(&fill.trader)),
                security_ref: smallest_present(securities.get(&fill.symbol)),
                trader: fill.trader,
                symbol: fill.symbol,
                qty: fill.qty,
                price: fill.price,
                transact_time: fill.transact_time,
                status,
                source: sources.get(&id).cloned().map(SourceAt::from),
            };
            (id, row)
        })
        .collect()
}

/// The smallest record a key still holds (count above zero), if any.
fn smallest_present<R: Clone>(records: Option<&BTreeMap<R, i64>>) -> Option<std::sync::Arc<R>> {
    let (record, _) = records?.iter().find(|(_, count)| **count > 0)?;
    Some(std::sync::Arc::new(record.clone()))
}

// ---------------------------------------------------------------- dataflow under test

/// Runs the dataflow over `epochs` (each a batch of inputs) and returns the published snapshot
/// after each epoch completes.
fn run_dataflow(epochs: Vec<Vec<Input>>, workers: usize) -> Vec<ViewSnapshot> {
    run_with_books(epochs, workers, true).0
}

type BookUpdates = Vec<(BookRow, u64, isize)>;

/// Also returns every update of the books collection, with its time. With `each_epoch`
/// false, every epoch is entered before the dataflow runs (so many times complete at once),
/// and only the final snapshot is returned.
fn run_with_books(
    epochs: Vec<Vec<Input>>,
    workers: usize,
    each_epoch: bool,
) -> (Vec<ViewSnapshot>, BookUpdates) {
    run_with_books_stored_before(epochs, workers, each_epoch, 0, 0)
}

/// [`run_with_books`] with the books rows of times before `stored_before` held by the store
/// already (a restore from a snapshot). As `eod run` restores, the trades and sources of those
/// times reach the books through [`Inputs::restore_books`], here after
/// `books_restore_after` more epochs have been entered.
fn run_with_books_stored_before(
    epochs: Vec<Vec<Input>>,
    workers: usize,
    each_epoch: bool,
    stored_before: u64,
    books_restore_after: usize,
) -> (Vec<ViewSnapshot>, BookUpdates) {
    let epochs = Arc::new(epochs);
    let store = ViewStore::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let book_updates = Arc::new(Mutex::new(Vec::new()));
    let (store_w, seen_w, books_w) = (store.clone(), seen.clone(), book_updates.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let leader = index == 0;
        let store = leader.then(|| store_w.clone());
        let books_w = books_w.clone();
        let (mut inputs, probe) = worker.dataflow(|scope| {
            let options = GraphOptions {
                store,
                workers_per_process: peers,
                books: true,
                books_stored_before: stored_before,
            };
            let graph = build_graph(scope, options);
            if let Some(books) = graph.books {
                books.inspect(move |(row, time, diff)| {
                    books_w.lock().unwrap().push((row.clone(), *time, *diff))
                });
            }
            (graph.inputs, graph.probe)
        });
        let mut next = 0usize;
        let mut followed = ViewSnapshot::default();
        let mut followed_version = 0;
        let mut books_backlog = Vec::new();
        let books_restore_at = stored_before as usize + books_restore_after;
        let restore_books = |inputs: &mut Inputs, backlog: &mut Vec<BooksRestore>| {
            for record in backlog.drain(..) {
                inputs.restore_books(record);
            }
            inputs.books_restored();
        };
        for (epoch, batch) in epochs.iter().enumerate() {
            if epoch == books_restore_at {
                restore_books(&mut inputs, &mut books_backlog);
            }
            let restored = (epoch as u64) < stored_before;
            for input in batch {
                if next % peers == index {
                    match input.clone() {
                        Input::Trade(event) if restored => {
                            books_backlog.push(BooksRestore::Event(event.clone()));
                            inputs.event(event);
                        }
                        Input::Source(source) if restored => {
                            books_backlog.push(BooksRestore::Source(source));
                        }
                        Input::Trade(event) => inputs.event(event),
                        Input::Price(update) => inputs.price(update),
                        Input::Source(source) => inputs.source(source),
                        Input::Trader(trader) => inputs.trader(trader, 1),
                        Input::TraderWithdrawn(trader) => inputs.trader(trader, -1),
                        Input::Security(security) => inputs.security(security, 1),
                    }
                }
                next += 1;
            }
            let done = epoch as u64 + 1;
            inputs.advance_to(done);
            inputs.flush();
            if !each_epoch && done < epochs.len() as u64 {
                continue;
            }
            worker.step_while(|| probe.less_than(&done));
            if leader {
                while store_w.snapshot().as_of.time < done {
                    worker.step();
                }
                // A follower that applies only the deltas holds the same views as the store.
                let update = store_w.since(followed_version);
                let deltas = update
                    .deltas
                    .expect("every delta since the last epoch is kept");
                for delta in &deltas {
                    delta.apply_to(&mut followed);
                }
                followed_version = update.version;
                assert_eq!(followed.positions, update.snapshot.positions);
                assert_eq!(followed.traders, update.snapshot.traders);
                assert_eq!(followed.firm, update.snapshot.firm);
                assert_eq!(followed.unmatched, update.snapshot.unmatched);
                assert_eq!(followed.accounting, update.snapshot.accounting);
                seen_w.lock().unwrap().push((*update.snapshot).clone());
            }
        }
        if books_restore_at >= epochs.len() {
            restore_books(&mut inputs, &mut books_backlog);
        }
    })
    .expect("timely runs");
    let snapshots = seen.lock().unwrap().clone();
    let books = book_updates.lock().unwrap().clone();
    (snapshots, books)
}

/// The books as of (before) `time`: every row's accumulated count must be exactly one.
fn books_at(updates: &BookUpdates, time: u64) -> BTreeMap<Text, BookRow> {
    let mut counts: BTreeMap<BookRow, isize> = BTreeMap::new();
    for (row, t, diff) in updates {
        if *t < time {
            *counts.entry(row.clone()).or_default() += diff;
        }
    }
    let mut rows = BTreeMap::new();
    for (row, count) in counts {
        assert!(
            count == 0 || count == 1,
            "book row {row:?} counted {count} times"
        );
        if count == 1 {
            let previous = rows.insert(row.exec_id.clone(), row);
            assert!(previous.is_none(), "two versions of one ExecID");
        }
    }
    rows
}

// ---------------------------------------------------------------- generators

const TRADERS: &[&str] = &["alice", "bob", "carol"];
const SYMBOLS: &[&str] = &["AAA", "BBB", "CCC"];

fn fill_strategy(id_prefix: &'static str) -> impl Strategy<Value = Fill> {
    (
        0..12u8,
        0..3usize,
        0..3usize,
        -300i64..300,
        1i64..40,
        0u8..4,
        0i64..12,
    )
        .prop_map(move |(id, trader, symbol, qty, price, odd, time)| Fill {
            exec_id: format!("{id_prefix}{id}").into(),
            trader: TRADERS[trader].into(),
            symbol: SYMBOLS[symbol].into(),
            qty: if qty == 0 { 1 } else { qty },
            // Mostly round prices, sometimes odd mantissas that force half-even rounding.
            price: price * 25_000_000 + i64::from(odd),
            transact_time: time,
        })
}

fn input_strategy() -> impl Strategy<Value = Input> {
    let target = prop_oneof![
        (0..12u8).prop_map(|i| format!("F{i}")),
        (0..6u8).prop_map(|i| format!("C{i}"))
    ];
    prop_oneof![
        6 => fill_strategy("F").prop_map(|f| Input::Trade(TradeEvent::Fill(f))),
        2 => (0..6u8, target.clone(), 0i64..12).prop_map(|(b, target, transact_time)| Input::Trade(TradeEvent::Bust(Bust {
            exec_id: format!("B{b}").into(),
            target: target.into(),
            transact_time,
        }))),
        2 => (fill_strategy("C"), target).prop_map(|(mut fill, target)| {
            let id: u8 = fill.exec_id[1..].parse().unwrap();
            fill.exec_id = format!("C{}", id % 6).into();
            Input::Trade(TradeEvent::Correct(Correction { target: target.into(), fill }))
        }),
        2 => (0..3usize, 0..4u8, 1i64..40, 0i64..5, 0u8..3).prop_map(|(s, kind, price, time, odd)| {
            Input::Price(PriceUpdate {
                symbol: SYMBOLS[s].into(),
                kind: [PriceKind::OfficialClose, PriceKind::Bid, PriceKind::Ask, PriceKind::PrevClose][kind as usize],
                price: price * 10_000_000 + i64::from(odd),
                time,
            })
        }),
    ]
}

/// Trades and prices, plus what only the books use: archive locations and reference data,
/// with several records for some keys (the smallest wins), records withdrawn (see
/// [`withdraw_only_what_is_there`]) and some keys never known.
fn books_input_strategy() -> impl Strategy<Value = Input> {
    let exec_id = prop_oneof![
        (0..12u8).prop_map(|i| format!("F{i}")),
        (0..6u8).prop_map(|i| format!("C{i}"))
    ];
    prop_oneof![
        8 => input_strategy(),
        2 => (exec_id, 0..3u8, 0u64..1000, 0i64..5).prop_map(|(id, key, offset, receive_time)| {
            Input::Source(TradeSource {
                exec_id: id.into(),
                archive_key: format!("gw/2026-11-25/{key:06}.fix").into(),
                archive_offset: offset,
                receive_time,
            })
        }),
        1 => trader_record().prop_map(Input::Trader),
        1 => trader_record().prop_map(Input::TraderWithdrawn),
        1 => (0..2usize, 0..2u8).prop_map(|(sym, exchange)| Input::Security(SecurityRef {
            symbol: SYMBOLS[sym].into(),
            cusip: format!("CUSIP{sym}").into(),
            isin: format!("US000{sym}").into(),
            name: format!("{} Inc", SYMBOLS[sym]).into(),
            exchange: ["XNYS", "XNAS"][exchange as usize].into(),
            currency: "USD".into(),
        })),
    ]
}

/// One of two records for each of two traders (the third trader is never known).
fn trader_record() -> impl Strategy<Value = TraderRef> {
    (0..2usize, 0..2u8).prop_map(|(t, desk)| TraderRef {
        trader_id: TRADERS[t].into(),
        name: format!("{} name", TRADERS[t]).into(),
        mpid: "MPID".into(),
        desk: format!("desk{desk}").into(),
        strategy: "flow".into(),
    })
}

/// Drops each withdrawal of a trader record that is not there when it comes: a source only
/// withdraws what it entered, and a record counted below zero means nothing to the books.
fn withdraw_only_what_is_there(inputs: Vec<Input>) -> Vec<Input> {
    let mut held: BTreeMap<TraderRef, usize> = BTreeMap::new();
    inputs
        .into_iter()
        .filter(|input| match input {
            Input::Trader(t) => {
                *held.entry(t.clone()).or_default() += 1;
                true
            }
            Input::TraderWithdrawn(t) => match held.get_mut(t) {
                Some(count) if *count > 0 => {
                    *count -= 1;
                    true
                }
                _ => false,
            },
            _ => true,
        })
        .collect()
}

/// `inputs` cut into epochs at the positions `cuts` (clamped, in any order).
fn split_at(inputs: &[Input], cuts: Vec<usize>) -> Vec<Vec<Input>> {
    let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(inputs.len())).collect();
    cuts.sort();
    let mut epochs = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain(std::iter::once(inputs.len())) {
        epochs.push(inputs[start..cut].to_vec());
        start = cut;
    }
    epochs
}

fn assert_matches(snapshot: &ViewSnapshot, expected: &Expected, context: &str) {
    assert_eq!(
        snapshot.positions, expected.positions,
        "positions differ {context}"
    );
    assert_eq!(
        snapshot.traders, expected.traders,
        "trader totals differ {context}"
    );
    assert_eq!(snapshot.firm, expected.firm, "firm totals differ {context}");
    assert_eq!(
        snapshot.unmatched, expected.unmatched,
        "unmatched differ {context}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_completed_time_equals_the_oracle(
        inputs in prop::collection::vec(input_strategy(), 0..60),
        cuts in prop::collection::vec(0usize..60, 0..5),
        workers in 1usize..=2,
    ) {
        // Random batching: split the (randomly ordered) inputs at random cut points.
        let epochs = split_at(&inputs, cuts);
        let snapshots = run_dataflow(epochs.clone(), workers);
        prop_assert_eq!(snapshots.len(), epochs.len());
        let mut prefix = Vec::new();
        for (epoch, (batch, snapshot)) in epochs.iter().zip(&snapshots).enumerate() {
            prefix.extend(batch.iter().cloned());
            assert_matches(snapshot, &oracle(&prefix), &format!("at epoch {epoch} with {workers} workers"));
            let trades = prefix.iter().filter(|i| matches!(i, Input::Trade(_))).count() as u64;
            let accounting = &snapshot.accounting;
            prop_assert_eq!(accounting.fills + accounting.busts + accounting.corrections, trades);
        }
        // The HashMap reference (benchmark baseline, end-to-end expectation) agrees too.
        let events: Vec<TradeEvent> = prefix.iter().filter_map(|i| match i { Input::Trade(e) => Some(e.clone()), _ => None }).collect();
        let prices: Vec<PriceUpdate> = prefix.iter().filter_map(|i| match i { Input::Price(p) => Some(p.clone()), _ => None }).collect();
        let expected = oracle(&prefix);
        let reference = eod_dataflow::baseline::compute(&events, &prices);
        prop_assert_eq!(&reference.positions, &expected.positions);
        prop_assert_eq!(&reference.traders, &expected.traders);
        prop_assert_eq!(&reference.firm, &expected.firm);
    }

    #[test]
    fn books_equal_the_oracle_at_every_completed_time(
        inputs in prop::collection::vec(books_input_strategy(), 0..60),
        cuts in prop::collection::vec(0usize..60, 0..5),
        workers in 1usize..=2,
    ) {
        let inputs = withdraw_only_what_is_there(inputs);
        let epochs = split_at(&inputs, cuts);
        let (snapshots, updates) = run_with_books(epochs.clone(), workers, true);
        let mut prefix = Vec::new();
        for (epoch, (batch, snapshot)) in epochs.iter().zip(&snapshots).enumerate() {
            prefix.extend(batch.iter().cloned());
            let books = books_at(&updates, epoch as u64 + 1);
            prop_assert_eq!(&books, &books_oracle(&prefix), "books at epoch {} with {} workers", epoch, workers);
            // The views are unchanged by the books being built beside them.
            assert_matches(snapshot, &oracle(&prefix), &format!("at epoch {epoch} with books"));
            // Live rows are exactly the executions the positions count.
            let live = books.values().filter(|r| r.status == BookStatus::Live).count() as u64;
            let counted: u64 = snapshot.positions.values().map(|p| p.trades).sum();
            prop_assert_eq!(live, counted);
        }
    }

    /// A restore enters a snapshot's records at times before `stored_before`, whose rows the
    /// store holds: the books emit nothing there, and from there on the rows they emit,
    /// upserted by ExecID onto the store as it was at the snapshot, give the oracle's books at
    /// every completed time, also when the books get the restored records only some epochs
    /// later. The views are those of a run without it.
    #[test]
    fn books_restored_from_a_snapshot_upsert_to_the_oracle(
        inputs in prop::collection::vec(books_input_strategy(), 0..60),
        cuts in prop::collection::vec(0usize..60, 1..5),
        restored_epochs in 1usize..4,
        books_restore_after in 0usize..4,
        workers in 1usize..=2,
    ) {
        let inputs = withdraw_only_what_is_there(inputs);
        let epochs = split_at(&inputs, cuts);
        let stored_before = restored_epochs.min(epochs.len()) as u64;
        let (snapshots, updates) = run_with_books_stored_before(
            epochs.clone(),
            workers,
            true,
            stored_before,
            books_restore_after,
        );
        prop_assert!(updates.iter().all(|(_, time, _)| *time >= stored_before));
        let restored: Vec<Input> = epochs[..stored_before as usize].concat();
        let mut store = books_oracle(&restored);
        let mut prefix = restored;
        for (epoch, batch) in epochs.iter().enumerate().skip(stored_before as usize) {
            prefix.extend(batch.iter().cloned());
            let mut at_time: Vec<&(BookRow, u64, isize)> =
                updates.iter().filter(|(_, time, _)| *time == epoch as u64).collect();
            at_time.sort_by_key(|(_, _, diff)| *diff);
            for (row, _, diff) in at_time {
                if *diff > 0 {
                    store.insert(row.exec_id.clone(), row.clone());
                }
            }
            prop_assert_eq!(&store, &books_oracle(&prefix), "books at epoch {}", epoch);
            assert_matches(&snapshots[epoch], &oracle(&prefix), &format!("views at epoch {epoch}"));
        }
    }

    /// Many times completing in one activation publish one delta of several times; a follower
    /// applying the deltas still holds the store's views (asserted inside the run), and they
    /// are right.
    #[test]
    fn times_completing_together_publish_one_delta(
        inputs in prop::collection::vec(input_strategy(), 1..60),
        workers in 1usize..=2,
    ) {
        let epochs: Vec<Vec<Input>> = inputs.chunks(3).map(|c| c.to_vec()).collect();
        let (snapshots, _) = run_with_books(epochs, workers, false);
        prop_assert_eq!(snapshots.len(), 1);
        assert_matches(&snapshots[0], &oracle(&inputs), "after all epochs at once");
    }

    /// Corrections that repeat their fill (all but the ExecID) change positions without
    /// changing their rows; the random inputs above almost never make one. Every row must
    /// stay, whatever else each position holds.
    #[test]
    fn corrections_that_repeat_their_fills_keep_every_row(
        fills in prop::collection::vec(fill_strategy("F"), 1..20),
        repeat in prop::collection::vec(any::<bool>(), 20),
        workers in 1usize..=2,
    ) {
        let mut seen = BTreeSet::new();
        let fills: Vec<Fill> = fills.into_iter().filter(|f| seen.insert(f.exec_id.clone())).collect();
        let corrections: Vec<Input> = fills
            .iter()
            .zip(&repeat)
            .enumerate()
            .filter(|(_, (_, repeats))| **repeats)
            .map(|(i, (fill, _))| {
                Input::Trade(TradeEvent::Correct(Correction {
                    target: fill.exec_id.clone(),
                    fill: Fill { exec_id: format!("C{i}").into(), ..fill.clone() },
                }))
            })
            .collect();
        let epochs = vec![
            fills.into_iter().map(|f| Input::Trade(TradeEvent::Fill(f))).collect::<Vec<_>>(),
            corrections,
        ];
        let snapshots = run_dataflow(epochs.clone(), workers);
        let mut prefix = Vec::new();
        for (epoch, (batch, snapshot)) in epochs.iter().zip(&snapshots).enumerate() {
            prefix.extend(batch.iter().cloned());
            assert_matches(snapshot, &oracle(&prefix), &format!("at epoch {epoch} with {workers} workers"));
        }
    }

    #[test]
    fn arrival_order_does_not_matter(
        inputs in prop::collection::vec(input_strategy(), 1..40),
        seed in any::<u64>(),
    ) {
        let mut shuffled = inputs.clone();
        // Deterministic Fisher-Yates from the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let forward = run_dataflow(inputs.iter().map(|i| vec![i.clone()]).collect(), 1);
        let backward = run_dataflow(vec![shuffled], 2);
        let last = forward.last().unwrap();
        let other = backward.last().unwrap();
        prop_assert_eq!(&last.positions, &other.positions);
        prop_assert_eq!(&last.traders, &other.traders);
        prop_assert_eq!(&last.firm, &other.firm);
    }
}

/// Fill F1: alice buys 100 AAA at 10.
fn alice_buys_100_aaa_at_10() -> Fill {
    Fill {
        exec_id: "F1".into(),
        trader: "alice".into(),
        symbol: "AAA".into(),
        qty: 100,
        price: 10 * 100_000_000,
        transact_time: 1,
    }
}

#[test]
fn bust_before_its_fill_never_goes_negative_and_cancels_it() {
    let fill = alice_buys_100_aaa_at_10();
    let bust = Input::Trade(TradeEvent::Bust(Bust {
        exec_id: "B1".into(),
        target: "F1".into(),
        transact_time: 2,
    }));
    let snapshots = run_dataflow(
        vec![vec![bust], vec![Input::Trade(TradeEvent::Fill(fill))]],
        1,
    );
    assert!(snapshots[0].positions.is_empty());
    assert_eq!(
        snapshots[0].unmatched.len(),
        1,
        "the early bust is listed as unmatched"
    );
    assert!(
        snapshots[1].positions.is_empty(),
        "the bust takes effect when its fill arrives"
    );
    assert!(snapshots[1].unmatched.is_empty());
}

/// A correction that repeats its target's quantity and price changes the position (its last
/// trade's ExecID) but not its row: the row must stay in the view, not be retracted and
/// inserted in the same time (a snapshot applying both would lose it).
#[test]
fn a_correction_that_repeats_its_fill_keeps_the_row() {
    let fill = alice_buys_100_aaa_at_10();
    let correction = Input::Trade(TradeEvent::Correct(Correction {
        target: "F1".into(),
        fill: Fill {
            exec_id: "C1".into(),
            ..fill.clone()
        },
    }));
    for workers in [1, 2] {
        let snapshots = run_dataflow(
            vec![
                vec![Input::Trade(TradeEvent::Fill(fill.clone()))],
                vec![correction.clone()],
            ],
            workers,
        );
        assert_eq!(snapshots[0].positions.len(), 1);
        assert_eq!(
            snapshots[1].positions, snapshots[0].positions,
            "the corrected position shows the same row ({workers} workers)"
        );
        assert_eq!(snapshots[1].firm, snapshots[0].firm);
    }
}

#[test]
fn a_reference_data_update_re_enriches_the_rows_it_touches() {
    let trader = |desk: &str| TraderRef {
        trader_id: "alice".into(),
        name: "Alice".into(),
        mpid: "ALCE".into(),
        desk: desk.into(),
        strategy: "flow".into(),
    };
    let fill = |id: &str, trader: &str| {
        Input::Trade(TradeEvent::Fill(Fill {
            exec_id: id.into(),
            trader: trader.into(),
            symbol: "AAA".into(),
            qty: 10,
            price: 100_000_000,
            transact_time: 1,
        }))
    };
    let epochs = vec![
        vec![
            Input::Trader(trader("rates")),
            fill("F1", "alice"),
            fill("F2", "bob"),
        ],
        vec![
            Input::TraderWithdrawn(trader("rates")),
            Input::Trader(trader("equities")),
        ],
    ];
    let (_, updates) = run_with_books(epochs, 2, true);
    let desk = |books: &BTreeMap<Text, BookRow>, id: &str| {
        books[id].trader_ref.as_ref().map(|t| t.desk.to_string())
    };
    let first = books_at(&updates, 1);
    assert_eq!(desk(&first, "F1").as_deref(), Some("rates"));
    assert_eq!(
        desk(&first, "F2"),
        None,
        "unknown trader: kept, not enriched"
    );
    assert!(first["F2"].enrichment_missing());
    let second = books_at(&updates, 2);
    assert_eq!(desk(&second, "F1").as_deref(), Some("equities"));
    assert_eq!(
        second.len(),
        2,
        "an update changes rows, never adds or drops them"
    );
    // F2's row did not change at time 1: only the touched rows are re-emitted.
    assert!(updates
        .iter()
        .all(|(row, time, _)| *time == 0 || row.exec_id == "F1"));
}
