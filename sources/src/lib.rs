//! `eod-sources`: everything that brings data in. The FIX codec, the archive reader, the prices
//! CSV and the seeded FIX simulator.

pub mod archive;
pub mod archive_writer;
pub mod envelope;
pub mod fix;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod prices;
pub mod reference_data;
pub mod simulator;
