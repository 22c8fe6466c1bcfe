//! Turns raw FIX bytes into dataflow input: frame, validate, decode, count, dead-letter.
//! Every framed unit is counted as read and as exactly one outcome.

use eod_dataflow::{Counter, Inputs};
use eod_proto::DeadLetterReason;
use eod_sources::envelope::to_event;
use eod_sources::fix::{Decoded, Decoder, Framed, Framer, MessageCensus};

use std::sync::Arc;

use eod_dataflow::{TradeEvent, TradeSource};

use crate::dead_letters::{DeadLetterRecord, DeadLetterSender};
use crate::metrics::Metrics;

/// Outcome counts not yet entered into the dataflow; entered once per epoch because a
/// per-message update of the counters collection would double the dataflow's work.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IntakeCounts {
    pub read: u64,
    pub bytes: u64,
    pub fills: u64,
    pub busts: u64,
    pub corrections: u64,
    pub skipped: u64,
    pub dead: Vec<(DeadLetterReason, u64)>,
    /// Messages in the raw bytes, by the census (not the framer).
    pub messages_in_input: u64,
    /// Framed units that start a message.
    pub messages_framed: u64,
}

pub struct Intake {
    framer: Framer,
    /// Counts the messages in the bytes apart from the framer, to check it.
    census: MessageCensus,
    decoder: Decoder,
    max_message: usize,
    source: String,
    dead_letters: DeadLetterSender,
    counts: IntakeCounts,
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
            census: MessageCensus::new(),
            decoder: Decoder::new(),
            max_message,
            source: source.to_owned(),
            dead_letters,
            counts: IntakeCounts::default(),
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
        self.census = MessageCensus::new();
        self.source = source.to_owned();
    }

    /// Feeds bytes; returns how many units were framed.
    pub fn push(&mut self, bytes: &[u8], inputs: &mut Inputs) -> u64 {
        self.framer.push(bytes);
        let before = self.census.messages();
        self.census.push(bytes);
        self.counts.messages_in_input += self.census.messages() - before;
        self.counts.bytes += bytes.len() as u64;
        self.drain(inputs)
    }

    /// Ends the stream: what is left is framed or dead-lettered as truncated.
    pub fn finish(&mut self, inputs: &mut Inputs) -> u64 {
        self.framer.finish();
        self.census.finish();
        self.drain(inputs)
    }

    fn drain(&mut self, inputs: &mut Inputs) -> u64 {
        let mut framed = 0;
        while let Some(frame) = self.framer.next_frame() {
            framed += 1;
            self.counts.read += 1;
            let unit = match &frame {
                Framed::Message { bytes, .. } | Framed::Dead { bytes, .. } => bytes,
            };
            if MessageCensus::starts_message(unit) {
                self.counts.messages_framed += 1;
            }
            let dead = match frame {
                Framed::Message { bytes, offset } => match self.decoder.decode(bytes) {
                    Ok(Decoded::Trade(envelope)) => match to_event(envelope) {
                        Some(event) => {
                            let executed = match &event {
                                TradeEvent::Fill(fill) => {
                                    self.counts.fills += 1;
                                    Some(&fill.exec_id)
                                }
                                TradeEvent::Bust(_) => {
                                    self.counts.busts += 1;
                                    None
                                }
                                TradeEvent::Correct(correction) => {
                                    self.counts.corrections += 1;
                                    Some(&correction.fill.exec_id)
                                }
                            };
                            if let (true, Some(exec_id)) = (self.enter_sources, executed) {
                                inputs.source(TradeSource {
                                    exec_id: exec_id.clone(),
                                    archive_key: self.source.as_str().into(),
                                    archive_offset: offset,
                                    receive_time: 0,
                                });
                            }
                            inputs.event(event);
                            None
                        }
                        None => Some((
                            DeadLetterReason::Processing,
                            "trade of unknown kind or side".to_owned(),
                            bytes,
                            offset,
                        )),
                    },
                    Ok(Decoded::NotATrade { .. }) => {
                        self.counts.skipped += 1;
                        None
                    }
                    Err(reject) => Some((reject.reason, reject.detail, bytes, offset)),
                },
                Framed::Dead {
                    bytes,
                    offset,
                    reason,
                    detail,
                } => Some((reason, detail, bytes, offset)),
            };
            if let Some((reason, detail, bytes, offset)) = dead {
                match self.counts.dead.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, n)) => *n += 1,
                    None => self.counts.dead.push((reason, 1)),
                }
                tracing::debug!(reason = reason.label(), %detail, source = %self.source, offset, "dead letter");
                // The writer lives as long as the run; a send can only fail during teardown.
                let _ = self.dead_letters.send(DeadLetterRecord::new(
                    reason,
                    detail,
                    &self.source,
                    offset,
                    bytes,
                ));
            }
        }
        framed
    }

    /// Enters the buffered outcome counts into the dataflow (call before advancing time).
    pub fn flush_counts(&mut self, inputs: &mut Inputs) {
        let counts = std::mem::take(&mut self.counts);
        let m = &self.metrics;
        m.messages_read.inc_by(counts.read);
        m.bytes_read.inc_by(counts.bytes);
        for (outcome, n) in [
            ("fill", counts.fills),
            ("bust", counts.busts),
            ("correction", counts.corrections),
            ("skipped", counts.skipped),
        ] {
            m.outcomes.with_label_values(&[outcome]).inc_by(n);
        }
        for (reason, n) in &counts.dead {
            m.outcomes.with_label_values(&["dead_letter"]).inc_by(*n);
            m.dead_letters
                .with_label_values(&[reason.label()])
                .inc_by(*n);
        }
        if counts.read > 0 {
            inputs.count(Counter::Read, counts.read as isize);
        }
        if counts.skipped > 0 {
            inputs.count(Counter::Skipped, counts.skipped as isize);
        }
        if counts.messages_in_input > 0 {
            inputs.count(Counter::MessagesInInput, counts.messages_in_input as isize);
        }
        if counts.messages_framed > 0 {
            inputs.count(Counter::MessagesFramed, counts.messages_framed as isize);
        }
        for (reason, n) in counts.dead {
            inputs.count(Counter::DeadLetter(reason.label().into()), n as isize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eod_sources::fix::FixEncoder;

    #[test]
    fn every_unit_is_counted_once_in_metrics() {
        let metrics = Metrics::new().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let mut intake = Intake::new("test", 4096, sender, metrics.clone());
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
            intake.finish(&mut inputs);
            intake.flush_counts(&mut inputs);
        });
        assert_eq!(metrics.messages_read.get(), 3);
        assert_eq!(metrics.outcomes.with_label_values(&["fill"]).get(), 1);
        assert_eq!(metrics.outcomes.with_label_values(&["skipped"]).get(), 1);
        assert_eq!(
            metrics.dead_letters.with_label_values(&["garbled"]).get(),
            1
        );
        let record = receiver.recv().unwrap();
        assert_eq!(record.reason, "garbled");
        assert_eq!(record.original, "junk");
    }
}
