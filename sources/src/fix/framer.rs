//! Splits a byte stream into FIX messages. Messages may arrive back to back, split across
//! reads, or separated by newlines; anything that is not a valid message becomes a dead letter
//! with its reason and the stream resynchronises on the next `8=FIX`.

use eod_proto::DeadLetterReason;
use memchr::memmem;

use super::SOH;

/// Default largest accepted message, in bytes.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

const BEGIN: &[u8] = b"8=FIX";
/// `10=ddd<SOH>`.
const TRAILER_LEN: usize = 7;
/// Longest plausible `8=...<SOH>9=...<SOH>` header.
const MAX_HEADER: usize = 40;

/// One unit of the input: a validated message, or bytes that are dead letters.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    Message {
        bytes: &'a [u8],
        /// Offset of the first byte in the whole stream.
        offset: u64,
    },
    Dead {
        bytes: &'a [u8],
        offset: u64,
        reason: DeadLetterReason,
        detail: String,
    },
}

/// Incremental framer: `push` bytes as they arrive, then drain with `next_frame`; call
/// `finish` at end of stream to flush what is left.
#[derive(Debug)]
pub struct Framer {
    buffer: Vec<u8>,
    /// Start of unconsumed bytes within `buffer`.
    cursor: usize,
    /// Stream offset of `buffer[0]`.
    base: u64,
    max_message: usize,
    finished: bool,
}

enum Step {
    Emit {
        end: usize,
        dead: Option<(DeadLetterReason, String)>,
    },
    NeedMore,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(DEFAULT_MAX_MESSAGE)
    }
}

impl Framer {
    pub fn new(max_message: usize) -> Framer {
        Framer {
            buffer: Vec::new(),
            cursor: 0,
            base: 0,
            max_message,
            finished: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.cursor > 0 && self.cursor * 2 >= self.buffer.len() {
            self.buffer.drain(..self.cursor);
            self.base += self.cursor as u64;
            self.cursor = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Marks the end of the stream: remaining bytes are framed or dead-lettered as truncated.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Bytes held but not yet framed.
    pub fn pending(&self) -> usize {
        self.buffer.len() - self.cursor
    }

    pub fn next_frame(&mut self) -> Option<Framed<'_>> {
        while self.cursor < self.buffer.len() && matches!(self.buffer[self.cursor], b'\n' | b'\r') {
            self.cursor += 1;
        }
        let start = self.cursor;
        if start == self.buffer.len() {
            return None;
        }
        let step = self.step(start);
        let Step::Emit { end, dead } = step else {
            return None;
        };
        self.cursor = end;
        let bytes = &self.buffer[start..end];
        let offset = self.base + start as u64;
        Some(match dead {
            None => Framed::Message { bytes, offset },
            Some((reason, detail)) => Framed::Dead {
                bytes,
                offset,
                reason,
                detail,
            },
        })
    }

    fn step(&self, start: usize) -> Step {
        let rest = &self.buffer[start..];
        if !rest.starts_with(BEGIN) {
            if rest.len() < BEGIN.len() && BEGIN.starts_with(rest) && !self.finished {
                return Step::NeedMore;
            }
            return self.garbage(start, "bytes before BeginString (8=FIX)");
        }
        // 8=<BeginString><SOH>9=<BodyLength><SOH>
        let Some(begin_end) = memchr::memchr(SOH, &rest[..rest.len().min(MAX_HEADER)]) else {
            return self.incomplete_or(
                start,
                rest.len() >= MAX_HEADER,
                "BeginString not terminated",
            );
        };
        let after_begin = &rest[begin_end + 1..];
        if after_begin.len() < 2 {
            return self.incomplete_or(start, false, "truncated before BodyLength");
        }
        if !after_begin.starts_with(b"9=") {
            return self.resync_dead(
                start,
                DeadLetterReason::Garbled,
                "second field is not BodyLength (9)".into(),
            );
        }
        let digits_window = &after_begin[2..after_begin.len().min(2 + 10)];
        let Some(length_end) = memchr::memchr(SOH, digits_window) else {
            return self.incomplete_or(
                start,
                digits_window.len() >= 10,
                "BodyLength not terminated",
            );
        };
        let digits = &digits_window[..length_end];
        let Some(body_length) = parse_digits(digits) else {
            return self.resync_dead(
                start,
                DeadLetterReason::BodyLength,
                format!(
                    "BodyLength is not a number: {:?}",
                    String::from_utf8_lossy(digits)
                ),
            );
        };
        let body_start = begin_end + 1 + 2 + length_end + 1;
        if body_length > self.max_message {
            return self.resync_dead(
                start,
                DeadLetterReason::BodyLength,
                format!(
                    "BodyLength {body_length} exceeds the {} byte limit",
                    self.max_message
                ),
            );
        }
        let trailer_start = body_start + body_length;
        if rest.len() < trailer_start + TRAILER_LEN {
            if self.finished {
                return self.resync_dead(
                    start,
                    DeadLetterReason::BodyLength,
                    format!("stream ends inside a message declaring BodyLength {body_length}"),
                );
            }
            return Step::NeedMore;
        }
        let trailer = &rest[trailer_start..trailer_start + TRAILER_LEN];
        let well_placed = body_length > 0
            && rest[trailer_start - 1] == SOH
            && trailer.starts_with(b"10=")
            && trailer[3..6].iter().all(u8::is_ascii_digit)
            && trailer[6] == SOH;
        if !well_placed {
            return self.resync_dead(
                start,
                DeadLetterReason::BodyLength,
                format!("BodyLength {body_length} does not end at the CheckSum field"),
            );
        }
        let end = start + trailer_start + TRAILER_LEN;
        if !rest[body_start..].starts_with(b"35=") {
            return Step::Emit {
                end,
                dead: Some((
                    DeadLetterReason::Garbled,
                    "third field is not MsgType (35)".into(),
                )),
            };
        }
        let declared = u32::from(trailer[3] - b'0') * 100
            + u32::from(trailer[4] - b'0') * 10
            + u32::from(trailer[5] - b'0');
        let actual = checksum(&rest[..trailer_start]);
        if declared != actual {
            return Step::Emit {
                end,
                dead: Some((
                    DeadLetterReason::Checksum,
                    format!("CheckSum {declared:03} declared, {actual:03} computed"),
                )),
            };
        }
        Step::Emit { end, dead: None }
    }

    /// Bytes that are not a message: dead up to the next `8=FIX` (or all, at the end).
    fn garbage(&self, start: usize, detail: &str) -> Step {
        match memmem::find(&self.buffer[start + 1..], BEGIN) {
            Some(next) => Step::Emit {
                end: start + 1 + next,
                dead: Some((DeadLetterReason::Garbled, detail.into())),
            },
            None if self.finished || self.buffer.len() - start > self.max_message => {
                // Keep a tail that could be the start of a BeginString split across reads.
                let keep = if self.finished { 0 } else { BEGIN.len() - 1 };
                Step::Emit {
                    end: self.buffer.len() - keep,
                    dead: Some((DeadLetterReason::Garbled, detail.into())),
                }
            }
            None => Step::NeedMore,
        }
    }

    fn incomplete_or(&self, start: usize, hopeless: bool, detail: &str) -> Step {
        if hopeless || self.finished {
            self.resync_dead(start, DeadLetterReason::Garbled, detail.into())
        } else {
            Step::NeedMore
        }
    }

    /// A broken message: dead through the first checksum trailer after its start, or up to the
    /// next `8=FIX`, whichever comes first, so one bad length never swallows good messages.
    fn resync_dead(&self, start: usize, reason: DeadLetterReason, detail: String) -> Step {
        let rest = &self.buffer[start..];
        let next_begin = memmem::find(&rest[1..], BEGIN).map(|p| p + 1);
        let trailer_end = find_trailer_end(rest);
        let end = match (trailer_end, next_begin) {
            (Some(t), Some(n)) => t.min(n),
            (Some(t), None) => t,
            (None, Some(n)) => n,
            (None, None) if self.finished || rest.len() > self.max_message => rest.len(),
            (None, None) => return Step::NeedMore,
        };
        Step::Emit {
            end: start + end,
            dead: Some((reason, detail)),
        }
    }
}

/// End (exclusive) of the first `<SOH>10=ddd<SOH>` in `bytes`.
fn find_trailer_end(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = memmem::find(&bytes[from..], b"\x0110=") {
        let at = from + p + 1;
        if bytes.len() >= at + TRAILER_LEN {
            let t = &bytes[at..at + TRAILER_LEN];
            if t[3..6].iter().all(u8::is_ascii_digit) && t[6] == SOH {
                return Some(at + TRAILER_LEN);
            }
        }
        from = at;
    }
    None
}

fn parse_digits(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0usize, |acc, d| acc * 10 + usize::from(d - b'0')),
    )
}

/// Sum of bytes modulo 256, as FIX defines CheckSum.
pub fn checksum(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0u32, |acc, b| acc.wrapping_add(u32::from(*b)))
        % 256
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fix::FixEncoder;

    fn heartbeat(seq: u32) -> Vec<u8> {
        FixEncoder::new("FIX.4.4").message("0", &[(34, &seq.to_string())])
    }

    fn drain(framer: &mut Framer) -> Vec<(bool, Vec<u8>, Option<DeadLetterReason>)> {
        let mut out = Vec::new();
        while let Some(frame) = framer.next_frame() {
            out.push(match frame {
                Framed::Message { bytes, .. } => (true, bytes.to_vec(), None),
                Framed::Dead { bytes, reason, .. } => (false, bytes.to_vec(), Some(reason)),
            });
        }
        out
    }

    #[test]
    fn frames_back_to_back_and_newline_separated() {
        let (a, b, c) = (heartbeat(1), heartbeat(2), heartbeat(3));
        let mut stream = a.clone();
        stream.extend_from_slice(&b);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(&c);
        stream.push(b'\n');
        let mut framer = Framer::default();
        framer.push(&stream);
        framer.finish();
        let frames = drain(&mut framer);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].1, a);
        assert_eq!(frames[1].1, b);
        assert_eq!(frames[2].1, c);
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let mut stream = heartbeat(1);
        stream.extend_from_slice(b"junk");
        stream.extend_from_slice(&heartbeat(2));
        let mut whole = Framer::default();
        whole.push(&stream);
        whole.finish();
        let expected = drain(&mut whole);
        for split in 0..stream.len() {
            let mut framer = Framer::default();
            framer.push(&stream[..split]);
            let mut frames = drain(&mut framer);
            framer.push(&stream[split..]);
            framer.finish();
            frames.extend(drain(&mut framer));
            assert_eq!(frames, expected, "split at {split}");
        }
    }

    #[test]
    fn bad_checksum_is_dead_and_next_message_survives() {
        let mut bad = heartbeat(1);
        let n = bad.len();
        bad[n - 2] = if bad[n - 2] == b'9' {
            b'0'
        } else {
            bad[n - 2] + 1
        };
        let mut stream = bad.clone();
        stream.extend_from_slice(&heartbeat(2));
        let mut framer = Framer::default();
        framer.push(&stream);
        framer.finish();
        let frames = drain(&mut framer);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].2, Some(DeadLetterReason::Checksum));
        assert_eq!(frames[0].1, bad);
        assert!(frames[1].0);
    }

    #[test]
    fn oversized_message_is_dead() {
        let big = FixEncoder::new("FIX.4.4").message("0", &[(58, &"x".repeat(500))]);
        let mut framer = Framer::new(100);
        framer.push(&big);
        framer.finish();
        let frames = drain(&mut framer);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].2, Some(DeadLetterReason::BodyLength));
        assert_eq!(frames[0].1, big);
    }

    #[test]
    fn truncated_tail_is_dead_at_finish_only() {
        let msg = heartbeat(1);
        let mut framer = Framer::default();
        framer.push(&msg[..msg.len() - 3]);
        assert!(drain(&mut framer).is_empty());
        framer.finish();
        let frames = drain(&mut framer);
        assert_eq!(frames.len(), 1);
        assert!(!frames[0].0);
        assert_eq!(framer.pending(), 0);
    }

    #[test]
    fn offsets_count_from_stream_start() {
        let a = heartbeat(1);
        let mut framer = Framer::default();
        framer.push(&a);
        framer.push(&a);
        let mut offsets = Vec::new();
        while let Some(Framed::Message { offset, .. }) = framer.next_frame() {
            offsets.push(offset);
        }
        framer.push(&a);
        while let Some(Framed::Message { offset, .. }) = framer.next_frame() {
            offsets.push(offset);
        }
        let n = a.len() as u64;
        assert_eq!(offsets, vec![0, n, 2 * n]);
    }
}
