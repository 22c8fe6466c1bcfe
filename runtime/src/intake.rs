//! Turns raw FIX bytes into dataflow input: frame, classify (the codec's one classifier),
//! dead-letter, count. Every framed unit is counted as read and as exactly one outcome.

use eod_dataflow::{Counter, Inputs};
use eod_fix::{CheckedKind, Classifier, Counts, Framer, Outcome};
use eod_sources::envelope::to_event;

use std::sync::Arc;

use eod_dataflow::TradeSource;

use crate::dead_letters::{DeadLetterRecord, DeadLetterSender};
use crate::metrics::Metrics;

/// Which units of a stream an intake enters. Several workers can frame the same bytes, each
/// entering every `workers`-th block of `block` consecutive units: a replay's workers then
/// move through the day side by side instead of each through a different part of it (see
/// `replay.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitShare {
    pub worker: usize,
    pub workers: usize,
    pub block: u64,
}

impl UnitShare {
    /// Every unit.
    pub const ALL: UnitShare = UnitShare {
        worker: 0,
        workers: 1,
        block: 1,
    };

    fn owns(&self, ordinal: u64) -> bool {
        (ordinal / self.block.max(1)) % self.workers.max(1) as u64 == self.worker as u64
    }
}

pub struct Intake {
    framer: Framer,
    share: UnitShare,
    /// Units framed since the intake was made, entered or not: the position in the share.
    ordinal: u64,
    /// Whether this intake counts the stream's messages in the census: exactly one of the
    /// intakes that share a stream does, so that the census counts each byte once.
    counts_census: bool,
    classifier: Classifier,
    max_message: usize,
    source: String,
    dead_letters: DeadLetterSender,
    metrics: Arc<Metrics>,
    /// Enter each execution's archive location (for the books).
    enter_sources: bool,
}

impl Intake {
    pub fn new(
        source: &str,
        max_message: usize,
        dead_letters: DeadLetterSender,
        metrics: Arc<Metrics>,
    ) -> Intake {
        Intake {
            framer: Framer::new(max_message),
            share: UnitShare::ALL,
            ordinal: 0,
            counts_census: true,
            classifier: Classifier::new(),
            max_message,
            source: source.to_owned(),
            dead_letters,
            metrics,
            enter_sources: false,
        }
    }

    /// Also enter where each execution is archived: the books carry it.
    pub fn enter_sources(&mut self, enabled: bool) {
        self.enter_sources = enabled;
    }

    pub fn counts_census(&self) -> bool {
        self.counts_census
    }

    /// Enters only `share`'s units from now on.
    pub fn share(&mut self, share: UnitShare) {
        self.share = share;
    }

    /// Starts a new stream (e.g. the next archive segment) with a fresh framer. Of the intakes
    /// that share the stream, the one with `counts_census` counts its messages.
    pub fn reset(&mut self, source: &str, counts_census: bool) {
        self.framer = Framer::new(self.max_message);
        self.source = source.to_owned();
        self.counts_census = counts_census;
    }

    /// Feeds bytes; returns how many units were framed.
    pub fn push(&mut self, bytes: &[u8], inputs: &mut Inputs) -> u64 {
        self.buffer(bytes);
        self.drain(inputs, u64::MAX)
    }

    /// Takes bytes without framing them yet: [`drain`](Intake::drain) frames and enters them,
    /// as many units as asked (an epoch of a few hundred messages must not receive a whole
    /// megabyte of them).
    pub fn buffer(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
        if self.counts_census {
            self.classifier.observe(bytes);
        }
    }

    /// No more bytes in this stream: a partial message left at the end is framed as dead
    /// (by the next [`drain`](Intake::drain)).
    pub fn end_of_stream(&mut self) {
        self.framer.finish();
        self.classifier.end_of_stream();
    }

    /// Frames, classifies and enters at most `limit` units of its share of what is buffered;
    /// returns how many. Fewer means the buffer holds no complete unit of the share.
    pub fn drain(&mut self, inputs: &mut Inputs, limit: u64) -> u64 {
        let mut framed = 0;
        while framed < limit {
            let Some(frame) = self.framer.next_frame() else {
                break;
            };
            let ordinal = self.ordinal;
            self.ordinal += 1;
            if !self.share.owns(ordinal) {
                continue;
            }
            framed += 1;
            let (bytes, offset) = (frame.bytes(), frame.offset());
            match self.classifier.classify(&frame) {
                Outcome::Trade(trade) => {
                    if self.enter_sources && trade.kind() != CheckedKind::Bust {
                        inputs.source(TradeSource {
                            exec_id: trade.envelope().exec_id.as_str().into(),
                            archive_key: self.source.as_str().into(),
                            archive_offset: offset,
                            receive_time: 0,
                        });
                    }
                    inputs.event(to_event(trade));
                }
                Outcome::NotATrade { .. } => {}
                Outcome::Dead(reject) => {
                    tracing::debug!(reason = reject.reason.label(), detail = %reject.detail, source = %self.source, offset, "dead letter");
                    self.dead_letters.send(DeadLetterRecord::new(
                        reject.reason,
                        reject.detail,
                        &self.source,
                        offset,
                        bytes,
                    ));
                }
            }
        }
        framed
    }

    /// Enters the buffered outcome counts into the dataflow (call before advancing time). Once
    /// per epoch: a per-message update of the counters collection would double the dataflow's
    /// work.
    pub fn flush_counts(&mut self, inputs: &mut Inputs) {
        let counts = self.classifier.take_counts();
        self.metrics.sources.count_outcomes(&counts);
        enter_counts(inputs, &counts);
    }
}

/// The counts the dataflow carries (fills, busts and corrections it counts from the events).
fn enter_counts(inputs: &mut Inputs, counts: &Counts) {
    for (counter, n) in [
        (Counter::Read, counts.read),
        (Counter::Skipped, counts.skipped),
        (Counter::MessagesInInput, counts.messages_in_input),
        (Counter::MessagesFramed, counts.messages_framed),
    ] {
        if n > 0 {
            inputs.count(counter, n as isize);
        }
    }
    for (reason, n) in &counts.dead {
        inputs.count(Counter::DeadLetter(reason.label().into()), *n as isize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eod_fix::FixEncoder;

    #[test]
    fn every_unit_is_counted_once_in_metrics() {
        let metrics = Metrics::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let writer = crate::dead_letters::DeadLetterWriter::start(dir.path().join("dlq.jsonl"));
        let mut intake = Intake::new("test", 4096, writer.sender(), metrics.clone());
        let fill = FixEncoder::new("FIX.4.4").message(
            "8",
            &[
                (17, "E1"),
                (150, "F"),
                (55, "X"),
                (54, "1"),
                (32, "1"),
                (31, "1"),
                (60, "20261125-21:00:00"),
                (1, "A"),
            ],
        );
        let heartbeat = FixEncoder::new("FIX.4.4").message("0", &[]);
        let mut stream = fill.clone();
        stream.extend_from_slice(&heartbeat);
        stream.extend_from_slice(b"junk");
        timely::execute_directly(move |worker| {
            let (mut inputs, _probe) =
                worker.dataflow(|scope| eod_dataflow::build_dataflow(scope, None, 1));
            intake.push(&stream, &mut inputs);
            intake.end_of_stream();
            intake.drain(&mut inputs, u64::MAX);
            intake.flush_counts(&mut inputs);
        });
        assert_eq!(metrics.sources.messages_read.get(), 3);
        assert_eq!(
            metrics.sources.outcomes.with_label_values(&["fill"]).get(),
            1
        );
        assert_eq!(
            metrics
                .sources
                .outcomes
                .with_label_values(&["skipped"])
                .get(),
            1
        );
        assert_eq!(
            metrics
                .sources
                .dead_letters
                .with_label_values(&["garbled"])
                .get(),
            1
        );
        assert_eq!(writer.finish().unwrap(), 1);
        let line = std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap();
        let record: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(record["reason"], "garbled");
        assert_eq!(record["original"], "junk");
    }

    fn fill(exec_id: &str) -> Vec<u8> {
        FixEncoder::new("FIX.4.4").message(
            "8",
            &[
                (17, exec_id),
                (150, "F"),
                (55, "X"),
                (54, "1"),
                (32, "1"),
                (31, "1"),
                (60, "20261125-21:00:00"),
                (1, "A"),
            ],
        )
    }

    /// Two intakes framing the same stream enter every unit once between them, by blocks,
    /// and only the one that counts the census counts the stream's bytes.
    #[test]
    fn a_shared_stream_is_entered_once_by_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.jsonl");
        let writer = crate::dead_letters::DeadLetterWriter::start_in_order(
            path.clone(),
            vec!["s".into()],
            2,
        );
        let mut stream = Vec::new();
        for exec_id in ["E0", "E1", "E2"] {
            stream.extend_from_slice(&fill(exec_id));
        }
        stream.extend_from_slice(b"junk");
        for exec_id in ["E3", "E4", "E5"] {
            stream.extend_from_slice(&fill(exec_id));
        }
        // Units 0..7: E0 E1 | E2 junk | E3 E4 | E5, in blocks of two.
        let mut entered = Vec::new();
        for worker in 0..2 {
            let metrics = Metrics::new().unwrap();
            let mut intake = Intake::new("s", 4096, writer.sender(), metrics.clone());
            intake.share(UnitShare {
                worker,
                workers: 2,
                block: 2,
            });
            intake.reset("s", worker == 0);
            let stream = stream.clone();
            let units = timely::execute_directly(move |worker| {
                let (mut inputs, _probe) =
                    worker.dataflow(|scope| eod_dataflow::build_dataflow(scope, None, 1));
                intake.buffer(&stream);
                intake.end_of_stream();
                let units = intake.drain(&mut inputs, u64::MAX);
                intake.flush_counts(&mut inputs);
                intake.dead_letters.source_done("s");
                units
            });
            let fills = metrics.sources.outcomes.with_label_values(&["fill"]).get();
            entered.push((units, fills, metrics.sources.bytes_read.get()));
        }
        assert_eq!(
            entered,
            vec![(4, 4, stream.len() as u64), (3, 2, 0)],
            "(units, fills, bytes counted) per worker"
        );
        assert_eq!(writer.finish().unwrap(), 1);
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(line.contains("\"original\":\"junk\""), "{line}");
    }
}
