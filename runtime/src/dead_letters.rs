//! Dead letters of the embedded runs: one JSON object per line, original bytes kept exactly.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use base64::Engine;
use eod_proto::DeadLetterReason;
use serde::Serialize;

/// One dead letter as written to the JSONL file.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterRecord {
    pub reason: &'static str,
    pub detail: String,
    /// Archive object (or stream name) and byte offset the bytes came from.
    pub source: String,
    pub offset: u64,
    /// Readable form, SOH shown as `|`.
    pub original: String,
    /// The exact bytes.
    pub original_base64: String,
}

impl DeadLetterRecord {
    pub fn new(
        reason: DeadLetterReason,
        detail: String,
        source: &str,
        offset: u64,
        bytes: &[u8],
    ) -> Self {
        DeadLetterRecord {
            reason: reason.label(),
            detail,
            source: source.to_owned(),
            offset,
            original: String::from_utf8_lossy(bytes).replace('\x01', "|"),
            original_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// Cloneable handle workers send dead letters through.
pub type DeadLetterSender = mpsc::Sender<DeadLetterRecord>;

/// Writes dead letters on a thread of its own; the file is created only when the first one
/// arrives, so a clean run leaves nothing behind.
pub struct DeadLetterWriter {
    sender: DeadLetterSender,
    handle: JoinHandle<std::io::Result<u64>>,
    path: PathBuf,
}

impl DeadLetterWriter {
    pub fn start(path: PathBuf) -> DeadLetterWriter {
        let (sender, receiver) = mpsc::channel::<DeadLetterRecord>();
        let file_path = path.clone();
        let handle = std::thread::spawn(move || -> std::io::Result<u64> {
            let mut out: Option<BufWriter<File>> = None;
            let mut written = 0u64;
            for record in receiver {
                let writer = match out.as_mut() {
                    Some(writer) => writer,
                    None => out.insert(BufWriter::new(File::create(&file_path)?)),
                };
                serde_json::to_writer(&mut *writer, &record)?;
                writer.write_all(b"\n")?;
                written += 1;
            }
            if let Some(mut writer) = out {
                writer.flush()?;
            }
            Ok(written)
        });
        DeadLetterWriter {
            sender,
            handle,
            path,
        }
    }

    pub fn sender(&self) -> DeadLetterSender {
        self.sender.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for every sender to be dropped and returns how many records were written.
    pub fn finish(self) -> std::io::Result<u64> {
        drop(self.sender);
        self.handle
            .join()
            .map_err(|_| std::io::Error::other("dead-letter writer panicked"))?
    }
}
