//! FIX 4.2 / 4.4 tag=value codec: framing with BodyLength/CheckSum validation and resync, an
//! independent message census, execution-report decoding into trade envelopes, the one
//! classifier of framed units, the acceptor's session layer, an initiator's for the simulator,
//! and an encoder for simulators and tests. No timely, differential or I/O dependency.

pub mod census;
pub mod classify;
pub mod decode;
pub mod dictionary;
pub mod encode;
pub mod framer;
pub mod initiator;
pub mod session;
mod structure;
pub mod time;

pub use census::MessageCensus;
pub use classify::{
    check_envelope, check_trade, CheckedKind, CheckedTrade, Classifier, Counts, Outcome,
};
pub use decode::{check_structure, Decoded, Decoder, FieldError, FieldFault, Reject, TradeFields};
pub use encode::{break_checksum, FixEncoder};
pub use framer::{frames, Framed, Framer, Frames, DEFAULT_MAX_MESSAGE};

/// Field separator.
pub const SOH: u8 = 0x01;
