use std::path::PathBuf;

use eod_sources::archive::ArchiveError;
use eod_sources::archive_writer::ArchiveWriteError;
use eod_sources::kafka::KafkaClientError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Kafka(#[from] KafkaClientError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    ArchiveWrite(#[from] ArchiveWriteError),
    #[error("encoding a trade envelope")]
    Encode(#[from] prost::EncodeError),
    #[error("FIX session state {}", path.display())]
    SessionState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The simulator's FIX session could not go on (no Logon answered, no end confirmed).
    #[error("FIX session: {0}")]
    Session(String),
    /// A lock poisoned or a thread panicked: a bug, reported rather than unwound through.
    #[error("{0}")]
    Broken(&'static str),
}

/// Names what the failed I/O was doing: `.map_err(io("reading the spool"))`.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GatewayError {
    let what = what.into();
    move |source| GatewayError::Io { what, source }
}
