//! FIX session layer, initiator side, as a pure state machine: bytes in, actions out, no I/O.
//!
//! It is the venue end of a drop copy, for the simulator: it numbers what it sends, keeps every
//! message for resends, and answers the acceptor's ResendRequest, TestRequest and Logout. With
//! it a gateway that dies mid-burst loses nothing: what was in the dead connection is asked for
//! again on the next Logon and sent again from the store.
//!
//! What it sends arrives already encoded from elsewhere (the simulator's stream);
//! [`Initiator::stamp`] puts the session's header on it. A message whose CheckSum is wrong on
//! purpose (a line error the simulator injects) goes out wrong but is stored intact, so the
//! resend the acceptor asks for repairs it, as a venue's resend from its message store would.
//!
//! The acceptor of a drop copy sends only administrative messages, so their sequence numbers
//! are not checked here: nothing the initiator would do differs if one were lost.

use std::collections::BTreeMap;
use std::time::Duration;

use super::encode::FixEncoder;
use super::framer::checksum;
use super::session::field;
use super::time::format_utc_timestamp;
use super::SOH;

/// Who the initiator is and whom it talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitiatorSettings {
    pub begin_string: String,
    /// Our SenderCompID.
    pub comp_id: String,
    /// The acceptor's CompID (our TargetCompID).
    pub counterparty: String,
    pub heartbeat: Duration,
}

/// What the caller must do after handing the initiator a message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InitiatorActions {
    /// Messages to write, in order.
    pub send: Vec<Vec<u8>>,
    /// Close the connection, with this reason.
    pub disconnect: Option<String>,
    /// The acceptor refused one of our messages (a session-level Reject): its text.
    pub rejected: Option<String>,
}

/// One sent message as it was meant to be: enough to send it again.
#[derive(Clone, Debug)]
struct Stored {
    msg_type: String,
    body: Vec<(u32, String)>,
    sending_time: i64,
}

impl Stored {
    /// Administrative messages are gap-filled rather than sent again (FIX session test case
    /// 10); a Reject (3) would be resent, but this initiator never sends one.
    fn administrative(&self) -> bool {
        matches!(self.msg_type.as_str(), "0" | "1" | "2" | "4" | "5" | "A")
    }
}

pub struct Initiator {
    settings: InitiatorSettings,
    encoder: FixEncoder,
    next_outgoing: u64,
    store: BTreeMap<u64, Stored>,
    logged_on: bool,
    /// Times in UTC nanoseconds.
    last_sent: i64,
    /// Messages sent again because the acceptor asked.
    resent: u64,
}

/// Header fields the initiator writes itself; everything else of a message is its body.
const HEADER_TAGS: [u32; 10] = [8, 9, 10, 35, 49, 56, 34, 52, 43, 122];

/// An encoded message taken apart.
struct Parsed {
    msg_type: String,
    body: Vec<(u32, String)>,
    checksum_right: bool,
}

/// `None` when the bytes are not one FIX message.
fn parse(message: &[u8]) -> Option<Parsed> {
    if !message.starts_with(b"8=") {
        return None;
    }
    let msg_type = String::from_utf8(field(message, 35)?.to_vec()).ok()?;
    let trailer = message
        .windows(4)
        .rposition(|w| w == [SOH, b'1', b'0', b'='])?
        + 1;
    let declared = std::str::from_utf8(&message[trailer + 3..])
        .ok()?
        .trim_end_matches(SOH as char)
        .parse::<u32>()
        .ok()?;
    let checksum_right = checksum(&message[..trailer]) == declared;
    let mut body = Vec::new();
    for pair in message[..trailer].split(|b| *b == SOH) {
        if pair.is_empty() {
            continue;
        }
        let text = std::str::from_utf8(pair).ok()?;
        let (tag, value) = text.split_once('=')?;
        let tag: u32 = tag.parse().ok()?;
        if !HEADER_TAGS.contains(&tag) {
            body.push((tag, value.to_owned()));
        }
    }
    Some(Parsed {
        msg_type,
        body,
        checksum_right,
    })
}

fn number(message: &[u8], tag: u32) -> Option<u64> {
    std::str::from_utf8(field(message, tag)?).ok()?.parse().ok()
}

impl Initiator {
    /// A session starting at sequence number 1.
    pub fn new(settings: InitiatorSettings) -> Initiator {
        Initiator {
            encoder: FixEncoder::new(&settings.begin_string),
            settings,
            next_outgoing: 1,
            store: BTreeMap::new(),
            logged_on: false,
            last_sent: 0,
            resent: 0,
        }
    }

    pub fn settings(&self) -> &InitiatorSettings {
        &self.settings
    }

    /// The sequence number the next message gets; one less is the last sent.
    pub fn next_outgoing(&self) -> u64 {
        self.next_outgoing
    }

    pub fn logged_on(&self) -> bool {
        self.logged_on
    }

    /// Messages sent again because the acceptor asked for them.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// The Logon that opens a connection: the sequence goes on where the last connection left
    /// it, and the acceptor asks for whatever it did not keep.
    pub fn logon(&mut self, now: i64) -> Vec<u8> {
        self.logged_on = false;
        let heartbeat = self.settings.heartbeat.as_secs().max(1).to_string();
        self.send_new("A", vec![(98, "0".into()), (108, heartbeat)], now)
    }

    pub fn logout(&mut self, now: i64) -> Vec<u8> {
        self.send_new("5", Vec::new(), now)
    }

    /// A TestRequest: the acceptor's Heartbeat with `id` proves it has read everything before.
    pub fn test_request(&mut self, id: &str, now: i64) -> Vec<u8> {
        self.send_new("1", vec![(112, id.to_owned())], now)
    }

    /// `message` (encoded elsewhere) under this session's header and next sequence number;
    /// `None` when the bytes are not a FIX message (junk goes on the line as it is).
    pub fn stamp(&mut self, message: &[u8], now: i64) -> Option<Vec<u8>> {
        let parsed = parse(message)?;
        let mut bytes = self.send_new(&parsed.msg_type, parsed.body, now);
        if !parsed.checksum_right {
            // The line error travels; the stored copy stays intact for the resend.
            crate::encode::break_checksum(&mut bytes);
        }
        Some(bytes)
    }

    /// A message of ours: `msg_type` with `body` under the session's header.
    pub fn application(&mut self, msg_type: &str, body: Vec<(u32, String)>, now: i64) -> Vec<u8> {
        self.send_new(msg_type, body, now)
    }

    /// A Heartbeat when nothing was sent for a heartbeat interval.
    pub fn on_tick(&mut self, now: i64) -> Option<Vec<u8>> {
        let interval = self.settings.heartbeat.as_nanos() as i64;
        (self.logged_on && now - self.last_sent >= interval)
            .then(|| self.send_new("0", vec![], now))
    }

    /// One message from the acceptor.
    pub fn on_message(&mut self, message: &[u8], now: i64) -> InitiatorActions {
        let mut actions = InitiatorActions::default();
        match field(message, 35).unwrap_or_default() {
            b"A" => self.logged_on = true,
            b"1" => {
                let id = String::from_utf8_lossy(field(message, 112).unwrap_or_default());
                let heartbeat = self.send_new("0", vec![(112, id.into_owned())], now);
                actions.send.push(heartbeat);
            }
            b"2" => {
                let begin = number(message, 7).unwrap_or(1).max(1);
                let last = self.next_outgoing - 1;
                let end = match number(message, 16) {
                    Some(0) | None => last,
                    Some(end) => end.min(last),
                };
                actions.send = self.resend(begin, end, now);
            }
            b"3" => {
                let text = String::from_utf8_lossy(field(message, 58).unwrap_or_default());
                let seq = String::from_utf8_lossy(field(message, 45).unwrap_or_default());
                actions.rejected = Some(format!("message {seq} rejected: {text}"));
            }
            b"5" => {
                let text = String::from_utf8_lossy(field(message, 58).unwrap_or_default());
                if self.logged_on {
                    // Our own Logout answered, or theirs: either way the session ends.
                    let reply = self.send_new("5", Vec::new(), now);
                    actions.send.push(reply);
                }
                self.logged_on = false;
                actions.disconnect = Some(format!("acceptor logged out: {text}"));
            }
            _ => {}
        }
        actions
    }

    /// Sequence numbers `begin..=end` again: application messages as they were meant to be
    /// (PossDupFlag, OrigSendingTime), each run of administrative ones as one
    /// SequenceReset-GapFill.
    fn resend(&mut self, begin: u64, end: u64, now: i64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut gap_from: Option<u64> = None;
        for seq in begin..=end {
            let stored = self
                .store
                .get(&seq)
                .filter(|s| !s.administrative())
                .cloned();
            let Some(stored) = stored else {
                gap_from.get_or_insert(seq);
                continue;
            };
            if let Some(from) = gap_from.take() {
                out.push(self.gap_fill(from, seq, now));
            }
            let mut header = vec![
                (43, "Y".to_owned()),
                (122, format_utc_timestamp(stored.sending_time)),
            ];
            header.extend(stored.body);
            out.push(self.encode(&stored.msg_type, seq, &header, now));
            self.resent += 1;
        }
        if let Some(from) = gap_from {
            out.push(self.gap_fill(from, end + 1, now));
        }
        out
    }

    fn gap_fill(&mut self, from: u64, next: u64, now: i64) -> Vec<u8> {
        let body = [
            (43, "Y".to_owned()),
            (122, format_utc_timestamp(now)),
            (123, "Y".to_owned()),
            (36, next.to_string()),
        ];
        self.encode("4", from, &body, now)
    }

    fn send_new(&mut self, msg_type: &str, body: Vec<(u32, String)>, now: i64) -> Vec<u8> {
        let seq = self.next_outgoing;
        self.next_outgoing += 1;
        let bytes = self.encode(msg_type, seq, &body, now);
        self.store.insert(
            seq,
            Stored {
                msg_type: msg_type.to_owned(),
                body,
                sending_time: now,
            },
        );
        bytes
    }

    fn encode(&mut self, msg_type: &str, seq: u64, body: &[(u32, String)], now: i64) -> Vec<u8> {
        let seq = seq.to_string();
        let sent = format_utc_timestamp(now);
        let mut fields: Vec<(u32, &str)> = vec![
            (49, &self.settings.comp_id),
            (56, &self.settings.counterparty),
            (34, &seq),
            (52, &sent),
        ];
        fields.extend(body.iter().map(|(t, v)| (*t, v.as_str())));
        self.last_sent = now;
        self.encoder.message(msg_type, &fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SequenceState, Session, SessionSettings};
    use crate::{Framed, Framer};

    const NOW: i64 = 1_764_104_400_000_000_000; // 2025-11-25 21:00:00 UTC

    fn initiator() -> Initiator {
        Initiator::new(InitiatorSettings {
            begin_string: "FIX.4.4".into(),
            comp_id: "EXCH".into(),
            counterparty: "EOD".into(),
            heartbeat: Duration::from_secs(30),
        })
    }

    fn acceptor(state: SequenceState) -> Session {
        Session::new(
            SessionSettings {
                begin_string: "FIX.4.4".into(),
                comp_id: "EOD".into(),
                counterparty: "EXCH".into(),
                max_latency: None,
            },
            state,
        )
    }

    /// A fill as the simulator encodes it: its own header, which the initiator replaces.
    fn fill(exec_id: &str) -> Vec<u8> {
        FixEncoder::new("FIX.4.4").message(
            "8",
            &[
                (49, "SIM"),
                (56, "ANY"),
                (34, "999"),
                (52, "20261125-20:59:00"),
                (17, exec_id),
                (150, "F"),
                (55, "SYM"),
                (54, "1"),
                (32, "100"),
                (31, "10.5"),
            ],
        )
    }

    /// Runs `bytes` through a framer (as the gateway does: a frame that fails validation never
    /// reaches the session) and the acceptor, and the acceptor's replies through the initiator,
    /// until neither has more to say. Returns the ExecIDs delivered.
    fn exchange(
        bytes: &[u8],
        acceptor: &mut Session,
        initiator: &mut Initiator,
        now: i64,
    ) -> Vec<String> {
        let mut delivered = Vec::new();
        let mut pending = vec![bytes.to_vec()];
        while let Some(bytes) = pending.pop() {
            let mut framer = Framer::default();
            framer.push(&bytes);
            framer.finish();
            let mut replies = Vec::new();
            while let Some(frame) = framer.next_frame() {
                if let Framed::Message { bytes, .. } = frame {
                    let actions = acceptor.on_message(bytes, now);
                    assert_eq!(actions.disconnect, None);
                    if actions.deliver {
                        let id = field(bytes, 17).expect("an application message is a fill");
                        delivered.push(String::from_utf8_lossy(id).into_owned());
                    }
                    replies.extend(actions.send);
                }
            }
            let mut answer = Vec::new();
            for reply in replies {
                let actions = initiator.on_message(&reply, now);
                assert_eq!(actions.rejected, None);
                answer.extend(actions.send.concat());
            }
            if !answer.is_empty() {
                pending.push(answer);
            }
        }
        delivered
    }

    #[test]
    fn stamping_replaces_the_header_and_keeps_the_body() {
        let mut initiator = initiator();
        initiator.logon(NOW);
        let stamped = initiator.stamp(&fill("X1"), NOW).unwrap();
        let text = String::from_utf8_lossy(&stamped).replace('\x01', "|");
        assert!(
            text.starts_with("8=FIX.4.4|9=")
                && text.contains("|35=8|49=EXCH|56=EOD|34=2|52=20251125-21:00:00.000|17=X1|"),
            "{text}"
        );
        assert!(!text.contains("SIM") && !text.contains("999"), "{text}");
        assert_eq!(initiator.stamp(b"GARBAGE\x01NOT\x01FIX\x01", NOW), None);
        assert_eq!(initiator.next_outgoing(), 3);
    }

    #[test]
    fn what_a_dead_connection_swallowed_is_resent_once_from_the_store() {
        let mut initiator = initiator();
        let mut gateway = acceptor(SequenceState::default());
        let logon = initiator.logon(NOW);
        exchange(&logon, &mut gateway, &mut initiator, NOW);
        assert!(initiator.logged_on());
        let mut delivered = Vec::new();
        for i in 0..10 {
            let bytes = initiator.stamp(&fill(&format!("X{i}")), NOW).unwrap();
            delivered.extend(exchange(&bytes, &mut gateway, &mut initiator, NOW));
        }
        // The gateway dies: it kept its state after X4 (seq 6), and X5..X9 went with it, with
        // a heartbeat between them.
        let kept = {
            let mut state = gateway.state().clone();
            state.next_incoming = 7;
            state
        };
        delivered.truncate(5);
        let _lost_heartbeat = initiator.on_tick(NOW + 31_000_000_000).unwrap();
        let mut restarted = acceptor(kept);
        let later = NOW + 32_000_000_000;
        let logon = initiator.logon(later);
        delivered.extend(exchange(&logon, &mut restarted, &mut initiator, later));
        for i in 10..12 {
            let bytes = initiator.stamp(&fill(&format!("X{i}")), later).unwrap();
            delivered.extend(exchange(&bytes, &mut restarted, &mut initiator, later));
        }
        let expected: Vec<String> = (0..12).map(|i| format!("X{i}")).collect();
        let mut sorted = delivered.clone();
        sorted.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
        assert_eq!(sorted, expected, "every fill delivered once: {delivered:?}");
        assert_eq!(initiator.resent(), 5);
        assert_eq!(restarted.state().next_incoming, initiator.next_outgoing());
    }

    #[test]
    fn a_garbled_message_is_repaired_by_the_resend_and_admin_messages_are_gap_filled() {
        let mut initiator = initiator();
        let mut gateway = acceptor(SequenceState::default());
        let logon = initiator.logon(NOW);
        exchange(&logon, &mut gateway, &mut initiator, NOW);
        let mut garbled = fill("X1");
        crate::encode::break_checksum(&mut garbled);
        let sent = initiator.stamp(&garbled, NOW).unwrap();
        let mut framer = Framer::default();
        framer.push(&sent);
        framer.finish();
        assert!(
            matches!(framer.next_frame(), Some(Framed::Dead { .. })),
            "the line error travels"
        );
        let mut delivered = exchange(&sent, &mut gateway, &mut initiator, NOW);
        let heartbeat = initiator.on_tick(NOW + 30_000_000_000).unwrap();
        // The heartbeat (seq 3) shows the gap: the resend brings seq 2 intact and gap-fills 3.
        delivered.extend(exchange(&heartbeat, &mut gateway, &mut initiator, NOW));
        let bytes = initiator.stamp(&fill("X2"), NOW).unwrap();
        delivered.extend(exchange(&bytes, &mut gateway, &mut initiator, NOW));
        assert_eq!(delivered, ["X1", "X2"]);
        assert_eq!(gateway.state().next_incoming, 5, "nothing left to ask for");
        assert!(gateway.state().received_ahead.is_empty());
        assert_eq!(initiator.resent(), 1);
    }

    #[test]
    fn test_requests_are_answered_and_a_logout_ends_the_session() {
        let mut initiator = initiator();
        let mut gateway = acceptor(SequenceState::default());
        let logon = initiator.logon(NOW);
        exchange(&logon, &mut gateway, &mut initiator, NOW);
        let request = FixEncoder::new("FIX.4.4")
            .message("1", &[(49, "EOD"), (56, "EXCH"), (34, "2"), (112, "T-1")]);
        let actions = initiator.on_message(&request, NOW);
        let reply = String::from_utf8_lossy(&actions.send.concat()).replace('\x01', "|");
        assert!(
            reply.contains("|35=0|") && reply.contains("|112=T-1|"),
            "{reply}"
        );
        let logout = FixEncoder::new("FIX.4.4")
            .message("5", &[(49, "EOD"), (56, "EXCH"), (34, "3"), (58, "bye")]);
        let actions = initiator.on_message(&logout, NOW);
        assert_eq!(actions.send.len(), 1);
        assert_eq!(
            actions.disconnect.as_deref(),
            Some("acceptor logged out: bye")
        );
        assert!(!initiator.logged_on());
    }
}
