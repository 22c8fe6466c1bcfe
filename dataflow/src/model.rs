//! The records that enter the dataflow. Sources decode FIX into these; nothing here does I/O.

use serde::{Deserialize, Serialize};

use crate::names::{Name, Names};

/// Identifiers and names inside the dataflow. Inline up to 24 bytes: every arrangement clones,
/// hashes and compares these, and heap `String`s made that a quarter of the dataflow's time in
/// allocation alone (measured with perf on the replay benchmark).
pub type Text = compact_str::CompactString;

/// Dataflow time: a totally ordered epoch (a source batch, or a millisecond bucket when live).
pub type Time = u64;
/// Multiplicity of an update.
pub type Diff = isize;

/// One execution (a fill, or the replacement fill carried by a correction).
///
/// Field order matters: derived `Ord` makes the smallest record win among duplicates of one
/// ExecID, which keeps de-duplication deterministic across workers and batchings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fill {
    pub exec_id: Text,
    pub trader: Text,
    pub symbol: Text,
    /// Signed quantity: buys positive, sells negative.
    pub qty: i64,
    /// LastPx mantissa at 10^-8, always positive.
    pub price: i64,
    /// TransactTime, UTC nanoseconds.
    pub transact_time: i64,
}

/// A fill without its ExecID, for state kept under the ExecID: every fill is held until the day
/// ends, and a copy of its key in each was a quarter of it. Within one ExecID its order is the
/// fill's. `N` is how trader and symbol are held: as text, or as numbers ([`HeldFill`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct FillBody<N = Text> {
    pub(crate) trader: N,
    pub(crate) symbol: N,
    pub(crate) qty: i64,
    pub(crate) price: i64,
    pub(crate) transact_time: i64,
}

impl Fill {
    pub(crate) fn split_exec_id(self) -> (Text, FillBody) {
        let Fill {
            exec_id,
            trader,
            symbol,
            qty,
            price,
            transact_time,
        } = self;
        let body = FillBody {
            trader,
            symbol,
            qty,
            price,
            transact_time,
        };
        (exec_id, body)
    }
}

/// A [`FillBody`] as state held until the day ends keeps it: trader and symbol as this
/// worker's numbers for them. Numbers follow arrival, so the order among duplicates is
/// [`HeldFill::order_key`], which reads the names.
pub(crate) type HeldFill = FillBody<Name>;

impl FillBody {
    pub(crate) fn hold(&self, names: &mut Names) -> HeldFill {
        FillBody {
            trader: names.intern(&self.trader),
            symbol: names.intern(&self.symbol),
            qty: self.qty,
            price: self.price,
            transact_time: self.transact_time,
        }
    }
}

impl HeldFill {
    /// [`FillBody`]'s order.
    pub(crate) fn order_key<'a>(&'a self, names: &'a Names) -> impl Ord + 'a {
        (
            names.text(self.trader),
            names.text(self.symbol),
            self.qty,
            self.price,
            self.transact_time,
        )
    }

    pub(crate) fn fill(&self, exec_id: &Text, names: &Names) -> Fill {
        Fill {
            exec_id: exec_id.clone(),
            trader: names.text(self.trader).clone(),
            symbol: names.text(self.symbol).clone(),
            qty: self.qty,
            price: self.price,
            transact_time: self.transact_time,
        }
    }
}

/// A trade correction: `fill` (with its own ExecID) replaces the execution `target`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Correction {
    pub target: Text,
    pub fill: Fill,
}

/// A trade cancel (bust) of the execution `target`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Bust {
    pub exec_id: Text,
    pub target: Text,
    /// TransactTime of the bust, UTC nanoseconds (0 when the message carried none).
    pub transact_time: i64,
}

/// A trade-bearing execution report, as decoded from FIX.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TradeEvent {
    Fill(Fill),
    Correct(Correction),
    Bust(Bust),
}

impl TradeEvent {
    /// The ExecID of the execution it carries (a fill, or a correction's replacement), which
    /// has a books row; `None` for a bust, which only changes another row.
    pub fn execution_id(&self) -> Option<&Text> {
        match self {
            TradeEvent::Fill(fill) => Some(&fill.exec_id),
            TradeEvent::Correct(correction) => Some(&correction.fill.exec_id),
            TradeEvent::Bust(_) => None,
        }
    }
}

/// Kinds of reference price, in no particular precedence (see [`crate::marks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PriceKind {
    OfficialClose,
    Bid,
    Ask,
    PrevClose,
}

/// A market or reference price. The latest `time` per (symbol, kind) is in force.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PriceUpdate {
    pub symbol: Text,
    pub kind: PriceKind,
    pub price: i64,
    pub time: i64,
}

/// What happened to each input message; the dataflow carries these counts so that every view
/// states exactly which messages it reflects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Counter {
    /// Every framed message (or unframeable chunk) read from the input.
    Read,
    Fills,
    Busts,
    Corrections,
    /// Valid FIX that carries no trade (heartbeats, logons, order status, ...).
    Skipped,
    /// Dead-lettered, by reason label.
    DeadLetter(Text),
    /// Price updates applied.
    Prices,
    /// Messages the input holds, counted from its raw bytes apart from the framer.
    MessagesInInput,
    /// Framed units that start a message: equal to `MessagesInInput` unless framing merged
    /// messages (or split one).
    MessagesFramed,
}
