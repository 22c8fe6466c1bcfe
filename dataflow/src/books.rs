//! The books: one row per trade execution (fill or correction), enriched with reference data.
//!
//! The truth path. A bust or correction never deletes a row: it changes the target row's
//! status and names the execution that did it and when; a correction is a row of its own. A row
//! whose trader or security is unknown is still a row, flagged by its missing enrichment. The
//! collection is keyed by ExecID: at every completed time it holds exactly one version of each
//! row, so a sink that upserts by ExecID writes every execution exactly once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use differential_dataflow::VecCollection;

use crate::model::{Bust, Correction, Diff, Fill, Text, Time};

/// Reference data for a trader.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TraderRef {
    pub trader_id: Text,
    pub name: Text,
    pub mpid: Text,
    pub desk: Text,
    pub strategy: Text,
}

/// Reference data for a security, by the symbol trades carry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SecurityRef {
    pub symbol: Text,
    pub cusip: Text,
    pub isin: Text,
    pub name: Text,
    pub exchange: Text,
    pub currency: Text,
}

/// Where an execution's raw FIX is archived, and when the gateway received it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TradeSource {
    pub exec_id: Text,
    pub archive_key: Text,
    pub archive_offset: u64,
    /// UTC nanoseconds; 0 when unknown (a replay of an archive has no receive times).
    pub receive_time: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BookKind {
    Fill,
    Correction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BookStatus {
    Live,
    /// A correction whose target (transitively) has not arrived: not in the positions yet.
    Pending,
    Busted,
    Corrected,
}

impl BookStatus {
    pub fn label(self) -> &'static str {
        match self {
            BookStatus::Live => "live",
            BookStatus::Pending => "pending",
            BookStatus::Busted => "busted",
            BookStatus::Corrected => "corrected",
        }
    }
}

/// One row of the books.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BookRow {
    pub exec_id: Text,
    pub kind: BookKind,
    /// For a correction: the ExecID it replaces.
    pub corrects: Option<Text>,
    pub trader: Text,
    pub symbol: Text,
    /// Signed: buys positive, sells negative.
    pub qty: i64,
    /// 10^-8.
    pub price: i64,
    /// UTC nanoseconds.
    pub transact_time: i64,
    pub status: BookStatus,
    /// The bust or correction that ended this row's life, and its TransactTime.
    pub status_by: Option<Text>,
    pub status_time: Option<i64>,
    /// Shared, not copied: a row is arranged and merged several times on its way to the
    /// books, and the reference records were half its size.
    pub trader_ref: Option<Arc<TraderRef>>,
    pub security_ref: Option<Arc<SecurityRef>>,
    pub source: Option<TradeSource>,
}

impl BookRow {
    pub fn enrichment_missing(&self) -> bool {
        self.trader_ref.is_none() || self.security_ref.is_none()
    }
}

/// Something that ends an execution's life: the earliest (by TransactTime, ExecID) wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Kill {
    time: i64,
    exec_id: Text,
    status: BookStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum ByExecId {
    Trade(BookKind, Option<Text>, Fill),
    Kill(Kill),
    Present,
    Source(TradeSource),
}

/// The inputs of the books, as the live-fill logic sees them.
pub struct BookInputs<'s> {
    pub fills: VecCollection<'s, Time, Fill, Diff>,
    pub corrections: VecCollection<'s, Time, Correction, Diff>,
    pub busts: VecCollection<'s, Time, Bust, Diff>,
    /// ExecIDs of corrections whose target chain reaches an arrived fill.
    pub present: VecCollection<'s, Time, Text, Diff>,
    pub sources: VecCollection<'s, Time, TradeSource, Diff>,
    pub traders: VecCollection<'s, Time, TraderRef, Diff>,
    pub securities: VecCollection<'s, Time, SecurityRef, Diff>,
}

/// The enriched books, one row per ExecID.
pub fn books(inputs: BookInputs<'_>) -> VecCollection<'_, Time, BookRow, Diff> {
    let BookInputs {
        fills,
        corrections,
        busts,
        present,
        sources,
        traders,
        securities,
    } = inputs;
    let rows = fills
        .map(|fill| {
            (
                fill.exec_id.clone(),
                ByExecId::Trade(BookKind::Fill, None, fill),
            )
        })
        .concat(corrections.clone().map(|c| {
            (
                c.fill.exec_id.clone(),
                ByExecId::Trade(BookKind::Correction, Some(c.target), c.fill),
            )
        }))
        .concat(corrections.map(|c| {
            let kill = Kill {
                time: c.fill.transact_time,
                exec_id: c.fill.exec_id,
                status: BookStatus::Corrected,
            };
            (c.target, ByExecId::Kill(kill))
        }))
        .concat(busts.map(|b| {
            let kill = Kill {
                time: b.transact_time,
                exec_id: b.exec_id,
                status: BookStatus::Busted,
            };
            (b.target, ByExecId::Kill(kill))
        }))
        .concat(present.map(|id| (id, ByExecId::Present)))
        .concat(sources.map(|s| (s.exec_id.clone(), ByExecId::Source(s))))
        .reduce_named("Books", |_exec_id, values, out| {
            let mut trade = None;
            let mut kill = None;
            let mut present = false;
            let mut source = None;
            // Values arrive sorted, so the first of each variant is the smallest.
            for (value, _) in values {
                match value {
                    ByExecId::Trade(kind, corrects, fill) => {
                        trade.get_or_insert((kind, corrects, fill));
                    }
                    ByExecId::Kill(k) => {
                        kill.get_or_insert(k);
                    }
                    ByExecId::Present => present = true,
                    ByExecId::Source(s) => {
                        source.get_or_insert(s);
                    }
                }
            }
            let Some((kind, corrects, fill)) = trade else {
                return;
            };
            let status = match (kill, kind, present) {
                (Some(kill), _, _) => kill.status,
                (None, BookKind::Correction, false) => BookStatus::Pending,
                (None, _, _) => BookStatus::Live,
            };
            out.push((
                BookRow {
                    exec_id: fill.exec_id.clone(),
                    kind: *kind,
                    corrects: corrects.clone(),
                    trader: fill.trader.clone(),
                    symbol: fill.symbol.clone(),
                    qty: fill.qty,
                    price: fill.price,
                    transact_time: fill.transact_time,
                    status,
                    status_by: kill.map(|k| k.exec_id.clone()),
                    status_time: kill.map(|k| k.time),
                    trader_ref: None,
                    security_ref: None,
                    source: source.cloned(),
                },
                1,
            ));
        })
        .map(|(_exec_id, row)| row);
    enrich(rows, traders, securities)
}

/// Left joins with the reference data. Several records for one key would make several rows;
/// the smallest record wins so that a row stays one row.
fn enrich<'s>(
    rows: VecCollection<'s, Time, BookRow, Diff>,
    traders: VecCollection<'s, Time, TraderRef, Diff>,
    securities: VecCollection<'s, Time, SecurityRef, Diff>,
) -> VecCollection<'s, Time, BookRow, Diff> {
    let traders =
        traders
            .map(|t| (t.trader_id.clone(), t))
            .reduce_named("TraderRef", |_id, refs, out| {
                out.push((refs[0].0.clone(), 1));
            });
    let securities = securities.map(|s| (s.symbol.clone(), s)).reduce_named(
        "SecurityRef",
        |_symbol, refs, out| {
            out.push((refs[0].0.clone(), 1));
        },
    );

    // A left join each: the rows are arranged once per key and both the matches and the
    // rows without a match are read from that one arrangement (`join_map` plus `antijoin`
    // arranged every row twice per key).
    let by_trader = rows
        .map(|row| (row.trader.clone(), row))
        .arrange_by_key_named("BooksByTrader");
    let trader_ids = traders.clone().map(|(id, _)| id).arrange_by_self();
    let with_trader = by_trader
        .clone()
        .join_core(
            traders.map(|(id, t)| (id, Arc::new(t))).arrange_by_key(),
            |_id, row, trader| {
                Some(BookRow {
                    trader_ref: Some(trader.clone()),
                    ..row.clone()
                })
            },
        )
        .concat(by_trader.clone().as_collection(|_id, row| row.clone()))
        .concat(
            by_trader
                .join_core(trader_ids, |_id, row, _| Some(row.clone()))
                .negate(),
        );

    let by_symbol = with_trader
        .map(|row| (row.symbol.clone(), row))
        .arrange_by_key_named("BooksBySymbol");
    let symbols = securities
        .clone()
        .map(|(symbol, _)| symbol)
        .arrange_by_self();
    by_symbol
        .clone()
        .join_core(
            securities.map(|(s, r)| (s, Arc::new(r))).arrange_by_key(),
            |_symbol, row, security| {
                Some(BookRow {
                    security_ref: Some(security.clone()),
                    ..row.clone()
                })
            },
        )
        .concat(by_symbol.clone().as_collection(|_symbol, row| row.clone()))
        .concat(
            by_symbol
                .join_core(symbols, |_symbol, row, _| Some(row.clone()))
                .negate(),
        )
}
