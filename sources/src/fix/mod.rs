//! FIX 4.2 / 4.4 tag=value codec: framing with BodyLength/CheckSum validation and resync,
//! execution-report decoding into trade envelopes, and an encoder for simulators and tests.

pub mod census;
pub mod decode;
pub mod encode;
pub mod framer;
pub mod session;
pub mod time;

pub use census::MessageCensus;
pub use decode::{Decoded, Decoder, Reject};
pub use encode::FixEncoder;
pub use framer::{Framed, Framer, DEFAULT_MAX_MESSAGE};

/// Field separator.
pub const SOH: u8 = 0x01;
