//! `eod-sinks`: where the dataflow's results land. The books (the truth path) go to SQL stores
//! through a durable-sink operator whose frontier says what is committed; the views go to Redis.
//! (The raw FIX archive is written by the gateway, before anything is parsed: see
//! `eod_sources::archive_writer`.)

pub mod books;
pub mod breaker;
pub mod durable;
pub mod metrics;
pub mod redact;
pub mod redis_sink;
pub mod spill;

pub use durable::{durable_sink, BatchWriter, Progress, SinkOptions};
pub use metrics::SinkMetrics;
pub use spill::SpillOptions;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink setup: {0}")]
    Setup(String),
    #[error("schema migration: {0}")]
    Migration(String),
    #[error("store: {0}")]
    Store(String),
}
