//! The `eod` runtime: one driver loop feeds the dataflow from a source (archive, simulator or
//! Kafka), attaches the books and the dead-letter outputs, and serves the views. The commands
//! `replay`, `demo` and `run` are its three entry points; the binary only parses flags.
//! `check` is the operators' go / no-go against a running deployment.

pub mod books;
pub mod check;
pub mod dead_letters;
pub mod demo;
pub mod driver;
pub mod generate;
pub mod intake;
pub mod memory;
pub mod metrics;
pub mod priority;
pub mod replay;
pub mod run;
pub mod server;
pub mod snapshot;
pub mod supervise;
pub mod timely_args;
