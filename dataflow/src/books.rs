//! The books: one row per trade execution (fill or correction), enriched with reference data.
//!
//! The truth path. A bust or correction never deletes a row: it changes the target row's
//! status and names the execution that did it and when; a correction is a row of its own. A row
//! whose trader or security is unknown is still a row, flagged by its missing enrichment. The
//! collection is keyed by ExecID: at every completed time it holds exactly one version of each
//! row, so a sink that upserts by ExecID writes every execution exactly once.

use std::collections::HashSet;
use std::iter::once;
use std::sync::Arc;

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::InputCapability;

use crate::day_state::DayState;
use crate::keyed::{DayKeys, KeyedEntry, KeyedStates, Vacancy};
use crate::merge::Merge;
use crate::model::{Bust, Correction, Diff, Fill, FillBody, HeldFill, Text, Time, TradeEvent};
use crate::multiset::Multiset;
use crate::names::{Name, Names};
use crate::stash::TimeStash;
use crate::FastMap;

/// A snapshot's record as the books take it back in after a restart (see
/// [`crate::Inputs::restore_books`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BooksRestore {
    Event(TradeEvent),
    Source(TradeSource),
}

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
///
/// Rows wait for the books writer by the hundred thousand in a replay (its bound on how far
/// the books may lag), so the row is kept small: what most rows never have is boxed apart in
/// [`RowLinks`], and the source does not repeat the ExecID. It still serializes as the flat
/// row it was (a refused row's dead letter, a spill, an exchange between processes).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BookRow {
    pub exec_id: Text,
    pub kind: BookKind,
    /// Made by [`RowLinks::boxed`], which leaves it `None` when there are none, so that equal
    /// rows compare equal.
    pub links: Option<Box<RowLinks>>,
    pub trader: Text,
    pub symbol: Text,
    /// Signed: buys positive, sells negative.
    pub qty: i64,
    /// 10^-8.
    pub price: i64,
    /// UTC nanoseconds.
    pub transact_time: i64,
    pub status: BookStatus,
    /// Shared, not copied: a row is arranged and merged several times on its way to the
    /// books, and the reference records were half its size.
    pub trader_ref: Option<Arc<TraderRef>>,
    pub security_ref: Option<Arc<SecurityRef>>,
    pub source: Option<SourceAt>,
}

/// A row's ties to other executions: only corrections and ended rows have any.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowLinks {
    /// For a correction: the ExecID it replaces.
    pub corrects: Option<Text>,
    /// The bust or correction that ended this row's life, and its TransactTime.
    pub status_by: Option<Text>,
    pub status_time: Option<i64>,
}

impl RowLinks {
    /// The links, or `None` when there are none.
    pub fn boxed(
        corrects: Option<Text>,
        status_by: Option<Text>,
        status_time: Option<i64>,
    ) -> Option<Box<RowLinks>> {
        let links = RowLinks {
            corrects,
            status_by,
            status_time,
        };
        (links != RowLinks::default()).then(|| Box::new(links))
    }
}

impl BookRow {
    pub fn enrichment_missing(&self) -> bool {
        self.trader_ref.is_none() || self.security_ref.is_none()
    }

    /// For a correction: the ExecID it replaces.
    pub fn corrects(&self) -> Option<&Text> {
        self.links.as_ref()?.corrects.as_ref()
    }

    /// The bust or correction that ended this row's life.
    pub fn status_by(&self) -> Option<&Text> {
        self.links.as_ref()?.status_by.as_ref()
    }

    /// The TransactTime of the bust or correction that ended this row's life.
    pub fn status_time(&self) -> Option<i64> {
        self.links.as_ref()?.status_time
    }
}

/// [`BookRow`] as it serializes: flat, the shape its JSON has always had.
#[derive(Serialize)]
#[serde(rename = "BookRow")]
struct BookRowOut<'r> {
    exec_id: &'r Text,
    kind: BookKind,
    corrects: Option<&'r Text>,
    trader: &'r Text,
    symbol: &'r Text,
    qty: i64,
    price: i64,
    transact_time: i64,
    status: BookStatus,
    status_by: Option<&'r Text>,
    status_time: Option<i64>,
    trader_ref: Option<&'r Arc<TraderRef>>,
    security_ref: Option<&'r Arc<SecurityRef>>,
    source: Option<TradeSourceOut<'r>>,
}

#[derive(Serialize)]
#[serde(rename = "TradeSource")]
struct TradeSourceOut<'r> {
    exec_id: &'r Text,
    archive_key: &'r Text,
    archive_offset: u64,
    receive_time: i64,
}

#[derive(Deserialize)]
#[serde(rename = "BookRow")]
struct BookRowIn {
    exec_id: Text,
    kind: BookKind,
    corrects: Option<Text>,
    trader: Text,
    symbol: Text,
    qty: i64,
    price: i64,
    transact_time: i64,
    status: BookStatus,
    status_by: Option<Text>,
    status_time: Option<i64>,
    trader_ref: Option<Arc<TraderRef>>,
    security_ref: Option<Arc<SecurityRef>>,
    source: Option<TradeSource>,
}

impl Serialize for BookRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        BookRowOut {
            exec_id: &self.exec_id,
            kind: self.kind,
            corrects: self.corrects(),
            trader: &self.trader,
            symbol: &self.symbol,
            qty: self.qty,
            price: self.price,
            transact_time: self.transact_time,
            status: self.status,
            status_by: self.status_by(),
            status_time: self.status_time(),
            trader_ref: self.trader_ref.as_ref(),
            security_ref: self.security_ref.as_ref(),
            source: self.source.as_ref().map(|at| TradeSourceOut {
                exec_id: &self.exec_id,
                archive_key: &at.archive_key,
                archive_offset: at.archive_offset,
                receive_time: at.receive_time,
            }),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BookRow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<BookRow, D::Error> {
        let row = BookRowIn::deserialize(deserializer)?;
        Ok(BookRow {
            exec_id: row.exec_id,
            kind: row.kind,
            links: RowLinks::boxed(row.corrects, row.status_by, row.status_time),
            trader: row.trader,
            symbol: row.symbol,
            qty: row.qty,
            price: row.price,
            transact_time: row.transact_time,
            status: row.status,
            trader_ref: row.trader_ref,
            security_ref: row.security_ref,
            source: row.source.map(SourceAt::from),
        })
    }
}

/// Something that ends an execution's life: the earliest (by TransactTime, ExecID) wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Kill {
    time: i64,
    exec_id: Text,
    status: BookStatus,
}

/// What is known about one ExecID, as it travels to the worker that owns the ExecID.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum ByExecId {
    Trade(Trade),
    Kill(Kill),
    Present,
    Source(SourceAt),
}

/// The execution an ExecID carries: a fill, or a correction's replacement fill and its target.
/// Field order matters: among duplicates of one ExecID the smallest wins, a fill (no target)
/// before a correction. The ExecID itself is the state's key, not a field: every ExecID is held
/// for the whole day, and its copies were a tenth of the books' memory. Its kind is not a
/// field either: a correction is exactly a trade with a target, and a kind beside the target
/// was 8 bytes more in every ExecID's state. The rare target is boxed: an update waits in the
/// books' stash for its time to complete, a few epochs of them, and a fill's then carries a
/// null pointer where the target's text took 24 bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Trade {
    corrects: Option<Box<Text>>,
    fill: FillBody,
}

impl Trade {
    /// A fill when `corrects` is `None`, else a correction of that ExecID.
    fn new(corrects: Option<Text>, fill: Fill) -> (Text, Trade) {
        let (exec_id, fill) = fill.split_exec_id();
        let corrects = corrects.map(Box::new);
        (exec_id, Trade { corrects, fill })
    }
}

/// A [`TradeSource`] without its ExecID, which is the key it is held under (a state's, a
/// row's).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceAt {
    pub archive_key: Text,
    pub archive_offset: u64,
    /// UTC nanoseconds; 0 when unknown.
    pub receive_time: i64,
}

impl From<TradeSource> for SourceAt {
    fn from(source: TradeSource) -> SourceAt {
        SourceAt {
            archive_key: source.archive_key,
            archive_offset: source.archive_offset,
            receive_time: source.receive_time,
        }
    }
}

/// A reference record, sent to every worker: each worker enriches the rows it owns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Reference {
    Trader(TraderRef),
    Security(SecurityRef),
}

/// The inputs of the books, as the live-fill logic sees them.
pub struct BookInputs<'s> {
    pub fills: VecCollection<'s, Time, Fill, Diff>,
    pub corrections: VecCollection<'s, Time, Correction, Diff>,
    pub busts: VecCollection<'s, Time, Bust, Diff>,
    /// ExecIDs of corrections whose target chain reaches an arrived fill.
    pub present: VecCollection<'s, Time, Text, Diff>,
    pub sources: VecCollection<'s, Time, TradeSource, Diff>,
    /// A snapshot's trades and sources, in place of those of `fills`, `corrections`, `busts`
    /// and `sources` at times before `stored_before`, which the books ignore.
    pub restored: VecCollection<'s, Time, BooksRestore, Diff>,
    pub traders: VecCollection<'s, Time, TraderRef, Diff>,
    pub securities: VecCollection<'s, Time, SecurityRef, Diff>,
    /// Times before this carry a snapshot's records, whose rows the store holds: the state
    /// takes them in and no row is emitted (a restore then builds no rows it would not write).
    pub stored_before: Time,
    /// Where the ExecIDs are numbered: shared with the live fills, exchanged by ExecID too.
    pub(crate) exec_ids: DayKeys<Text>,
}

/// The enriched books, one row per ExecID.
///
/// One operator keeps each ExecID's state once, in a hash map on the worker that owns it, and
/// looks the reference data up in maps every worker holds. This was a `reduce` by ExecID
/// followed by two left joins, which arranged every row four times (the reduce's input and
/// output, then by trader and by symbol) and merged those arrangements again and again as the
/// day grew: books on took 13x the time of books off on a 1M-message replay, a quarter of it in
/// `memmove` under the arrangements' merges. Rows never change once written unless a bust,
/// correction or reference record names them, so a map with one entry per ExecID is all the
/// state the books need.
///
/// Like `reduce` for a totally ordered time, a time's updates are applied in time order once
/// the input frontier has passed them, so the output at every completed time is a function of
/// the input collections at that time (the oracle property test checks it).
pub fn books(inputs: BookInputs<'_>) -> VecCollection<'_, Time, BookRow, Diff> {
    let BookInputs {
        fills,
        corrections,
        busts,
        present,
        sources,
        restored,
        traders,
        securities,
        stored_before,
        exec_ids,
    } = inputs;
    // The trades of the restored times come through `restored`, in the runtime's own time
    // (after the views have caught up), not with the views' restore. Every input becomes
    // `BooksUpdate`s in one operator (see `merge`), where the records are, not by a map after
    // the exchange.
    let scope = fills.inner.scope();
    let by_exec_id = Merge::new("BooksByExecId", scope);
    let by_exec_id = after_restore(by_exec_id, fills, stored_before, |fill| [fill_update(fill)]);
    let by_exec_id = after_restore(by_exec_id, corrections, stored_before, correction_updates);
    let by_exec_id = after_restore(by_exec_id, busts, stored_before, |bust| [bust_update(bust)]);
    let by_exec_id = after_restore(by_exec_id, sources, stored_before, |source| {
        [source_update(source)]
    })
    .input(present, |(id, time, diff)| {
        once((BooksUpdate::ExecId(id, ByExecId::Present), time, diff))
    })
    .input(restored, |(record, time, diff)| {
        let (first, second) = match record {
            BooksRestore::Event(TradeEvent::Fill(fill)) => (fill_update(fill), None),
            BooksRestore::Event(TradeEvent::Correct(correction)) => {
                let [trade, kill] = correction_updates(correction);
                (trade, Some(kill))
            }
            BooksRestore::Event(TradeEvent::Bust(bust)) => (bust_update(bust), None),
            BooksRestore::Source(source) => (source_update(source), None),
        };
        once(first)
            .chain(second)
            .map(move |update| (update, time, diff))
    })
    .build();
    let references = Merge::new("BooksReferences", scope)
        .input(traders, |(trader, time, diff)| {
            let reference = BooksUpdate::Reference(Box::new(Reference::Trader(trader)));
            once((reference, time, diff))
        })
        .input(securities, |(security, time, diff)| {
            let reference = BooksUpdate::Reference(Box::new(Reference::Security(security)));
            once((reference, time, diff))
        })
        .build()
        .inner
        .broadcast();

    // Two inputs, the owned updates exchanged by the operator's own input: no `exchange` and
    // `concat` ahead of it, two operators fewer in every epoch.
    let by_owner = Exchange::new(|(update, _, _): &(BooksUpdate, Time, Diff)| match update {
        BooksUpdate::ExecId(exec_id, _) => exec_id.hashed(),
        BooksUpdate::Reference(_) => 0,
    });
    let mut builder = OperatorBuilder::new("Books".to_owned(), scope);
    let mut owned = builder.new_input(by_exec_id.inner, by_owner);
    let mut shared = builder.new_input(references, Pipeline);
    let (rows_out, rows) = builder.new_output();
    let mut rows_out =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<(BookRow, Time, Diff)>>>::from(rows_out);
    builder.build(move |_capabilities| {
        let mut stash = TimeStash::default();
        let mut state = DayState::new(BooksState::sharing(&exec_ids));
        move |frontiers| {
            let mut rows_out = rows_out.activate();
            let mut take = |capability: InputCapability<Time>, updates: &mut Vec<_>| {
                for (update, time, diff) in updates.drain(..) {
                    if time < stored_before {
                        // A restore's updates only add up (no row is made of them), so they
                        // are taken in as they come rather than held until their time
                        // completes: holding 9M of them was about a quarter of the books'
                        // cost of a 5M-trade restore. Later times wait in the stash until the
                        // frontier passes them, and with it every restored time.
                        state.absorb(update, diff);
                    } else {
                        stash.push(&capability, time, (update, diff));
                    }
                }
            };
            owned.for_each(|capability, updates| take(capability, updates));
            shared.for_each(|capability, updates| take(capability, updates));
            stash.complete_all(frontiers, |capability, updates| {
                let mut session = rows_out.session(&capability);
                let time = *capability.time();
                state.apply(updates.drain(..), |row, diff| {
                    session.give((row, time, diff))
                });
            });
        }
    });
    rows.as_collection()
}

/// `merge` with the updates `make` forms of `collection`'s records of times from
/// `stored_before` on: the records of earlier times are a restore's, which the books take
/// through its own input.
fn after_restore<'s, D, const N: usize>(
    merge: Merge<'s, BooksUpdate>,
    collection: VecCollection<'s, Time, D, Diff>,
    stored_before: Time,
    make: impl Fn(D) -> [BooksUpdate; N] + 'static,
) -> Merge<'s, BooksUpdate>
where
    D: differential_dataflow::Data,
{
    merge.input(collection, move |(record, time, diff)| {
        let updates = (time >= stored_before).then(|| make(record));
        updates
            .into_iter()
            .flatten()
            .map(move |update| (update, time, diff))
    })
}

fn fill_update(fill: Fill) -> BooksUpdate {
    let (exec_id, trade) = Trade::new(None, fill);
    BooksUpdate::ExecId(exec_id, ByExecId::Trade(trade))
}

/// A correction is a trade of its own, and kills its target.
fn correction_updates(correction: Correction) -> [BooksUpdate; 2] {
    let Correction { target, fill } = correction;
    let kill = Kill {
        time: fill.transact_time,
        exec_id: fill.exec_id.clone(),
        status: BookStatus::Corrected,
    };
    let (exec_id, trade) = Trade::new(Some(target.clone()), fill);
    [
        BooksUpdate::ExecId(exec_id, ByExecId::Trade(trade)),
        BooksUpdate::ExecId(target, ByExecId::Kill(kill)),
    ]
}

fn bust_update(bust: Bust) -> BooksUpdate {
    let kill = Kill {
        time: bust.transact_time,
        exec_id: bust.exec_id,
        status: BookStatus::Busted,
    };
    BooksUpdate::ExecId(bust.target, ByExecId::Kill(kill))
}

fn source_update(mut source: TradeSource) -> BooksUpdate {
    let exec_id = std::mem::take(&mut source.exec_id);
    BooksUpdate::ExecId(exec_id, ByExecId::Source(SourceAt::from(source)))
}

/// An update as the books operator takes it in. A reference record is boxed: it is twice the
/// size of an ExecID's update, and there are a few hundred of them a day against millions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum BooksUpdate {
    ExecId(Text, ByExecId),
    Reference(Box<Reference>),
}

/// A [`Trade`] as an ExecID's state holds it: names as numbers, the rare correction boxed with
/// the ExecID it corrects. A fill is then the whole of it, and its spare bit pattern marks a
/// correction: 32 bytes, where a boxed target beside every fill made 40.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HeldTrade {
    Fill(HeldFill),
    /// The ExecID corrected, and the replacement fill.
    Correction(Box<(Text, HeldFill)>),
}

impl HeldTrade {
    fn new(trade: Trade, names: &mut Names) -> HeldTrade {
        let fill = trade.fill.hold(names);
        match trade.corrects {
            None => HeldTrade::Fill(fill),
            Some(target) => HeldTrade::Correction(Box::new((*target, fill))),
        }
    }

    fn fill(&self) -> &HeldFill {
        match self {
            HeldTrade::Fill(fill) => fill,
            HeldTrade::Correction(correction) => &correction.1,
        }
    }

    fn corrects(&self) -> Option<&Text> {
        match self {
            HeldTrade::Fill(_) => None,
            HeldTrade::Correction(correction) => Some(&correction.0),
        }
    }

    fn kind(&self) -> BookKind {
        match self {
            HeldTrade::Fill(_) => BookKind::Fill,
            HeldTrade::Correction(_) => BookKind::Correction,
        }
    }

    /// [`Trade`]'s order, the one that picks the winner among duplicates.
    fn order_key<'a>(&'a self, names: &'a Names) -> impl Ord + 'a {
        (self.corrects(), self.fill().order_key(names))
    }
}

/// A [`SourceAt`] with its archive key as a number. In declared order, so that the number's
/// spare bit pattern (zero) sits apart from eight bytes in a row where a multiset's vector fits:
/// 32 bytes with its count then, not 40.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(C)]
struct HeldSource {
    archive_key: Name,
    archive_offset: u64,
    receive_time: i64,
}

impl HeldSource {
    fn order_key<'a>(&'a self, names: &'a Names) -> impl Ord + 'a {
        (
            names.text(self.archive_key),
            self.archive_offset,
            self.receive_time,
        )
    }
}

#[derive(Default)]
struct ExecIdState {
    trades: Multiset<HeldTrade>,
    /// What most ExecIDs never have, boxed apart: this is then one null pointer.
    rare: Option<Box<RareByExecId>>,
    sources: Multiset<HeldSource>,
}

/// What only busted, corrected and correcting ExecIDs have.
#[derive(Default)]
struct RareByExecId {
    kills: Multiset<Kill>,
    /// A correction's: its chain reaches an arrived fill.
    present: Diff,
}

impl Vacancy for ExecIdState {
    fn is_vacant(&self) -> bool {
        self.is_empty()
    }
}

impl ExecIdState {
    fn update(&mut self, value: ByExecId, diff: Diff, names: &mut Names) {
        match value {
            ByExecId::Trade(trade) => self.trades.update(HeldTrade::new(trade, names), diff),
            ByExecId::Kill(kill) => self.update_rare(|rare| rare.kills.update(kill, diff)),
            ByExecId::Present => self.update_rare(|rare| rare.present += diff),
            ByExecId::Source(source) => {
                let held = HeldSource {
                    archive_key: names.intern(&source.archive_key),
                    archive_offset: source.archive_offset,
                    receive_time: source.receive_time,
                };
                self.sources.update(held, diff)
            }
        }
    }

    fn update_rare(&mut self, update: impl FnOnce(&mut RareByExecId)) {
        let rare = self.rare.get_or_insert_with(Box::default);
        update(rare);
        if rare.kills.is_empty() && rare.present == 0 {
            self.rare = None;
        }
    }

    fn kill(&self) -> Option<&Kill> {
        self.rare.as_ref().and_then(|rare| rare.kills.first())
    }

    fn present(&self) -> Diff {
        self.rare.as_ref().map_or(0, |rare| rare.present)
    }

    fn is_empty(&self) -> bool {
        self.trades.is_empty() && self.rare.is_none() && self.sources.is_empty()
    }

    /// The trade this ExecID's row shows: the smallest of its duplicates.
    fn trade<'a>(&'a self, names: &'a Names) -> Option<&'a HeldTrade> {
        names.smallest(&self.trades, HeldTrade::order_key)
    }
}

/// A reference key's records; the smallest wins so that a row stays one row.
struct ReferenceSlot<R> {
    records: Multiset<R>,
    /// The winner, shared by every row that names the key.
    winner: Option<Arc<R>>,
}

impl<R> Default for ReferenceSlot<R> {
    fn default() -> Self {
        ReferenceSlot {
            records: Multiset::default(),
            winner: None,
        }
    }
}

impl<R: Ord + Clone> ReferenceSlot<R> {
    fn winner(slot: Option<&Self>) -> Option<Arc<R>> {
        slot.and_then(|slot| slot.winner.clone())
    }

    fn update(&mut self, record: R, diff: Diff) {
        self.records.update(record, diff);
        if self.records.first() != self.winner.as_deref() {
            self.winner = self.records.first().cloned().map(Arc::new);
        }
    }
}

#[derive(Default)]
struct BooksState {
    exec_ids: KeyedStates<Text, ExecIdState>,
    names: Names,
    traders: FastMap<Text, ReferenceSlot<TraderRef>>,
    securities: FastMap<Text, ReferenceSlot<SecurityRef>>,
}

impl BooksState {
    fn sharing(exec_ids: &DayKeys<Text>) -> Self {
        BooksState {
            exec_ids: KeyedStates::sharing(exec_ids),
            ..BooksState::default()
        }
    }

    /// Takes in an update whose row the store holds already: the state changes, no row is
    /// made. Updates add up, so their order does not matter.
    fn absorb(&mut self, update: BooksUpdate, diff: Diff) {
        match update {
            BooksUpdate::ExecId(exec_id, value) => match self.exec_ids.entry(&exec_id) {
                // A state whose updates add up to none is vacant: the ExecID holds nothing.
                KeyedEntry::Occupied(mut entry) => {
                    entry.get_mut().update(value, diff, &mut self.names)
                }
                KeyedEntry::Vacant(entry) => {
                    let mut state = ExecIdState::default();
                    state.update(value, diff, &mut self.names);
                    if !state.is_empty() {
                        entry.insert(exec_id, state);
                    }
                }
            },
            BooksUpdate::Reference(reference) => self.update_reference(*reference, diff),
        }
    }

    fn update_reference(&mut self, reference: Reference, diff: Diff) {
        match reference {
            Reference::Trader(trader) => {
                let slot = self.traders.entry(trader.trader_id.clone()).or_default();
                slot.update(trader, diff);
            }
            Reference::Security(security) => {
                let slot = self.securities.entry(security.symbol.clone()).or_default();
                slot.update(security, diff);
            }
        }
    }

    /// Applies one completed time's updates and emits the rows that changed: the old version
    /// retracted, the new one inserted.
    fn apply(
        &mut self,
        updates: impl ExactSizeIterator<Item = (BooksUpdate, Diff)>,
        mut emit: impl FnMut(BookRow, Diff),
    ) {
        // Each ExecID's updates side by side, to be looked up once: sorting the ExecIDs, then
        // looking each up before the updates, once per update and once after, was most of this
        // operator's time. In ExecID order, not by hash: the books sink consolidates each time's
        // rows by sorting them, which is cheap for rows that come sorted (by hash, the sink
        // took what the lookups saved).
        // Only the ExecIDs are sorted, each with its update's place; the updates stay where
        // they are until their ExecID's turn. Sorting the updates themselves (a trade each)
        // moved each one three more times: a fifth of this operator's samples were `memcpy`.
        let mut exec_ids: Vec<(Text, usize)> = Vec::with_capacity(updates.len());
        let mut values: Vec<Option<(ByExecId, Diff)>> = Vec::with_capacity(updates.len());
        let mut reference_updates = Vec::new();
        for (update, diff) in updates {
            match update {
                BooksUpdate::ExecId(exec_id, value) => {
                    exec_ids.push((exec_id, values.len()));
                    values.push(Some((value, diff)));
                }
                BooksUpdate::Reference(reference) => reference_updates.push((*reference, diff)),
            }
        }
        if !reference_updates.is_empty() {
            let exec_id_updates = exec_ids
                .drain(..)
                .filter_map(|(exec_id, at)| {
                    let (value, diff) = values.get_mut(at)?.take()?;
                    Some((exec_id, value, diff))
                })
                .collect();
            return self.apply_with_references(exec_id_updates, reference_updates, emit);
        }
        // By ExecID, then place: an ExecID's updates add up in any order, and this one is
        // the same on every run.
        exec_ids.sort_unstable();
        let (traders, securities) = (&self.traders, &self.securities);
        let (states, names) = (&mut self.exec_ids, &mut self.names);
        // Each run read where the sort left it: the ExecID is hashed and compared in place,
        // and copied only into a new entry.
        for run in exec_ids.chunk_by(|a, b| a.0 == b.0) {
            let exec_id = &run[0].0;
            let same_exec_id = run.iter().filter_map(|&(_, at)| values.get_mut(at)?.take());
            match states.entry(exec_id) {
                KeyedEntry::Occupied(mut entry) => {
                    let state = entry.get_mut();
                    let before = book_row(names, traders, securities, exec_id, state);
                    for (value, diff) in same_exec_id {
                        state.update(value, diff, names);
                    }
                    let after = book_row(names, traders, securities, exec_id, state);
                    if before != after {
                        if let Some(old) = before {
                            emit(old, -1);
                        }
                        if let Some(new) = after {
                            emit(new, 1);
                        }
                    }
                }
                KeyedEntry::Vacant(entry) => {
                    let mut state = ExecIdState::default();
                    for (value, diff) in same_exec_id {
                        state.update(value, diff, names);
                    }
                    if let Some(new) = book_row(names, traders, securities, exec_id, &state) {
                        emit(new, 1);
                    }
                    if !state.is_empty() {
                        entry.insert(exec_id.clone(), state);
                    }
                }
            }
        }
    }

    /// [`Self::apply`] for a time that changes reference data: the rows of every ExecID that
    /// names a changed trader or security change too.
    fn apply_with_references(
        &mut self,
        exec_id_updates: Vec<(Text, ByExecId, Diff)>,
        reference_updates: Vec<(Reference, Diff)>,
        mut emit: impl FnMut(BookRow, Diff),
    ) {
        let mut touched: Vec<Text> = exec_id_updates
            .iter()
            .map(|(exec_id, _, _)| exec_id.clone())
            .collect();
        // Reference data changes rarely during a day (it is loaded before the open), so a
        // change finds the rows it names by one pass over this worker's ExecIDs rather
        // than an index that every row would pay for.
        // A name no trade has is not among the numbers, and names no row.
        let mut traders: HashSet<Name> = HashSet::new();
        let mut symbols: HashSet<Name> = HashSet::new();
        for (reference, _) in &reference_updates {
            match reference {
                Reference::Trader(trader) => traders.extend(self.names.number(&trader.trader_id)),
                Reference::Security(security) => {
                    symbols.extend(self.names.number(&security.symbol))
                }
            };
        }
        self.exec_ids.for_each(|exec_id, state| {
            if let Some(trade) = state.trade(&self.names) {
                if traders.contains(&trade.fill().trader) || symbols.contains(&trade.fill().symbol)
                {
                    touched.push(exec_id.clone());
                }
            }
        });
        touched.sort_unstable();
        touched.dedup();

        // Only the rows that exist: most ExecIDs of a time are new, and a slot per touched
        // ExecID was a fresh page of `None`s for every large epoch.
        let before: Vec<(usize, BookRow)> = touched
            .iter()
            .enumerate()
            .filter_map(|(at, id)| Some((at, self.row(id)?)))
            .collect();
        let mut before = before.into_iter().peekable();
        for (exec_id, value, diff) in exec_id_updates {
            self.exec_ids
                .get_or_insert(exec_id)
                .update(value, diff, &mut self.names);
        }
        for (reference, diff) in reference_updates {
            self.update_reference(reference, diff);
        }
        for (at, exec_id) in touched.iter().enumerate() {
            let before = before
                .next_if(|(held_at, _)| *held_at == at)
                .map(|(_, row)| row);
            let after = self.row(exec_id);
            if before != after {
                if let Some(old) = before {
                    emit(old, -1);
                }
                if let Some(new) = after {
                    emit(new, 1);
                }
            }
        }
    }

    /// The row of `exec_id` as the current state makes it, if the ExecID carries a trade.
    fn row(&self, exec_id: &Text) -> Option<BookRow> {
        self.row_of(exec_id, self.exec_ids.get(exec_id)?)
    }

    fn row_of(&self, exec_id: &Text, state: &ExecIdState) -> Option<BookRow> {
        book_row(&self.names, &self.traders, &self.securities, exec_id, state)
    }
}

/// The row `state` makes for `exec_id`, if the ExecID carries a trade.
fn book_row(
    names: &Names,
    traders: &FastMap<Text, ReferenceSlot<TraderRef>>,
    securities: &FastMap<Text, ReferenceSlot<SecurityRef>>,
    exec_id: &Text,
    state: &ExecIdState,
) -> Option<BookRow> {
    let trade = state.trade(names)?;
    let fill = trade.fill();
    let trader = names.text(fill.trader);
    let symbol = names.text(fill.symbol);
    let kill = state.kill();
    let status = match (kill, trade.kind(), state.present() != 0) {
        (Some(kill), _, _) => kill.status,
        (None, BookKind::Correction, false) => BookStatus::Pending,
        (None, _, _) => BookStatus::Live,
    };
    Some(BookRow {
        exec_id: exec_id.clone(),
        kind: trade.kind(),
        links: RowLinks::boxed(
            trade.corrects().cloned(),
            kill.map(|k| k.exec_id.clone()),
            kill.map(|k| k.time),
        ),
        trader: trader.clone(),
        symbol: symbol.clone(),
        qty: fill.qty,
        price: fill.price,
        transact_time: fill.transact_time,
        status,
        trader_ref: ReferenceSlot::winner(traders.get(trader)),
        security_ref: ReferenceSlot::winner(securities.get(symbol)),
        source: names
            .smallest(&state.sources, HeldSource::order_key)
            .map(|source| SourceAt {
                archive_key: names.text(source.archive_key).clone(),
                archive_offset: source.archive_offset,
                receive_time: source.receive_time,
            }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ExecID of the day is held until the end of the day, so a byte here is a byte per
    /// trade: a field that grows the state should be a conscious choice.
    #[test]
    fn the_state_held_per_exec_id_stays_small() {
        let size = std::mem::size_of::<ExecIdState>();
        assert!(size <= 80, "ExecIdState is {size} bytes");
    }

    /// The books operator holds a few epochs' updates until their times complete.
    #[test]
    fn an_update_waiting_for_its_time_stays_small() {
        let size = std::mem::size_of::<BooksUpdate>();
        assert!(size <= 104, "BooksUpdate is {size} bytes (144 with the trade's target and a reference record inline)");
    }

    /// A replay holds up to a few hundred thousand rows ahead of the books writer: 248 bytes a
    /// row before the links were boxed and the source's ExecID dropped.
    #[test]
    fn a_book_row_stays_small() {
        let size = std::mem::size_of::<BookRow>();
        assert!(size <= 168, "BookRow is {size} bytes");
    }
}
