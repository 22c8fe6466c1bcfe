//! Turns raw FIX bytes into dataflow input: frame, classify (the codec's one classifier),
//! dead-letter, count. Every framed unit is counted as read and as exactly one outcome.

use eod_dataflow::{Counter, Inputs};
use eod_fix::{CheckedKind, Classifier, Counts, Framer, Outcome, Reject};
use eod_sources::envelope::to_event;

use std::sync::Arc;

use eod_dataflow::TradeSource;

use crate::dead_letters::{DeadLetterRecord, DeadLetterSender};
use crate::metrics::Metrics;

pub struct Intake {
    framer: Framer,
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

    /// Starts a new stream (e.g. the next archive segment) with a fresh framer.
    pub fn reset(&mut self, source: &str) {
        self.framer = Framer::new(self.max_message);
        self.source = source.to_owned();
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
        self.classifier.observe(bytes);
    }

    /// No more bytes in this stream: a partial message left at the end is framed as dead
    /// (by the next [`drain`](Intake::drain)).
    pub fn end_of_stream(&mut self) {
        self.framer.finish();
        self.classifier.end_of_stream();
    }

    /// Frames, classifies and enters at most `limit` units of what is buffered; returns how
    /// many. Fewer means the buffer holds no complete unit.
    pub fn drain(&mut self, inputs: &mut Inputs, limit: u64) -> u64 {
        let mut framed = 0;
        while framed < limit {
            let Some(frame) = self.framer.next_frame() else {
                break;
            };
            framed += 1;
            let (bytes, offset) = (frame.bytes(), frame.offset());
            let outcome = self.classifier.classify(&frame);
            let unit = Unit {
                enter_sources: self.enter_sources,
                source: &self.source,
                dead_letters: &self.dead_letters,
            };
            unit.enter(outcome, bytes, offset, inputs);
        }
        framed
    }

    /// Counts the messages of a whole stream that is framed elsewhere (a replay frames each
    /// segment once for the process's workers, and one of them counts it).
    pub fn observe_stream(&mut self, bytes: &[u8]) {
        self.classifier.observe(bytes);
        self.classifier.end_of_stream();
    }

    /// Classifies and enters one unit framed elsewhere (`framing`: the framer's verdict when
    /// it refused the bytes), of the stream [`reset`](Intake::reset) last named.
    pub fn enter_unit(
        &mut self,
        bytes: &[u8],
        offset: u64,
        framing: Option<Reject>,
        inputs: &mut Inputs,
    ) {
        let outcome = self.classifier.classify_unit(bytes, framing);
        let unit = Unit {
            enter_sources: self.enter_sources,
            source: &self.source,
            dead_letters: &self.dead_letters,
        };
        unit.enter(outcome, bytes, offset, inputs);
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

/// Where a classified unit goes: the dataflow's inputs or the dead letters.
struct Unit<'a> {
    enter_sources: bool,
    source: &'a str,
    dead_letters: &'a DeadLetterSender,
}

impl Unit<'_> {
    fn enter(&self, outcome: Outcome, bytes: &[u8], offset: u64, inputs: &mut Inputs) {
        match outcome {
            Outcome::Trade(trade) => {
                if self.enter_sources && trade.kind() != CheckedKind::Bust {
                    inputs.source(TradeSource {
                        exec_id: trade.fields().exec_id.as_ref().into(),
                        archive_key: self.source.into(),
                        archive_offset: offset,
                        receive_time: 0,
                    });
                }
                inputs.event(to_event(&trade));
            }
            Outcome::NotATrade { .. } => {}
            Outcome::Dead(reject) => {
                tracing::debug!(reason = reject.reason.label(), detail = %reject.detail, source = %self.source, offset, "dead letter");
                self.dead_letters.send(DeadLetterRecord::new(
                    reject.reason,
                    reject.detail,
                    self.source,
                    offset,
                    bytes,
                ));
            }
        }
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
}
