//! Splits a byte stream into FIX messages. Messages may arrive back to back, split across
//! reads, or separated by newlines; anything that is not a valid message becomes a dead letter
//! with its reason and the stream resynchronises on the next message.
//!
//! The contract: a corrupt message never costs a good one. A BodyLength is trusted only when
//! nothing contradicts it: a CheckSum field or another message's header inside the declared
//! span ends the bad message there, so its dead letter holds its own bytes and every valid
//! message after it is framed on its own. The framing does not depend on how the stream was
//! split into reads (`tests/framer_props.rs` proves both over every corruption class).

use std::sync::LazyLock;

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
/// The smallest message limit: a span cut at the limit must keep its own header whole and
/// leave room for the start of the next one.
const MIN_MAX_MESSAGE: usize = 3 * MAX_HEADER;

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

impl<'a> Framed<'a> {
    /// The unit's bytes, message or dead.
    pub fn bytes(&self) -> &'a [u8] {
        match self {
            Framed::Message { bytes, .. } | Framed::Dead { bytes, .. } => bytes,
        }
    }

    /// Offset of the unit's first byte in the whole stream.
    pub fn offset(&self) -> u64 {
        match self {
            Framed::Message { offset, .. } | Framed::Dead { offset, .. } => *offset,
        }
    }
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
    /// A framer that dead-letters messages longer than `max_message` bytes (at least 120).
    pub fn new(max_message: usize) -> Framer {
        Framer {
            buffer: Vec::new(),
            cursor: 0,
            base: 0,
            max_message: max_message.max(MIN_MAX_MESSAGE),
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
        let held = Held {
            bytes: &self.buffer,
            finished: self.finished,
            max_message: self.max_message,
        };
        held.next(&mut self.cursor, self.base)
    }
}

/// Frames a whole stream already in memory (an archive segment) where it lies: the frames of
/// pushing it into a [`Framer`] and finishing, without first copying it into the framer's
/// buffer (each 8 MB segment was copied, and its fresh pages faulted in: about 6% of the
/// replay bench's parse stage).
pub fn frames(stream: &[u8], max_message: usize) -> Frames<'_> {
    Frames {
        held: Held {
            bytes: stream,
            finished: true,
            max_message: max_message.max(MIN_MAX_MESSAGE),
        },
        cursor: 0,
    }
}

/// The frames of a stream held in memory; see [`frames`].
#[derive(Debug)]
pub struct Frames<'a> {
    held: Held<'a>,
    cursor: usize,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Framed<'a>;

    fn next(&mut self) -> Option<Framed<'a>> {
        self.held.next(&mut self.cursor, 0)
    }
}

/// The bytes a framer decides on: what it holds, and whether more may come after them.
#[derive(Debug, Clone, Copy)]
struct Held<'a> {
    bytes: &'a [u8],
    finished: bool,
    max_message: usize,
}

impl<'a> Held<'a> {
    /// The unit at `cursor` (past any line ends), moving `cursor` past it; `base` is the
    /// stream offset of `bytes[0]`.
    fn next(self, cursor: &mut usize, base: u64) -> Option<Framed<'a>> {
        while *cursor < self.bytes.len() && matches!(self.bytes[*cursor], b'\n' | b'\r') {
            *cursor += 1;
        }
        let start = *cursor;
        if start == self.bytes.len() {
            return None;
        }
        let Step::Emit { end, dead } = self.step(start) else {
            return None;
        };
        *cursor = end;
        let bytes = &self.bytes[start..end];
        let offset = base + start as u64;
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
        let rest = &self.bytes[start..];
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
            return self.dead_until_next_message(
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
            return self.dead_until_next_message(
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
            return self.dead_until_next_message(
                start,
                DeadLetterReason::BodyLength,
                format!(
                    "BodyLength {body_length} exceeds the {} byte limit",
                    self.max_message
                ),
            );
        }
        let trailer_start = body_start + body_length;
        let declared_end = trailer_start + TRAILER_LEN;
        // Evidence that the declared span is longer than the message: a CheckSum field, or the
        // header of another message, before the declared end. Trusting the length would merge
        // every message up to it into this one dead letter (trades were lost that way when a
        // BodyLength with an inserted digit ended exactly on a later message's CheckSum).
        if let Some((end, detail)) = overrun(rest, body_start, trailer_start) {
            return Step::Emit {
                end: start + end,
                dead: Some((
                    DeadLetterReason::BodyLength,
                    format!("BodyLength {body_length} {detail}"),
                )),
            };
        }
        if rest.len() < declared_end {
            if self.finished {
                return self.dead_until_next_message(
                    start,
                    DeadLetterReason::BodyLength,
                    format!("stream ends inside a message declaring BodyLength {body_length}"),
                );
            }
            return Step::NeedMore;
        }
        let trailer = &rest[trailer_start..declared_end];
        let well_placed = body_length > 0
            && rest[trailer_start - 1] == SOH
            && trailer.starts_with(b"10=")
            && trailer[3..6].iter().all(u8::is_ascii_digit)
            && trailer[6] == SOH;
        if !well_placed {
            return self.dead_until_next_message(
                start,
                DeadLetterReason::BodyLength,
                format!("BodyLength {body_length} does not end at the CheckSum field"),
            );
        }
        // From here the span is exactly one message: its own trailer, nothing else inside.
        let end = start + declared_end;
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
        match BEGIN_FINDER.find(&self.bytes[start + 1..]) {
            Some(next) => Step::Emit {
                end: start + 1 + next,
                dead: Some((DeadLetterReason::Garbled, detail.into())),
            },
            None if self.finished || self.bytes.len() - start > self.max_message => {
                // Keep a tail that could be the start of a BeginString split across reads.
                let keep = if self.finished { 0 } else { BEGIN.len() - 1 };
                Step::Emit {
                    end: self.bytes.len() - keep,
                    dead: Some((DeadLetterReason::Garbled, detail.into())),
                }
            }
            None => Step::NeedMore,
        }
    }

    fn incomplete_or(&self, start: usize, hopeless: bool, detail: &str) -> Step {
        if hopeless || self.finished {
            self.dead_until_next_message(start, DeadLetterReason::Garbled, detail.into())
        } else {
            Step::NeedMore
        }
    }

    /// A broken message whose own length cannot be trusted: dead through its CheckSum field
    /// or up to the next message's header, whichever comes first, so one bad message never
    /// swallows good ones.
    fn dead_until_next_message(
        &self,
        start: usize,
        reason: DeadLetterReason,
        detail: String,
    ) -> Step {
        let rest = &self.bytes[start..];
        let next_header = find_header(&rest[1..]).map(|p| p + 1);
        let trailer_end = find_trailer_end(rest);
        let end = match (trailer_end, next_header) {
            (Some(t), Some(n)) => t.min(n),
            (Some(t), None) => t,
            (None, Some(n)) => n,
            (None, None) if self.finished => rest.len(),
            (None, None) if rest.len() > self.max_message => without_partial_header(rest),
            (None, None) => return Step::NeedMore,
        };
        Step::Emit {
            end: start + end,
            dead: Some((reason, detail)),
        }
    }
}

/// Where a message that starts at `message[0]` really ends when its declared BodyLength runs
/// past it: the end of a CheckSum field that stands before the declared one, or the start of
/// another message's header inside the declared span, whichever comes first. Only complete
/// patterns count, so the answer never depends on how the bytes were split into reads.
fn overrun(message: &[u8], body_start: usize, trailer_start: usize) -> Option<(usize, String)> {
    let declared_end = trailer_start + TRAILER_LEN;
    // A CheckSum field `<SOH>10=ddd<SOH>` whose SOH stands before the declared one.
    let trailers = &message[body_start - 1..message.len().min(trailer_start + TRAILER_LEN - 1)];
    let early_trailer = find_trailer_end(trailers).map(|end| body_start - 1 + end);
    let headers = &message[1..message.len().min(declared_end + MAX_HEADER)];
    let inner_header = find_header(headers)
        .map(|p| p + 1)
        .filter(|p| *p < declared_end);
    match (early_trailer, inner_header) {
        (Some(t), Some(h)) if h < t => Some((h, format!("runs into the next message at +{h}"))),
        (Some(t), _) => Some((t, format!("runs past the CheckSum field ending at +{t}"))),
        (None, Some(h)) => Some((h, format!("runs into the next message at +{h}"))),
        (None, None) => None,
    }
}

/// `bytes` less a tail that could be the start of a header still arriving: a message must not
/// lose its first bytes to the dead letter in front of it.
fn without_partial_header(bytes: &[u8]) -> usize {
    let from = bytes.len().saturating_sub(MAX_HEADER).max(1);
    memchr::memchr(b'8', &bytes[from..]).map_or(bytes.len(), |p| from + p)
}

/// Finds `8=FIX`, built once: every message looks for a header inside its declared span, and
/// building the searcher on each call cost 1.5% of a 1M replay's CPU (`farm-bench`, 8 pairs).
static BEGIN_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(BEGIN));

/// Start of the first complete message header in `bytes`.
fn find_header(bytes: &[u8]) -> Option<usize> {
    BEGIN_FINDER
        .find_iter(bytes)
        .find(|&p| is_header(&bytes[p..]))
}

/// `8=FIX<version><SOH>9=<digits><SOH>`, the version at most ten bytes without SOH or `=`, one
/// to nine digits: the start of a message, as far as its first bytes tell. No field value can
/// hold it (values never contain SOH), and no two such headers can overlap.
fn is_header(bytes: &[u8]) -> bool {
    let after_begin = &bytes[BEGIN.len()..];
    let Some(soh) = after_begin.iter().take(11).position(|b| *b == SOH) else {
        return false;
    };
    if after_begin[..soh].contains(&b'=') {
        return false;
    }
    let Some(length) = after_begin[soh + 1..].strip_prefix(b"9=") else {
        return false;
    };
    let digits = length
        .iter()
        .take(10)
        .take_while(|b| b.is_ascii_digit())
        .count();
    (1..=9).contains(&digits) && length.get(digits) == Some(&SOH)
}

/// Finds `<SOH>10=`, built once for the same reason as `BEGIN_FINDER`: every message looks
/// for a CheckSum field inside its declared span.
static TRAILER_FINDER: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| {
    memmem::FinderBuilder::new().build_forward_with_ranker(TrailerPair, b"\x0110=")
});

/// Which two of `<SOH>10=`'s bytes memchr looks for before it compares the whole needle: the
/// SOH and the `0` two bytes on, which start only the fields whose tag's second digit is 0
/// (CheckSum, TransactTime 60, SenderSubID 50; about two per message of the 1M archive).
/// memchr's own pick, by the bytes' frequency in common text, was the SOH and the `=` three
/// bytes on: every field with a two-digit tag, about fourteen per message, each compared whole.
struct TrailerPair;

impl memchr::arch::all::packedpair::HeuristicFrequencyRank for TrailerPair {
    fn rank(&self, byte: u8) -> u8 {
        match byte {
            SOH => 0,
            b'0' => 1,
            _ => u8::MAX,
        }
    }
}

/// End (exclusive) of the first `<SOH>10=ddd<SOH>` in `bytes`.
fn find_trailer_end(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = TRAILER_FINDER.find(&bytes[from..]) {
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

/// Sum of bytes modulo 256, as FIX defines CheckSum. Summed in a byte that wraps, which is
/// the modulo itself: the compiler then adds sixteen bytes an instruction, where a `u32` sum
/// widened every byte first and took eight (half of the framer's samples, `perf` of
/// `eod-bench-parse`, 2026-12-07).
pub fn checksum(bytes: &[u8]) -> u32 {
    u32::from(bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixEncoder;

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
