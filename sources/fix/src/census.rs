//! Counts the messages a byte stream holds, apart from the framer, so that accounting can check
//! the framer instead of trusting it: if two messages were ever framed as one unit, the units
//! that start a message fall short of this count and the summary says so.
//!
//! A message is counted where its header starts: `8=FIX`, a version of at most ten bytes
//! without SOH or `=`, SOH, `9=`, one to nine digits and SOH. No field value can hold that
//! pattern (values never contain SOH) and no two such headers overlap. This module
//! deliberately shares no code with the framer: it is written as a byte-at-a-time matcher.

/// The most bytes a header can take: `8=FIX`, ten of version, SOH, `9=`, nine digits, SOH.
/// Any bytes that many long decide whether a header starts at their first.
const HEADER_MAX: usize = 5 + 10 + 1 + 2 + 9 + 1;

/// `8=FIX`, with which every header starts.
const BEGIN_LEN: usize = 5;
static BEGIN_STRING: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"8=FIX"));

/// Counts message headers in a stream fed in pieces of any size.
#[derive(Debug, Default)]
pub struct MessageCensus {
    /// The stream's last bytes that could still begin a header.
    tail: Vec<u8>,
    messages: u64,
}

impl MessageCensus {
    pub fn new() -> MessageCensus {
        MessageCensus::default()
    }

    /// Counts the headers in `bytes`, where they lie: only a header still undecided at the
    /// end (at most [`HEADER_MAX`] bytes) is kept for the next push. It used to append every
    /// push to the kept bytes, which copied each archive segment once more (a twentieth of
    /// the replay's parse, `perf` of a 1M-message replay).
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.tail.is_empty() {
            // The kept headers are decided by at most a header's length of the new bytes.
            let kept = self.tail.len();
            let joined = bytes.len().min(HEADER_MAX);
            let mut window = std::mem::take(&mut self.tail);
            window.extend_from_slice(&bytes[..joined]);
            if let Some(undecided) = self.count(&window, kept) {
                // Still undecided: the push was shorter than a header, and all of it is kept.
                window.drain(..undecided);
                self.tail = window;
                return;
            }
            window.clear();
            self.tail = window;
        }
        let undecided = self.count(bytes, bytes.len()).unwrap_or(bytes.len());
        self.tail.extend_from_slice(&bytes[undecided..]);
    }

    /// Counts the decided headers of `window` that start before `starts_before`; returns
    /// where the first undecided one starts, counting none after it.
    ///
    /// A header is looked for where `8=FIX` stands whole, then in the last four bytes, where
    /// one may begin cut off. Every `8` was a candidate before: digits are common in FIX, and
    /// `memchr_iter`'s restart at each of them made the census a twentieth of a replay's
    /// parse (`perf` of a 1M-message replay).
    fn count(&mut self, window: &[u8], starts_before: usize) -> Option<usize> {
        let whole = BEGIN_STRING.find_iter(window);
        // A whole `8=FIX` needs five bytes: none starts in the last four.
        let cut_off = window.len().saturating_sub(BEGIN_LEN - 1)..window.len();
        for at in whole.chain(cut_off.filter(|&at| window[at] == b'8')) {
            if at >= starts_before {
                break;
            }
            match header_at(&window[at..]) {
                Some(true) => self.messages += 1,
                Some(false) => {}
                None => return Some(at),
            }
        }
        None
    }

    /// Ends the stream: a header cut off at the end is no message.
    pub fn finish(&mut self) {
        self.tail.clear();
    }

    /// Messages counted so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// True when `unit` (a framed unit's bytes) starts with a message header.
    pub fn starts_message(unit: &[u8]) -> bool {
        header_at(unit) == Some(true)
    }
}

/// Whether a header starts at `bytes[0]`: `None` while more bytes could still decide it.
fn header_at(bytes: &[u8]) -> Option<bool> {
    #[derive(Clone, Copy)]
    enum Expect {
        Literal(&'static [u8]),
        Version(usize),
        Digits(usize),
    }
    let mut expect = Expect::Literal(b"8=FIX");
    let mut matched = 0;
    for &b in bytes {
        expect = match expect {
            Expect::Literal(literal) => {
                if b != literal[matched] {
                    return Some(false);
                }
                matched += 1;
                if matched < literal.len() {
                    continue;
                }
                matched = 0;
                if literal == b"8=FIX" {
                    Expect::Version(0)
                } else {
                    Expect::Digits(0)
                }
            }
            Expect::Version(n) => match b {
                0x01 => Expect::Literal(b"9="),
                b'=' => return Some(false),
                _ if n == 10 => return Some(false),
                _ => Expect::Version(n + 1),
            },
            Expect::Digits(n) => match b {
                b'0'..=b'9' if n < 9 => Expect::Digits(n + 1),
                0x01 if n > 0 => return Some(true),
                _ => return Some(false),
            },
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(stream: &[u8], chunk: usize) -> u64 {
        let mut census = MessageCensus::new();
        for part in stream.chunks(chunk.max(1)) {
            census.push(part);
        }
        census.finish();
        census.messages()
    }

    #[test]
    fn counts_headers_however_the_stream_is_split() {
        let stream = b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01junk8=FIX.4.2\x019=12\x01\n\
                       8=FIXT.1.1\x019=1\x01 8=FIX\x018=FIX.4.4\x019=x\x01 8=FIX.4.4.very.long\x019=1\x01\
                       8=FIX8=FIX.4\x019=5\x01 8=FIX.4.4\x019=1234567890\x01 8=FIX.4.4\x019=8=FIX";
        for chunk in 1..stream.len() + 1 {
            assert_eq!(count(stream, chunk), 4, "chunk {chunk}");
        }
    }

    /// Every way of cutting the stream in three: a header split across pushes of any sizes,
    /// the longest header a census can count among them, is counted once.
    #[test]
    fn counts_headers_across_pushes_of_any_sizes() {
        let longest = b"8=FIX0123456789\x019=123456789\x01";
        assert_eq!(longest.len(), HEADER_MAX);
        assert_eq!(header_at(longest), Some(true));
        assert_eq!(header_at(&longest[..HEADER_MAX - 1]), None);
        let mut stream = b"x8=FIX.4.4\x019=5\x0135=0\x0110=000\x01".to_vec();
        stream.extend_from_slice(longest);
        stream.extend_from_slice(b"88=FIX8=FIX.4.2\x019=12\x0158=888\x01");
        stream.extend_from_slice(longest);
        for first in 0..=stream.len() {
            for second in first..=stream.len() {
                let mut census = MessageCensus::new();
                census.push(&stream[..first]);
                census.push(&stream[first..second]);
                census.push(&stream[second..]);
                census.finish();
                assert_eq!(census.messages(), 4, "cut at {first} and {second}");
            }
        }
    }

    #[test]
    fn a_header_cut_off_at_the_end_is_not_counted() {
        assert_eq!(count(b"8=FIX.4.4\x019=", 3), 0);
        assert!(MessageCensus::starts_message(b"8=FIX.4.4\x019=1\x01"));
        assert!(!MessageCensus::starts_message(b"8=FIX.4.4\x019=1"));
        assert!(!MessageCensus::starts_message(b"8=FIX.4.4\x0135=1\x01"));
    }
}
