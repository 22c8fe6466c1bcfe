//! `eod-sources`: everything that brings data in besides the FIX codec (`eod-fix`): trade
//! envelopes into dataflow events, the archive reader and writer, Kafka, the prices CSV,
//! reference data and the seeded FIX simulator.

pub mod archive;
pub mod archive_writer;
pub mod envelope;
pub mod kafka;
pub mod metrics;
pub mod prices;
pub mod reference_data;
pub mod schema_registry;
pub mod simulator;
