//! `eod-dataflow`: the pure business logic of eod as a timely/differential dataflow.
//!
//! Inputs are decoded fills, busts, corrections, prices and message counts; outputs are
//! positions, marks and P&L views, published as consistent snapshots. Nothing here does I/O.

pub mod baseline;
#[cfg(test)]
mod batches;
pub mod books;
pub mod correction_chains;
pub mod day_state;
pub mod graph;
mod groups;
pub mod hash_reduce;
mod key_sort;
mod keyed;
pub mod marked_positions;
pub mod marked_rows;
pub mod marks;
mod merge;
pub mod model;
pub mod money;
pub mod multiset;
mod names;
pub mod position;
pub mod position_map;
pub mod position_operator;
mod split;
pub mod stash;
pub mod views;

/// The hash maps that hold a day's keys (ExecIDs). SipHash, std's default, was about 3% of a
/// 5M-trade restore's CPU in these maps; foldhash is seeded per process as well. ExecIDs come
/// from authenticated counterparties only (the FIX session's check), so its weaker resistance
/// to chosen-key flooding is accepted.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use books::{
    BookKind, BookRow, BookStatus, BooksRestore, RowLinks, SecurityRef, SourceAt, TradeSource,
    TraderRef,
};
pub use graph::{build_dataflow, build_graph, Graph, GraphOptions, Inputs};
pub use marks::{Mark, MarkSource};
pub use model::{
    Bust, Correction, Counter, Diff, Fill, PriceKind, PriceUpdate, Text, Time, TradeEvent,
};
pub use money::Money;
pub use views::{
    Accounting, AsOf, PositionView, Totals, Touched, Unmatched, ViewDelta, ViewRecord,
    ViewSnapshot, ViewStore, ViewUpdate,
};
