//! The FIX gateway: bytes from TCP connections (plain streams or FIX sessions) or from an
//! existing archive are framed, archived raw and fsynced, classified by the codec's one
//! classifier, and published to Kafka: trades as `TradeEnvelope`s keyed by symbol on the trades
//! topic, everything that is not a valid message as a `DeadLetter` with its reason. Nothing is
//! dropped silently. `simulate` is the other end of the wire: a seeded FIX client, on a plain
//! stream or in a FIX session of its own.

mod error;
mod gateway;
mod ingest_archive;
mod initiator_link;
mod session_link;
pub mod simulate;
mod tcp;

pub use error::GatewayError;
pub use gateway::{Gateway, IngestSummary, Recovered};
pub use ingest_archive::{run_ingest, IngestOptions};
pub use initiator_link::{InitiatorLink, InitiatorOptions, SessionSummary};
pub use session_link::{ActiveSessions, SessionClaim, SessionConfig};
pub use tcp::{open_archive, serve_tcp, ListenOptions};
