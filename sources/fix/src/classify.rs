//! The one classifier: every framed unit of FIX input becomes exactly one outcome (a checked
//! trade, valid FIX that is not a trade, or a dead letter with its reason), and one [`Counts`]
//! says how many of each there were. Replay, demo, the gateway and the benches all use it, so
//! they cannot disagree about a message; envelopes read back from Kafka pass the same
//! [`check_envelope`].

use eod_proto::borrowed::BorrowedEnvelope;
use eod_proto::{DeadLetterReason, Side, TradeEnvelope, TradeKind};

use crate::census::MessageCensus;
use crate::decode::{Decoded, Decoder, Reject, TradeFields};
use crate::framer::Framed;

/// What a trade is, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckedKind {
    Fill,
    Correction,
    Bust,
}

/// A trade that passed [`check_trade`]: its kind is known and, unless it is a bust, so are its
/// side, symbol, trader, quantity and price. Its text is where the trade was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedTrade<'a> {
    fields: TradeFields<'a>,
    kind: CheckedKind,
}

impl<'a> CheckedTrade<'a> {
    pub fn kind(&self) -> CheckedKind {
        self.kind
    }

    pub fn fields(&self) -> &TradeFields<'a> {
        &self.fields
    }

    /// An envelope of the trade borrowing its text, to publish; `raw_fix`, `receive_time`,
    /// `gateway_id` and `source` are left for the caller to fill in.
    pub fn borrowed_envelope(&self) -> BorrowedEnvelope<'_> {
        self.fields.borrowed_envelope()
    }

    /// An envelope of the trade, to publish; `raw_fix`, `receive_time`, `gateway_id` and
    /// `source` are left for the caller to fill in.
    pub fn to_envelope(&self) -> TradeEnvelope {
        self.fields.to_envelope()
    }

    /// Bought quantity positive, sold negative (zero for a bust, which carries none).
    pub fn signed_quantity(&self) -> i64 {
        match Side::try_from(self.fields.side) {
            Ok(Side::Sell) => -self.fields.quantity,
            Ok(Side::Buy) => self.fields.quantity,
            _ => 0,
        }
    }
}

/// Checks every field the dataflow relies on: a trade may come from our decoder or from an
/// envelope anything wrote to a topic ([`check_envelope`]), and both get the same verdict.
#[inline]
pub fn check_trade(fields: TradeFields<'_>) -> Result<CheckedTrade<'_>, Reject> {
    let kind = checked_kind(&fields)?;
    Ok(CheckedTrade { fields, kind })
}

/// [`check_trade`] of the fields of an envelope read in place.
pub fn check_envelope<'a>(envelope: &BorrowedEnvelope<'a>) -> Result<CheckedTrade<'a>, Reject> {
    check_trade(TradeFields::of(envelope))
}

/// The checks of [`check_trade`], by reference: the fields (200 bytes) are moved once,
/// not through every layer (measured on the envelope: moving it by value cost the parse stage
/// ~20%).
fn checked_kind(trade: &TradeFields<'_>) -> Result<CheckedKind, Reject> {
    let missing = |field: &str| {
        Reject::new(
            DeadLetterReason::MissingField,
            format!("envelope has no {field}"),
        )
    };
    let invalid = |detail: String| Reject::new(DeadLetterReason::InvalidValue, detail);
    if trade.exec_id.is_empty() {
        return Err(missing("exec_id"));
    }
    let kind = match TradeKind::try_from(trade.kind) {
        Ok(TradeKind::Fill) => CheckedKind::Fill,
        Ok(TradeKind::Correct) => CheckedKind::Correction,
        Ok(TradeKind::Bust) => CheckedKind::Bust,
        Ok(TradeKind::Unspecified) => return Err(missing("kind")),
        Err(_) => return Err(invalid(format!("unknown kind {}", trade.kind))),
    };
    if kind != CheckedKind::Fill && trade.exec_ref_id.is_empty() {
        return Err(missing("exec_ref_id"));
    }
    if kind != CheckedKind::Bust {
        if trade.symbol.is_empty() {
            return Err(missing("symbol"));
        }
        if trade.trader_id.is_empty() {
            return Err(missing("trader_id"));
        }
        match Side::try_from(trade.side) {
            Ok(Side::Buy | Side::Sell) => {}
            Ok(Side::Unspecified) => return Err(missing("side")),
            Err(_) => return Err(invalid(format!("unknown side {}", trade.side))),
        }
        if trade.quantity <= 0 {
            return Err(invalid(format!(
                "quantity {} is not positive",
                trade.quantity
            )));
        }
        if trade.price_mantissa <= 0 {
            return Err(invalid(format!(
                "price {} is not positive",
                trade.price_mantissa
            )));
        }
    }
    Ok(kind)
}

/// The verdict on one framed unit.
// Most units are trades: boxing the large variant would allocate once per trade.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<'m> {
    Trade(CheckedTrade<'m>),
    /// Valid FIX that carries no trade (session messages, order status, ...).
    NotATrade {
        msg_type: String,
        exec_type: Option<String>,
    },
    Dead(Reject),
}

/// What a stream of units became. Every unit read is counted once, as exactly one outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Raw bytes observed.
    pub bytes: u64,
    /// Framed units (messages and unframeable chunks).
    pub read: u64,
    pub fills: u64,
    pub busts: u64,
    pub corrections: u64,
    pub skipped: u64,
    pub dead: Vec<(DeadLetterReason, u64)>,
    /// Messages in the raw bytes, by the census (not the framer).
    pub messages_in_input: u64,
    /// Framed units that start a message.
    pub messages_framed: u64,
}

impl Counts {
    pub fn trades(&self) -> u64 {
        self.fills + self.busts + self.corrections
    }

    pub fn dead_lettered(&self) -> u64 {
        self.dead.iter().map(|(_, n)| n).sum()
    }

    /// Every unit read has one outcome, and the units start exactly the messages the census
    /// found in the bytes: merged (or split) messages cannot pass as accounted.
    pub fn all_accounted(&self) -> bool {
        self.trades() + self.skipped + self.dead_lettered() == self.read
            && self.messages_framed == self.messages_in_input
    }

    pub fn add(&mut self, other: &Counts) {
        self.bytes += other.bytes;
        self.read += other.read;
        self.fills += other.fills;
        self.busts += other.busts;
        self.corrections += other.corrections;
        self.skipped += other.skipped;
        for (reason, n) in &other.dead {
            self.add_dead(*reason, *n);
        }
        self.messages_in_input += other.messages_in_input;
        self.messages_framed += other.messages_framed;
    }

    fn add_dead(&mut self, reason: DeadLetterReason, n: u64) {
        match self.dead.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, count)) => *count += n,
            None => self.dead.push((reason, n)),
        }
    }

    #[inline]
    fn unit(&mut self, bytes: &[u8]) {
        self.read += 1;
        if MessageCensus::starts_message(bytes) {
            self.messages_framed += 1;
        }
    }
}

/// Classifies the units of one input stream and counts them. Feed it the raw bytes as they
/// arrive ([`observe`](Classifier::observe), for the census) and every unit the framer makes
/// of them, each once: through [`classify`](Classifier::classify), or
/// [`consumed_by_session`](Classifier::consumed_by_session) for a valid message the FIX
/// session layer took (administrative or duplicate).
#[derive(Default)]
pub struct Classifier {
    decoder: Decoder,
    census: MessageCensus,
    counts: Counts,
}

impl Classifier {
    pub fn new() -> Classifier {
        Classifier::default()
    }

    /// Raw input bytes, exactly as the framer is given them.
    pub fn observe(&mut self, bytes: &[u8]) {
        let before = self.census.messages();
        self.census.push(bytes);
        self.counts.messages_in_input += self.census.messages() - before;
        self.counts.bytes += bytes.len() as u64;
    }

    /// The stream ended (a header cut off at the end is no message).
    pub fn end_of_stream(&mut self) {
        self.census.finish();
        self.census = MessageCensus::new();
    }

    /// The one verdict on a framed unit.
    #[inline]
    pub fn classify<'m>(&mut self, frame: &Framed<'m>) -> Outcome<'m> {
        let framing = match frame {
            Framed::Message { .. } => None,
            Framed::Dead { reason, detail, .. } => Some(Reject::new(*reason, detail.clone())),
        };
        self.classify_unit(frame.bytes(), framing)
    }

    /// As [`classify`](Classifier::classify), for a unit the framer accepted (`framing: None`)
    /// or refused, held apart from the framer (the gateway archives units before decoding).
    #[inline]
    pub fn classify_unit<'m>(&mut self, bytes: &'m [u8], framing: Option<Reject>) -> Outcome<'m> {
        let outcome = match framing {
            None => self.classify_message(bytes),
            Some(reject) => {
                self.counts.unit(bytes);
                Outcome::Dead(reject)
            }
        };
        self.count(&outcome);
        outcome
    }

    /// A valid message the FIX session layer consumed: counted as skipped.
    pub fn consumed_by_session(&mut self, bytes: &[u8]) {
        self.counts.unit(bytes);
        self.counts.skipped += 1;
    }

    /// The counts so far, leaving zero (per-epoch accounting).
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }

    #[inline]
    fn classify_message<'m>(&mut self, bytes: &'m [u8]) -> Outcome<'m> {
        self.counts.unit(bytes);
        match self.decoder.decode(bytes) {
            Ok(Decoded::Trade(fields)) => match check_trade(fields) {
                Ok(checked) => Outcome::Trade(checked),
                Err(reject) => Outcome::Dead(reject),
            },
            Ok(Decoded::NotATrade {
                msg_type,
                exec_type,
            }) => Outcome::NotATrade {
                msg_type,
                exec_type,
            },
            Err(reject) => Outcome::Dead(reject),
        }
    }

    #[inline]
    fn count(&mut self, outcome: &Outcome<'_>) {
        let counts = &mut self.counts;
        match outcome {
            Outcome::Trade(trade) => match trade.kind() {
                CheckedKind::Fill => counts.fills += 1,
                CheckedKind::Correction => counts.corrections += 1,
                CheckedKind::Bust => counts.busts += 1,
            },
            Outcome::NotATrade { .. } => counts.skipped += 1,
            Outcome::Dead(reject) => counts.add_dead(reject.reason, 1),
        }
    }
}
