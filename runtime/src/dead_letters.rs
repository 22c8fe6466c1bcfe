//! Dead letters of the embedded runs: one JSON object per line, original bytes kept exactly.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
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
    /// Attempts after the first to write it (0 for input refused on sight).
    pub retry_count: u32,
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
            retry_count: 0,
        }
    }
}

enum Message {
    Letter(DeadLetterRecord),
    /// Every letter from this source (an archive segment) has been sent.
    SourceDone(String),
}

/// Cloneable handle workers send dead letters through.
#[derive(Clone)]
pub struct DeadLetterSender(mpsc::Sender<Message>);

impl DeadLetterSender {
    /// Sends a letter; one that arrives after the writer finished is dropped (the run failed).
    pub fn send(&self, record: DeadLetterRecord) {
        let _ = self.0.send(Message::Letter(record));
    }

    /// Says that `source` will send no more letters (the ordered writer may move past it).
    pub fn source_done(&self, source: &str) {
        let _ = self.0.send(Message::SourceDone(source.to_owned()));
    }
}

/// Writes dead letters on a thread of its own; the file is created only when the first one
/// arrives, so a clean run leaves nothing behind.
pub struct DeadLetterWriter {
    sender: DeadLetterSender,
    handle: JoinHandle<std::io::Result<u64>>,
}

/// The file, created at the first letter.
struct LetterFile {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
}

impl LetterFile {
    fn write(&mut self, record: &DeadLetterRecord) -> std::io::Result<()> {
        let writer = match self.out.as_mut() {
            Some(writer) => writer,
            None => self.out.insert(BufWriter::new(File::create(&self.path)?)),
        };
        serde_json::to_writer(&mut *writer, record)?;
        writer.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    fn finish(self) -> std::io::Result<u64> {
        if let Some(mut writer) = self.out {
            writer.flush()?;
        }
        Ok(self.written)
    }
}

/// Letters in the order of the sources they came from, whatever the order workers read them:
/// the file is the same from run to run and for any number of workers. Each source may be
/// read by several workers, each taking its share of the units: its letters wait until every
/// reader has said it is done, and are then written in the order of their offsets. Letters of
/// later sources wait for the sources before them (workers stay within a few epochs of each
/// other, so little waits). Letters of sources not in the list (or already done, like books
/// rows a store refused) go last, sorted.
struct InOrder {
    sources: VecDeque<String>,
    /// How many `source_done` make a source done.
    readers_per_source: usize,
    waiting: HashMap<String, Vec<DeadLetterRecord>>,
    done: HashMap<String, usize>,
    late: Vec<DeadLetterRecord>,
}

impl InOrder {
    fn letter(&mut self, record: DeadLetterRecord) {
        if self.sources.contains(&record.source) {
            self.waiting
                .entry(record.source.clone())
                .or_default()
                .push(record);
        } else {
            self.late.push(record);
        }
    }

    fn source_done(&mut self, source: String, file: &mut LetterFile) -> std::io::Result<()> {
        *self.done.entry(source).or_default() += 1;
        while let Some(head) = self.sources.front() {
            if self.done.get(head).copied().unwrap_or(0) < self.readers_per_source {
                break;
            }
            let mut letters = self.waiting.remove(head).unwrap_or_default();
            // Stable: one unit's letters keep the order their reader sent them in.
            letters.sort_by_key(|letter| letter.offset);
            for record in &letters {
                file.write(record)?;
            }
            self.done.remove(head);
            self.sources.pop_front();
        }
        Ok(())
    }

    fn finish(mut self, file: &mut LetterFile) -> std::io::Result<()> {
        for source in std::mem::take(&mut self.sources) {
            let mut letters = self.waiting.remove(&source).unwrap_or_default();
            letters.sort_by_key(|letter| letter.offset);
            for record in &letters {
                file.write(record)?;
            }
        }
        self.late.sort_by(|a, b| {
            (&a.source, a.offset, a.reason, &a.detail)
                .cmp(&(&b.source, b.offset, b.reason, &b.detail))
        });
        for record in &self.late {
            file.write(record)?;
        }
        Ok(())
    }
}

impl DeadLetterWriter {
    /// Writes letters in the order they arrive (live runs).
    pub fn start(path: PathBuf) -> DeadLetterWriter {
        DeadLetterWriter::spawn(path, None)
    }

    /// Writes letters in the order of `sources` (a replay's segments), so that the file does
    /// not depend on how workers interleave; each source is done once `readers_per_source`
    /// senders have said so.
    pub fn start_in_order(
        path: PathBuf,
        sources: Vec<String>,
        readers_per_source: usize,
    ) -> DeadLetterWriter {
        DeadLetterWriter::spawn(path, Some((sources, readers_per_source.max(1))))
    }

    fn spawn(path: PathBuf, sources: Option<(Vec<String>, usize)>) -> DeadLetterWriter {
        let (sender, receiver) = mpsc::channel::<Message>();
        let handle = std::thread::spawn(move || -> std::io::Result<u64> {
            let mut file = LetterFile {
                path,
                out: None,
                written: 0,
            };
            let mut order = sources.map(|(sources, readers_per_source)| InOrder {
                sources: sources.into(),
                readers_per_source,
                waiting: HashMap::new(),
                done: HashMap::new(),
                late: Vec::new(),
            });
            for message in receiver {
                match (message, order.as_mut()) {
                    (Message::Letter(record), Some(order)) => order.letter(record),
                    (Message::Letter(record), None) => file.write(&record)?,
                    (Message::SourceDone(source), Some(order)) => {
                        order.source_done(source, &mut file)?
                    }
                    (Message::SourceDone(_), None) => {}
                }
            }
            if let Some(order) = order {
                order.finish(&mut file)?;
            }
            file.finish()
        });
        DeadLetterWriter {
            sender: DeadLetterSender(sender),
            handle,
        }
    }

    pub fn sender(&self) -> DeadLetterSender {
        self.sender.clone()
    }

    /// Waits for every sender to be dropped and returns how many records were written.
    pub fn finish(self) -> std::io::Result<u64> {
        drop(self.sender);
        self.handle
            .join()
            .map_err(|_| std::io::Error::other("dead-letter writer panicked"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn letter(source: &str, offset: u64) -> DeadLetterRecord {
        DeadLetterRecord::new(
            DeadLetterReason::Garbled,
            "bad".into(),
            source,
            offset,
            b"x",
        )
    }

    fn lines(path: &Path) -> Vec<(String, u64)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                let source = value["source"].as_str().unwrap().to_owned();
                (source, value["offset"].as_u64().unwrap())
            })
            .collect()
    }

    /// Two readers interleave however they like: the file follows the sources' order, and
    /// letters from elsewhere come last, sorted.
    #[test]
    fn in_order_writer_follows_the_sources_whatever_the_interleaving() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.jsonl");
        let sources = ["s0", "s1", "s2", "s3"].map(String::from).to_vec();
        let writer = DeadLetterWriter::start_in_order(path.clone(), sources, 1);
        let (even, odd) = (writer.sender(), writer.sender());
        // The reader of s1 and s3 runs ahead of the reader of s0 and s2.
        odd.send(letter("s1", 5));
        odd.send(letter("s1", 9));
        odd.source_done("s1");
        odd.send(letter("books", 2));
        odd.send(letter("s3", 1));
        even.send(letter("s0", 7));
        even.send(letter("books", 1));
        even.source_done("s0");
        even.send(letter("s2", 3));
        odd.source_done("s3");
        even.source_done("s2");
        drop((even, odd));
        assert_eq!(writer.finish().unwrap(), 7);
        let expected: Vec<(String, u64)> = [
            ("s0", 7),
            ("s1", 5),
            ("s1", 9),
            ("s2", 3),
            ("s3", 1),
            ("books", 1),
            ("books", 2),
        ]
        .iter()
        .map(|(s, o)| (s.to_string(), *o))
        .collect();
        assert_eq!(lines(&path), expected);
    }

    /// Two readers share each source, unit by unit: a source's letters are written once both
    /// are done with it, by offset, whichever reader sent them first.
    #[test]
    fn shared_sources_are_written_by_offset_once_every_reader_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.jsonl");
        let sources = ["s0", "s1"].map(String::from).to_vec();
        let writer = DeadLetterWriter::start_in_order(path.clone(), sources, 2);
        let (first, second) = (writer.sender(), writer.sender());
        second.send(letter("s0", 9));
        second.send(letter("s1", 4));
        first.send(letter("s0", 2));
        first.source_done("s0");
        second.source_done("s0");
        second.source_done("s1");
        first.send(letter("s1", 1));
        first.source_done("s1");
        drop((first, second));
        assert_eq!(writer.finish().unwrap(), 4);
        let expected: Vec<(String, u64)> = [("s0", 2), ("s0", 9), ("s1", 1), ("s1", 4)]
            .iter()
            .map(|(s, o)| (s.to_string(), *o))
            .collect();
        assert_eq!(lines(&path), expected);
    }

    #[test]
    fn a_clean_run_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.jsonl");
        let writer = DeadLetterWriter::start_in_order(path.clone(), vec!["s0".into()], 1);
        writer.sender().source_done("s0");
        assert_eq!(writer.finish().unwrap(), 0);
        assert!(!path.exists());
    }
}
