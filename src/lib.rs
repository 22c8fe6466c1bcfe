//! The `eod` runtime: wires sources, the dataflow and the query endpoint together for the
//! embedded `replay` and `demo` modes.

pub mod books;
pub mod config;
pub mod dead_letters;
pub mod demo;
pub mod driver;
pub mod generate;
pub mod intake;
pub mod metrics;
pub mod replay;
pub mod run;
pub mod server;
pub mod telemetry;
pub mod timely_args;
