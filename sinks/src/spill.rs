//! Rows on disk, first in first out: what a durable sink holds beyond its memory budget while
//! its store is slow or down, so that an outage costs disk, not RAM, and never holds back the
//! views (issue 12, point 2).
//!
//! Rows go to chunk files of `chunk_rows` rows each (bincode, the encoding timely already uses
//! for exchange); the oldest chunk comes back whole. Nothing here needs to survive a restart:
//! what was spilled is not durable, so the Kafka offsets were not committed past it and a
//! restarted run reads it again. A directory's leftovers from an earlier run are removed.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::SinkError;

/// Where and how a sink spills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpillOptions {
    pub dir: PathBuf,
    /// Rows a sink keeps in memory before it spills the rest.
    pub memory_rows: usize,
    /// Rows per chunk file.
    pub chunk_rows: usize,
}

/// Rows a writing worker of a live run keeps in memory before it spills (`--books-memory-rows`).
pub const DEFAULT_MEMORY_ROWS: usize = 100_000;

/// Rows per chunk file: a chunk comes back whole, so this bounds what a catch-up reads at once.
pub const DEFAULT_CHUNK_ROWS: usize = 10_000;

impl SpillOptions {
    /// A spill in `dir` keeping `memory_rows` (at least one) in memory, in chunks of
    /// [`DEFAULT_CHUNK_ROWS`].
    pub fn new(dir: PathBuf, memory_rows: usize) -> SpillOptions {
        SpillOptions {
            dir,
            memory_rows: memory_rows.max(1),
            chunk_rows: DEFAULT_CHUNK_ROWS,
        }
    }
}

pub struct Spill<R> {
    dir: PathBuf,
    chunk_rows: usize,
    /// Closed chunks, oldest first, with their row counts.
    closed: VecDeque<(PathBuf, usize)>,
    /// The chunk being appended to.
    tail: Option<(BufWriter<File>, PathBuf, usize)>,
    next_chunk: u64,
    rows: usize,
    _rows: PhantomData<fn(R) -> R>,
}

const CHUNK_PREFIX: &str = "chunk-";

impl<R> Spill<R> {
    /// Rows spilled and not yet taken back.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

impl<R: Serialize + DeserializeOwned> Spill<R> {
    /// A spill in `dir` (created, emptied of an earlier run's chunks).
    pub fn new(dir: &Path, chunk_rows: usize) -> Result<Spill<R>, SinkError> {
        let fail = |what: &str, e: std::io::Error| {
            SinkError::Setup(format!("spill directory {}: {what}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| fail("create", e))?;
        for entry in std::fs::read_dir(dir).map_err(|e| fail("read", e))? {
            let path = entry.map_err(|e| fail("read", e))?.path();
            let stale = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(CHUNK_PREFIX));
            if stale {
                std::fs::remove_file(&path).map_err(|e| fail("remove a stale chunk", e))?;
            }
        }
        Ok(Spill {
            dir: dir.to_owned(),
            chunk_rows: chunk_rows.max(1),
            closed: VecDeque::new(),
            tail: None,
            next_chunk: 0,
            rows: 0,
            _rows: PhantomData,
        })
    }

    /// Appends `row` after every row spilled before it.
    pub fn push(&mut self, row: &R) -> Result<(), SinkError> {
        if self.tail.is_none() {
            let path = self
                .dir
                .join(format!("{CHUNK_PREFIX}{:08}", self.next_chunk));
            self.next_chunk += 1;
            let file = File::create(&path).map_err(|e| io_error(&path, "create", e))?;
            self.tail = Some((BufWriter::new(file), path, 0));
        }
        let Some((writer, path, rows)) = self.tail.as_mut() else {
            unreachable!("the tail chunk was just opened");
        };
        bincode::serialize_into(&mut *writer, row)
            .map_err(|e| SinkError::Setup(format!("spilling to {}: {e}", path.display())))?;
        *rows += 1;
        self.rows += 1;
        if *rows >= self.chunk_rows {
            self.close_tail()?;
        }
        Ok(())
    }

    /// Takes back the oldest chunk's rows (the tail's, when it is the only one).
    pub fn pop_chunk(&mut self) -> Result<Vec<R>, SinkError> {
        if self.closed.is_empty() {
            self.close_tail()?;
        }
        let Some((path, count)) = self.closed.pop_front() else {
            return Ok(Vec::new());
        };
        let file = File::open(&path).map_err(|e| io_error(&path, "open", e))?;
        let mut reader = BufReader::new(file);
        let mut rows = Vec::with_capacity(count);
        for _ in 0..count {
            let row = bincode::deserialize_from(&mut reader)
                .map_err(|e| SinkError::Setup(format!("reading {}: {e}", path.display())))?;
            rows.push(row);
        }
        std::fs::remove_file(&path).map_err(|e| io_error(&path, "remove", e))?;
        self.rows -= count;
        Ok(rows)
    }

    fn close_tail(&mut self) -> Result<(), SinkError> {
        if let Some((mut writer, path, rows)) = self.tail.take() {
            writer.flush().map_err(|e| io_error(&path, "write", e))?;
            self.closed.push_back((path, rows));
        }
        Ok(())
    }
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> SinkError {
    SinkError::Setup(format!("spill chunk {}: {what}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_in_order_a_chunk_at_a_time_and_leave_no_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("chunk-stale"), b"from an earlier run").unwrap();
        let mut spill: Spill<(u64, String)> = Spill::new(dir.path(), 3).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        for i in 0..7 {
            spill.push(&(i, format!("row {i}"))).unwrap();
        }
        assert_eq!(spill.len(), 7);
        let mut back = Vec::new();
        while !spill.is_empty() {
            let chunk = spill.pop_chunk().unwrap();
            assert!(!chunk.is_empty() && chunk.len() <= 3);
            back.extend(chunk);
            if back.len() == 3 {
                // Appending while taking back keeps the order.
                spill.push(&(7, "row 7".into())).unwrap();
            }
        }
        let expected: Vec<(u64, String)> = (0..8).map(|i| (i, format!("row {i}"))).collect();
        assert_eq!(back, expected);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(spill.pop_chunk().unwrap().is_empty());
    }
}
