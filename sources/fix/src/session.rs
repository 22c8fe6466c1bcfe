//! FIX session layer, acceptor side, as a pure state machine: bytes in, actions out, no I/O.
//!
//! Only configured counterparties may log on ([`Acceptor`]): a Logon from an unknown
//! SenderCompID, to another TargetCompID, in another BeginString or from an address the
//! counterparty is not allowed to use is answered with a Logout, and after Logon every message
//! must carry the session's BeginString and CompIDs.
//!
//! A drop-copy acceptor only ever sends administrative messages, so a ResendRequest from the
//! counterparty is always answered with a SequenceReset-GapFill. Incoming application messages
//! are delivered once per sequence number: because every downstream view is independent of
//! arrival order, a message beyond a gap is delivered at once (and just the gap requested)
//! instead of being held back; resent messages fill the holes and duplicates are dropped.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use eod_proto::DeadLetterReason;
use serde::{Deserialize, Serialize};

use super::decode::{check_structure, FieldFault, Reject};
use super::dictionary;
use super::encode::FixEncoder;
use super::time::{format_utc_timestamp, parse_utc_timestamp};
use super::SOH;

/// Sequence state that must survive a reconnect (persist it after every processed read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceState {
    /// Lowest incoming sequence number not yet received.
    pub next_incoming: u64,
    /// Received sequence numbers above `next_incoming` (the far side of a gap).
    pub received_ahead: BTreeSet<u64>,
    pub next_outgoing: u64,
}

impl Default for SequenceState {
    fn default() -> Self {
        SequenceState {
            next_incoming: 1,
            received_ahead: BTreeSet::new(),
            next_outgoing: 1,
        }
    }
}

impl SequenceState {
    fn received(&self, seq: u64) -> bool {
        seq < self.next_incoming || self.received_ahead.contains(&seq)
    }

    fn mark_received(&mut self, seq: u64) {
        if seq == self.next_incoming {
            self.next_incoming += 1;
            while self.received_ahead.remove(&self.next_incoming) {
                self.next_incoming += 1;
            }
        } else if seq > self.next_incoming {
            self.received_ahead.insert(seq);
        }
    }
}

/// One session's identity: what every message in it must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSettings {
    pub begin_string: String,
    /// Our SenderCompID (the counterparty's TargetCompID).
    pub comp_id: String,
    /// Their SenderCompID.
    pub counterparty: String,
    /// How far a message's SendingTime may be from our clock; `None`: not checked.
    pub max_latency: Option<Duration>,
}

/// A counterparty allowed to log on: `SENDERCOMPID[:BEGINSTRING][@ADDRESS[/PREFIX]]`, e.g.
/// `ACME`, `ACME:FIX.4.2` or `ACME@10.1.2.0/24` (repeat the entry for more addresses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterparty {
    pub sender_comp_id: String,
    /// `None`: the acceptor's default BeginString.
    pub begin_string: Option<String>,
    /// `None`: any source address.
    pub address: Option<IpNet>,
}

impl FromStr for Counterparty {
    type Err = String;

    fn from_str(text: &str) -> Result<Counterparty, String> {
        let (identity, address) = match text.split_once('@') {
            Some((identity, address)) => {
                let address = address
                    .parse::<IpNet>()
                    .or_else(|_| address.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{address}` is not an IP address or network"))?;
                (identity, Some(address))
            }
            None => (text, None),
        };
        let (sender, begin_string) = match identity.split_once(':') {
            Some((sender, begin)) if begin.starts_with("FIX") => (sender, Some(begin.to_owned())),
            Some((_, begin)) => return Err(format!("`{begin}` is not a FIX BeginString")),
            None => (identity, None),
        };
        let valid = |c: char| c.is_ascii_graphic() && !matches!(c, '/' | '\\' | ':' | '@');
        if sender.is_empty() || !sender.chars().all(valid) {
            return Err(format!(
                "`{sender}` is not a SenderCompID (printable ASCII without / \\ : @)"
            ));
        }
        Ok(Counterparty {
            sender_comp_id: sender.to_owned(),
            begin_string,
            address,
        })
    }
}

/// Why a first message opened no session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The first message is not a Logon: the connection is closed without a reply.
    NotLogon,
    UnknownSender(String),
    WrongTarget(String),
    WrongBeginString(String),
    AddressNotAllowed {
        sender: String,
        peer: IpAddr,
    },
    /// No Logon arrived within the acceptor's Logon timeout (garbage, or nothing at all).
    LogonTimeout(Duration),
}

impl Refusal {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::NotLogon => "not_logon",
            Refusal::UnknownSender(_) => "unknown_sender",
            Refusal::WrongTarget(_) => "wrong_target",
            Refusal::WrongBeginString(_) => "wrong_begin_string",
            Refusal::AddressNotAllowed { .. } => "address_not_allowed",
            Refusal::LogonTimeout(_) => "logon_timeout",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotLogon => write!(f, "first message must be a Logon"),
            Refusal::UnknownSender(sender) => {
                write!(
                    f,
                    "SenderCompID {sender:?} is not a configured counterparty"
                )
            }
            Refusal::WrongTarget(target) => write!(f, "TargetCompID {target:?} is not ours"),
            Refusal::WrongBeginString(begin) => {
                write!(f, "BeginString {begin:?} is not this session's")
            }
            Refusal::AddressNotAllowed { sender, peer } => {
                write!(f, "{sender} may not log on from {peer}")
            }
            Refusal::LogonTimeout(timeout) => {
                write!(f, "no Logon within {} s", timeout.as_secs_f64())
            }
        }
    }
}

/// The acceptor's side of Logon: who we are and who may connect.
#[derive(Clone, Debug)]
pub struct Acceptor {
    pub comp_id: String,
    /// The BeginString of counterparties that name none.
    pub begin_string: String,
    pub counterparties: Vec<Counterparty>,
    /// A connection that has not logged on by then is closed.
    pub logon_timeout: Duration,
    /// How far a message's SendingTime may be from our clock; `None`: not checked.
    pub max_latency: Option<Duration>,
}

impl Acceptor {
    /// The session a connection's first message opens, or why it opens none.
    pub fn accept(&self, message: &[u8], peer: IpAddr) -> Result<SessionSettings, Refusal> {
        let text = |tag| String::from_utf8_lossy(field(message, tag).unwrap_or_default());
        if field(message, 35) != Some(b"A") {
            return Err(Refusal::NotLogon);
        }
        let sender = text(49).into_owned();
        let known: Vec<&Counterparty> = self
            .counterparties
            .iter()
            .filter(|c| c.sender_comp_id == sender)
            .collect();
        if known.is_empty() {
            return Err(Refusal::UnknownSender(sender));
        }
        if field(message, 56) != Some(self.comp_id.as_bytes()) {
            return Err(Refusal::WrongTarget(text(56).into_owned()));
        }
        let begin_string = text(8).into_owned();
        let speaks = |c: &Counterparty| {
            c.begin_string.as_deref().unwrap_or(&self.begin_string) == begin_string
        };
        if !known.iter().any(|c| speaks(c)) {
            return Err(Refusal::WrongBeginString(begin_string));
        }
        // An IPv4 peer on a dual-stack listener arrives as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        let allowed = |c: &Counterparty| c.address.is_none_or(|net| net.contains(&peer));
        if !known.iter().any(|c| speaks(c) && allowed(c)) {
            return Err(Refusal::AddressNotAllowed { sender, peer });
        }
        Ok(SessionSettings {
            begin_string,
            comp_id: self.comp_id.clone(),
            counterparty: sender,
            max_latency: self.max_latency,
        })
    }

    /// The Logout that answers a refused Logon. A stranger gets no session state: the
    /// message is numbered 1 and nothing is persisted.
    pub fn refusal_logout(&self, message: &[u8], refusal: &Refusal, now: i64) -> Vec<u8> {
        let to = String::from_utf8_lossy(field(message, 49).unwrap_or_default()).into_owned();
        let text = refusal.to_string();
        FixEncoder::new(&self.begin_string).message(
            "5",
            &[
                (49, self.comp_id.as_str()),
                (56, to.as_str()),
                (34, "1"),
                (52, format_utc_timestamp(now).as_str()),
                (58, text.as_str()),
            ],
        )
    }
}

/// What the caller must do after a message or a timer tick.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Messages to write to the counterparty, in order.
    pub send: Vec<Vec<u8>>,
    /// The message is an application message to process (archive already has it).
    pub deliver: bool,
    /// Close the connection after sending, with this reason.
    pub disconnect: Option<String>,
}

pub struct Session {
    settings: SessionSettings,
    state: SequenceState,
    encoder: FixEncoder,
    logged_on: bool,
    heartbeat: Duration,
    /// Times in UTC nanoseconds.
    last_received: i64,
    last_sent: i64,
    test_request_sent: Option<i64>,
    /// Every sequence number up to this one was received or has been asked for again.
    asked_through: u64,
    test_requests: u64,
}

/// The first value of `tag` in a message (header fields come first, where a session looks).
pub fn field(message: &[u8], tag: u32) -> Option<&[u8]> {
    let prefix = format!("{tag}=");
    message
        .split(|b| *b == SOH)
        .find_map(|f| f.strip_prefix(prefix.as_bytes()))
}

fn number(message: &[u8], tag: u32) -> Option<u64> {
    std::str::from_utf8(field(message, tag)?).ok()?.parse().ok()
}

impl Session {
    pub fn new(settings: SessionSettings, state: SequenceState) -> Session {
        Session {
            encoder: FixEncoder::new(&settings.begin_string),
            settings,
            state,
            logged_on: false,
            heartbeat: Duration::from_secs(30),
            last_received: 0,
            last_sent: 0,
            test_request_sent: None,
            asked_through: 0,
            test_requests: 0,
        }
    }

    pub fn state(&self) -> &SequenceState {
        &self.state
    }

    pub fn logged_on(&self) -> bool {
        self.logged_on
    }

    /// Builds an administrative message with the next outgoing sequence number.
    fn admin(&mut self, now: i64, msg_type: &str, body: &[(u32, String)]) -> Vec<u8> {
        let seq = self.state.next_outgoing;
        self.state.next_outgoing += 1;
        self.stamped(now, msg_type, seq, body)
    }

    fn stamped(&mut self, now: i64, msg_type: &str, seq: u64, body: &[(u32, String)]) -> Vec<u8> {
        let mut fields: Vec<(u32, String)> = vec![
            (49, self.settings.comp_id.clone()),
            (56, self.settings.counterparty.clone()),
            (34, seq.to_string()),
            (52, format_utc_timestamp(now)),
        ];
        fields.extend(body.iter().cloned());
        let borrowed: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
        self.last_sent = now;
        self.encoder.message(msg_type, &borrowed)
    }

    fn logout(&mut self, now: i64, text: String, actions: &mut Actions) {
        let message = self.admin(now, "5", &[(58, text.clone())]);
        actions.send.push(message);
        actions.disconnect = Some(text);
    }

    /// Handles one framed, checksum-valid message received at `now` (UTC nanoseconds).
    pub fn on_message(&mut self, message: &[u8], now: i64) -> Actions {
        let mut actions = Actions::default();
        self.last_received = now;
        self.test_request_sent = None;
        let msg_type = field(message, 35).unwrap_or_default().to_vec();
        if field(message, 8) != Some(self.settings.begin_string.as_bytes()) {
            let text = format!(
                "incorrect BeginString {:?}, expecting {}",
                String::from_utf8_lossy(field(message, 8).unwrap_or_default()),
                self.settings.begin_string
            );
            self.logout(now, text, &mut actions);
            return actions;
        }
        let comp_ids_match = field(message, 49) == Some(self.settings.counterparty.as_bytes())
            && field(message, 56) == Some(self.settings.comp_id.as_bytes());
        if !comp_ids_match {
            let problem = SessionProblem {
                reason: 9,
                ref_tag: None,
                text: "CompID problem".to_owned(),
            };
            self.reject_and_logout(message, &msg_type, now, problem, &mut actions);
            return actions;
        }
        if let Some(problem) = self.sending_time_problem(message, now) {
            self.reject_and_logout(message, &msg_type, now, problem, &mut actions);
            return actions;
        }
        // A Logon with ResetSeqNumFlag during a session starts both sequences over, like a
        // first Logon that asks for it (FIX session test case 1d's mid-session variant).
        let reset_logon = msg_type == b"A" && field(message, 141) == Some(b"Y");
        if !self.logged_on || reset_logon {
            if msg_type != b"A" {
                actions.disconnect = Some("first message must be a Logon".into());
                return actions;
            }
            self.logged_on = true;
            if let Some(seconds) = number(message, 108).filter(|s| *s > 0) {
                self.heartbeat = Duration::from_secs(seconds);
            }
            let reset = field(message, 141) == Some(b"Y");
            if reset {
                self.state = SequenceState::default();
                self.asked_through = 0;
            }
            let mut body = vec![
                (98, "0".to_owned()),
                (108, self.heartbeat.as_secs().to_string()),
            ];
            if reset {
                body.push((141, "Y".into()));
            }
            let reply = self.admin(now, "A", &body);
            actions.send.push(reply);
        }
        let Some(seq) = number(message, 34) else {
            self.logout(now, "MsgSeqNum (34) missing".into(), &mut actions);
            return actions;
        };
        // The session acts on its administrative messages itself, so it checks their structure
        // here (FIX session test cases 14a-14j); application messages are checked by the
        // classifier, which answers through `reject_invalid`. A refused message still counts
        // as received: the sender is told, not asked to resend it. Logons are left to the
        // counterparty check above.
        let admin = dictionary::admin_body(&msg_type).is_some();
        if admin && msg_type != b"A" {
            if let Err(reject) = check_structure(message) {
                if !self.state.received(seq) {
                    self.state.mark_received(seq);
                }
                let reply = self.reject_invalid(message, &reject, now);
                actions.send.push(reply);
                return actions;
            }
        }
        let gap_fill = msg_type == b"4" && field(message, 123) == Some(b"Y");
        if msg_type == b"4" && !gap_fill {
            // SequenceReset-Reset ignores its own MsgSeqNum and moves the expectation forward,
            // never back: a NewSeqNo below the expected one is rejected (FIX session test
            // case 11c: out of range for tag 36) and the expectation stays.
            match number(message, 36) {
                Some(new_seq) if new_seq > self.state.next_incoming => {
                    self.state.next_incoming = new_seq;
                    self.state.received_ahead = self.state.received_ahead.split_off(&new_seq);
                    while self.state.received_ahead.remove(&self.state.next_incoming) {
                        self.state.next_incoming += 1;
                    }
                }
                Some(new_seq) if new_seq < self.state.next_incoming => {
                    let problem = SessionProblem {
                        reason: 5,
                        ref_tag: Some(36),
                        text: format!(
                            "NewSeqNo {new_seq} is below the expected {}",
                            self.state.next_incoming
                        ),
                    };
                    let reject = self.session_reject(now, Some(seq), Some(b"4"), &problem);
                    actions.send.push(reject);
                }
                _ => {}
            }
            return actions;
        }
        if self.state.received(seq) {
            if field(message, 43) == Some(b"Y") {
                self.check_possible_duplicate(message, seq, &msg_type, now, &mut actions);
                return actions;
            }
            if seq < self.state.next_incoming && msg_type != b"A" {
                let text = format!(
                    "MsgSeqNum too low, expecting {} but received {seq}",
                    self.state.next_incoming
                );
                self.logout(now, text, &mut actions);
            }
            return actions;
        }
        let unasked_from = self.state.next_incoming.max(self.asked_through + 1);
        if seq > unasked_from {
            // A closed range, just the new hole: what lies beyond it is delivered already, and
            // an open-ended request would have the sender repeat all of that (thousands of
            // messages for one garbled frame in a burst).
            let range = [(7, unasked_from.to_string()), (16, (seq - 1).to_string())];
            let request = self.admin(now, "2", &range);
            actions.send.push(request);
        }
        self.asked_through = self.asked_through.max(seq);
        if gap_fill {
            let new_seq = number(message, 36).unwrap_or(seq + 1);
            for filled in seq..new_seq.max(seq + 1) {
                self.state.mark_received(filled);
            }
            return actions;
        }
        self.state.mark_received(seq);
        match msg_type.as_slice() {
            b"A" | b"0" | b"3" => {}
            b"1" => {
                let id = field(message, 112)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let heartbeat = self.admin(now, "0", &[(112, id)]);
                actions.send.push(heartbeat);
            }
            b"2" => {
                // We send only admin messages: gap-fill the whole range they asked for.
                let begin = number(message, 7).unwrap_or(1);
                let next = self.state.next_outgoing;
                let fill = self.stamped(
                    now,
                    "4",
                    begin,
                    &[
                        (43, "Y".into()),
                        // What it replaces was sent earlier; the gap fill itself is new
                        // (FIX session test case 10: PossDupFlag with OrigSendingTime).
                        (122, format_utc_timestamp(now)),
                        (123, "Y".into()),
                        (36, next.to_string()),
                    ],
                );
                actions.send.push(fill);
            }
            b"5" => {
                let reply = self.admin(now, "5", &[]);
                actions.send.push(reply);
                actions.disconnect = Some("counterparty logged out".into());
            }
            _ => actions.deliver = true,
        }
        actions
    }

    /// SendingTime missing, unreadable or further from our clock than the session allows
    /// (FIX session test case 2r: SendingTime accuracy problem).
    fn sending_time_problem(&self, message: &[u8], now: i64) -> Option<SessionProblem> {
        let limit = self.settings.max_latency?;
        let problem = |reason, ref_tag, text: String| {
            Some(SessionProblem {
                reason,
                ref_tag,
                text,
            })
        };
        let Some(value) = field(message, 52) else {
            return problem(1, Some(52), "SendingTime (52) is required".into());
        };
        let Some(sent) = parse_utc_timestamp(value) else {
            return problem(
                6,
                Some(52),
                "SendingTime (52) is not a UTC timestamp".into(),
            );
        };
        let off = Duration::from_nanos(now.abs_diff(sent));
        if off <= limit {
            return None;
        }
        problem(
            10,
            None,
            format!(
                "SendingTime accuracy problem: {:.0?} from our clock, more than {limit:?}",
                off
            ),
        )
    }

    /// Rejects the message with `problem`, counts its sequence number as received, and logs
    /// out: the session cannot trust what follows.
    fn reject_and_logout(
        &mut self,
        message: &[u8],
        msg_type: &[u8],
        now: i64,
        problem: SessionProblem,
        actions: &mut Actions,
    ) {
        let seq = number(message, 34);
        if let Some(seq) = seq {
            self.state.mark_received(seq);
        }
        let reject = self.session_reject(now, seq, Some(msg_type), &problem);
        actions.send.push(reject);
        self.logout(now, problem.text, actions);
    }

    /// A session-level Reject (35=3) of message `ref_seq` of type `msg_type`.
    fn session_reject(
        &mut self,
        now: i64,
        ref_seq: Option<u64>,
        msg_type: Option<&[u8]>,
        problem: &SessionProblem,
    ) -> Vec<u8> {
        let mut body = Vec::new();
        if let Some(seq) = ref_seq {
            body.push((45, seq.to_string()));
        }
        if let Some(tag) = problem.ref_tag {
            body.push((371, tag.to_string()));
        }
        if let Some(msg_type) = msg_type {
            body.push((372, String::from_utf8_lossy(msg_type).into_owned()));
        }
        body.push((373, problem.reason.to_string()));
        body.push((58, problem.text.clone()));
        self.admin(now, "3", &body)
    }

    /// A resent message (PossDupFlag) we already have: dropped, once its OrigSendingTime is
    /// checked (FIX session test cases 2f, 2g): without one it is rejected (required tag
    /// missing, 122) and the session goes on; one later than its SendingTime is rejected
    /// (SendingTime accuracy) and the session logged out.
    fn check_possible_duplicate(
        &mut self,
        message: &[u8],
        seq: u64,
        msg_type: &[u8],
        now: i64,
        actions: &mut Actions,
    ) {
        let original = field(message, 122);
        let sending = field(message, 52).and_then(parse_utc_timestamp);
        let field_problem = |reason, text: &str| SessionProblem {
            reason,
            ref_tag: Some(122),
            text: text.to_owned(),
        };
        let problem = match original.map(parse_utc_timestamp) {
            None => field_problem(
                1,
                "OrigSendingTime (122) is required on a possible duplicate",
            ),
            Some(None) => field_problem(6, "OrigSendingTime (122) is not a UTC timestamp"),
            Some(Some(original)) if sending.is_some_and(|sending| original <= sending) => return,
            Some(Some(_)) => {
                let problem = SessionProblem {
                    reason: 10,
                    ref_tag: None,
                    text: "OrigSendingTime (122) is later than SendingTime (52)".to_owned(),
                };
                let reject = self.session_reject(now, Some(seq), Some(msg_type), &problem);
                actions.send.push(reject);
                self.logout(now, problem.text, actions);
                return;
            }
        };
        let reject = self.session_reject(now, Some(seq), Some(msg_type), &problem);
        actions.send.push(reject);
    }

    /// A session-level Reject (35=3) for an application message the session delivered and the
    /// classifier then refused (FIX session test cases 14a-14i): the sender learns which field
    /// was at fault and why, the session goes on, and the message is still dead-lettered by
    /// the caller. Its sequence number was counted when it was delivered.
    pub fn reject_invalid(&mut self, message: &[u8], reject: &Reject, now: i64) -> Vec<u8> {
        let problem = SessionProblem {
            reason: session_reject_reason(reject),
            ref_tag: reject.field.map(|field| field.tag),
            text: reject.to_string(),
        };
        self.session_reject(now, number(message, 34), field(message, 35), &problem)
    }

    /// Heartbeats and liveness: call at least once a second.
    pub fn on_tick(&mut self, now: i64) -> Actions {
        let mut actions = Actions::default();
        if !self.logged_on() {
            return actions;
        }
        let interval = self.heartbeat.as_nanos() as i64;
        if let Some(sent) = self.test_request_sent {
            if now - sent >= interval {
                actions.disconnect = Some("no answer to TestRequest".into());
            }
            return actions;
        }
        if now - self.last_received >= interval + interval / 5 {
            self.test_requests += 1;
            let id = format!("TEST-{}", self.test_requests);
            let request = self.admin(now, "1", &[(112, id)]);
            actions.send.push(request);
            self.test_request_sent = Some(now);
        } else if now - self.last_sent >= interval {
            let heartbeat = self.admin(now, "0", &[]);
            actions.send.push(heartbeat);
        }
        actions
    }
}

/// Why a message is rejected at the session level: SessionRejectReason (373), the field at
/// fault (RefTagID, 371) and the text (58).
struct SessionProblem {
    reason: u32,
    ref_tag: Option<u32>,
    text: String,
}

/// SessionRejectReason (373) for what the classifier found wrong with a message.
fn session_reject_reason(reject: &Reject) -> u32 {
    match (reject.field.map(|field| field.fault), reject.reason) {
        (Some(FieldFault::Missing), _) => 1,
        (Some(FieldFault::NoValue), _) => 4,
        (Some(FieldFault::OutOfRange), _) => 5,
        (Some(FieldFault::BadFormat), _) => 6,
        // Invalid tag number, as QuickFIX answers case 14a (3, "undefined tag", is the other
        // reading of the standard).
        (Some(FieldFault::Undefined), _) => 0,
        (Some(FieldFault::NotInMessageType), _) => 2,
        (Some(FieldFault::Repeated), _) => 13,
        (Some(FieldFault::OutOfOrder), _) => 14,
        (Some(FieldFault::GroupOrder), _) => 15,
        (Some(FieldFault::GroupCount), _) => 16,
        // A field the decoder could not split into tag and value.
        (None, DeadLetterReason::Garbled) => 0,
        (None, _) => 99,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn initiator(seq: u64, msg_type: &str, extra: &[(u32, &str)]) -> Vec<u8> {
        let seq = seq.to_string();
        let mut fields: Vec<(u32, &str)> = vec![
            (49, "CLIENT"),
            (56, "EOD"),
            (34, &seq),
            (52, "20261125-21:00:00"),
        ];
        fields.extend_from_slice(extra);
        FixEncoder::new("FIX.4.4").message(msg_type, &fields)
    }

    fn settings() -> SessionSettings {
        SessionSettings {
            begin_string: "FIX.4.4".into(),
            comp_id: "EOD".into(),
            counterparty: "CLIENT".into(),
            // The messages here are stamped 2026-11-25 21:00 and handled at small `now`s;
            // the SendingTime check has its own test.
            max_latency: None,
        }
    }

    fn session() -> Session {
        Session::new(settings(), SequenceState::default())
    }

    fn logged_on() -> Session {
        let mut s = session();
        let actions = s.on_message(&initiator(1, "A", &[(98, "0"), (108, "30")]), 0);
        assert_eq!(actions.send.len(), 1);
        s
    }

    fn msg_type(message: &[u8]) -> String {
        String::from_utf8_lossy(field(message, 35).unwrap()).into_owned()
    }

    /// A session that has delivered message 2, and what it did with 2 sent again with `extra`.
    fn resend_of_the_last(extra: &[(u32, &str)]) -> (Session, Actions) {
        let mut s = logged_on();
        assert!(s.on_message(&initiator(2, "8", &[]), S).deliver);
        let actions = s.on_message(&initiator(2, "8", extra), S);
        (s, actions)
    }

    /// The body of an execution report the decoder takes as a fill.
    fn valid_fill() -> Vec<(u32, &'static str)> {
        vec![
            (37, "O1"),
            (17, "X1"),
            (150, "F"),
            (39, "2"),
            (55, "AAA"),
            (54, "1"),
            (32, "100"),
            (31, "10"),
            (60, "20261125-21:00:00"),
            (1, "ACC"),
        ]
    }

    /// `message` is a session Reject of `ref_seq` with this reason (373) and field (371).
    fn assert_reject(message: &[u8], reason: &str, ref_tag: Option<&str>, ref_seq: u64) {
        assert_eq!(msg_type(message), "3");
        assert_eq!(field(message, 373), Some(reason.as_bytes()));
        assert_eq!(field(message, 371), ref_tag.map(str::as_bytes));
        assert_eq!(number(message, 45), Some(ref_seq));
    }

    #[test]
    fn logon_is_answered_and_application_messages_delivered_in_sequence() {
        let mut s = session();
        let actions = s.on_message(&initiator(1, "A", &[(98, "0"), (108, "30")]), 0);
        assert_eq!(msg_type(&actions.send[0]), "A");
        assert_eq!(field(&actions.send[0], 56), Some(&b"CLIENT"[..]));
        assert!(!actions.deliver);
        assert!(s.on_message(&initiator(2, "8", &[]), S).deliver);
        assert!(s.on_message(&initiator(3, "8", &[]), S).deliver);
        assert_eq!(s.state().next_incoming, 4);
    }

    #[test]
    fn anything_before_logon_is_refused() {
        let actions = session().on_message(&initiator(1, "8", &[]), 0);
        assert!(actions.disconnect.is_some() && !actions.deliver);
        let wrong_target =
            FixEncoder::new("FIX.4.4").message("A", &[(49, "C"), (56, "OTHER"), (34, "1")]);
        assert!(session().on_message(&wrong_target, 0).disconnect.is_some());
    }

    #[test]
    fn gap_is_requested_once_resends_fill_it_and_duplicates_are_dropped() {
        let mut s = logged_on();
        // 2 arrives, 3..4 are lost, 5 arrives: deliver 5 and ask for 3..4.
        assert!(s.on_message(&initiator(2, "8", &[]), S).deliver);
        let actions = s.on_message(&initiator(5, "8", &[]), S);
        assert!(actions.deliver);
        assert_eq!(msg_type(&actions.send[0]), "2");
        assert_eq!(number(&actions.send[0], 7), Some(3));
        assert_eq!(number(&actions.send[0], 16), Some(4));
        // 6 arrives before the resend: no second request.
        let actions = s.on_message(&initiator(6, "8", &[]), S);
        assert!(actions.deliver && actions.send.is_empty());
        // 8 arrives: only the new hole, 7, is asked for.
        let actions = s.on_message(&initiator(8, "8", &[]), S);
        assert_eq!(
            (number(&actions.send[0], 7), number(&actions.send[0], 16)),
            (Some(7), Some(7))
        );
        // The resend: 3 and 4 with PossDup, then 5 again, which is a duplicate.
        assert!(s.on_message(&initiator(3, "8", &[(43, "Y")]), S).deliver);
        assert!(s.on_message(&initiator(4, "8", &[(43, "Y")]), S).deliver);
        assert!(!s.on_message(&initiator(5, "8", &[(43, "Y")]), S).deliver);
        assert!(s.on_message(&initiator(7, "8", &[(43, "Y")]), S).deliver);
        assert_eq!(s.state().next_incoming, 9);
        assert!(s.state().received_ahead.is_empty());
        // The gap closed: a new one is requested afresh.
        let actions = s.on_message(&initiator(11, "8", &[]), S);
        assert!(actions.deliver);
        assert_eq!(number(&actions.send[0], 7), Some(9));
        assert_eq!(number(&actions.send[0], 16), Some(10));
    }

    #[test]
    fn gap_fill_and_reset_move_the_expected_sequence() {
        let mut s = logged_on();
        s.on_message(&initiator(4, "8", &[]), S);
        // They gap-fill 2..3 (admin messages they will not resend).
        s.on_message(&initiator(2, "4", &[(43, "Y"), (123, "Y"), (36, "4")]), S);
        assert_eq!(s.state().next_incoming, 5);
        s.on_message(&initiator(99, "4", &[(36, "20")]), S);
        assert_eq!(s.state().next_incoming, 20);
    }

    /// FIX session test case 11c: a SequenceReset-Reset may not move the expected number
    /// back; it is rejected (out of range, tag 36) and the session goes on.
    #[test]
    fn a_reset_below_the_expected_number_is_rejected() {
        let mut s = logged_on();
        s.on_message(&initiator(2, "8", &[]), S);
        s.on_message(&initiator(3, "8", &[]), S);
        let actions = s.on_message(&initiator(4, "4", &[(36, "2")]), S);
        assert!(!actions.deliver && actions.disconnect.is_none());
        let reject = &actions.send[0];
        // Value out of range for NewSeqNo.
        assert_reject(reject, "5", Some("36"), 4);
        assert_eq!(field(reject, 372), Some(&b"4"[..]));
        assert_eq!(
            s.state().next_incoming,
            4,
            "the expectation does not move back"
        );
        // Equal to the expected one: accepted, nothing to do.
        let actions = s.on_message(&initiator(9, "4", &[(36, "4")]), S);
        assert!(actions.send.is_empty() && actions.disconnect.is_none());
        assert!(s.on_message(&initiator(4, "8", &[]), S).deliver);
    }

    /// FIX session test case 2g: a resent message without OrigSendingTime is rejected
    /// (required tag missing, 122), and the session goes on.
    #[test]
    fn a_possible_duplicate_without_orig_sending_time_is_rejected() {
        let (mut s, actions) = resend_of_the_last(&[(43, "Y")]);
        assert!(!actions.deliver && actions.disconnect.is_none());
        // Required tag missing: OrigSendingTime.
        assert_reject(&actions.send[0], "1", Some("122"), 2);
        assert!(s.on_message(&initiator(3, "8", &[]), S).deliver);
    }

    /// FIX session test case 2f: OrigSendingTime later than SendingTime is a SendingTime
    /// accuracy problem: Reject, then Logout.
    #[test]
    fn a_possible_duplicate_sent_before_its_original_is_rejected_and_logged_out() {
        let (_, actions) = resend_of_the_last(&[(43, "Y"), (122, "20261125-21:00:05")]);
        assert!(!actions.deliver);
        assert_eq!(msg_type(&actions.send[0]), "3");
        assert_eq!(field(&actions.send[0], 373), Some(&b"10"[..]));
        assert_eq!(msg_type(&actions.send[1]), "5");
        assert!(actions.disconnect.is_some());
    }

    /// A proper resend of something we have (OrigSendingTime not after SendingTime) is
    /// dropped without a word.
    #[test]
    fn a_possible_duplicate_with_its_orig_sending_time_is_dropped_quietly() {
        let (_, actions) = resend_of_the_last(&[(43, "Y"), (122, "20261125-20:59:59")]);
        assert_eq!(actions, Actions::default());
    }

    /// FIX session test cases 14b-14e (required tag missing, tag without a value, value out of
    /// range, bad data format), as far as the decoder judges a message: the sender
    /// gets a Reject naming the field and the reason, the session stays up, and the next
    /// message is expected after the rejected one.
    #[test]
    fn an_invalid_application_message_is_rejected_and_the_session_goes_on() {
        // A valid fill with one field taken out (no value) or changed.
        let report = |tag: u32, value: Option<&'static str>| {
            let mut body = valid_fill();
            match value {
                None => body.retain(|(t, _)| *t != tag),
                Some(value) => body
                    .iter_mut()
                    .filter(|(t, _)| *t == tag)
                    .for_each(|f| f.1 = value),
            }
            body
        };
        let cases = [
            (report(17, None), "1", Some("17")),
            (report(32, Some("")), "4", Some("32")),
            (report(54, Some("Q")), "5", Some("54")),
            (report(31, Some("ten")), "6", Some("31")),
        ];
        let mut s = logged_on();
        let mut decoder = crate::Decoder::default();
        for (seq, (body, reason, ref_tag)) in (2u64..).zip(cases) {
            let message = initiator(seq, "8", &body);
            assert!(s.on_message(&message, S).deliver);
            let verdict = decoder
                .decode(&message)
                .expect_err("the decoder refuses it");
            let reject = s.reject_invalid(&message, &verdict, S);
            assert_reject(&reject, reason, ref_tag, seq);
            assert_eq!(field(&reject, 372), Some(&b"8"[..]), "{verdict}");
            assert!(s.logged_on());
            assert_eq!(s.state().next_incoming, seq + 1);
        }
    }

    /// FIX session test cases 14a and 14g-14j on the message type this acceptor acts on: an
    /// execution report with an undefined tag, a header field after the body, a repeated tag,
    /// a wrong NumInGroup, a group entry out of order. Each gets its Reject reason and field,
    /// and the session goes on.
    #[test]
    fn a_malformed_application_message_is_rejected_and_the_session_goes_on() {
        let fill = |extra: &[(u32, &'static str)]| {
            let mut body = valid_fill();
            body.extend_from_slice(extra);
            body
        };
        let cases = [
            (fill(&[(999, "HI")]), "0", "999"),
            (fill(&[(50, "DESK")]), "14", "50"),
            (fill(&[(31, "11")]), "13", "31"),
            (
                fill(&[
                    (453, "3"),
                    (448, "T1"),
                    (452, "12"),
                    (448, "T2"),
                    (452, "1"),
                ]),
                "16",
                "453",
            ),
            (fill(&[(453, "1"), (452, "12"), (448, "T1")]), "15", "452"),
        ];
        let mut s = logged_on();
        let mut decoder = crate::Decoder::default();
        for (seq, (body, reason, ref_tag)) in (2u64..).zip(cases) {
            let message = initiator(seq, "8", &body);
            assert!(s.on_message(&message, S).deliver);
            let verdict = decoder.decode(&message).expect_err("malformed");
            let reject = s.reject_invalid(&message, &verdict, S);
            assert_reject(&reject, reason, Some(ref_tag), seq);
            assert!(s.logged_on());
            assert_eq!(s.state().next_incoming, seq + 1);
        }
        let valid = initiator(7, "8", &fill(&[(453, "1"), (448, "T1"), (452, "12")]));
        assert!(s.on_message(&valid, S).deliver);
        assert!(decoder.decode(&valid).is_ok());
    }

    /// FIX session test cases 14a, 14c, 14d and 14h on administrative messages, which the
    /// session handles itself: Reject, nothing else done (a TestRequest with a bad field is
    /// not answered with a Heartbeat), the session goes on.
    #[test]
    fn a_malformed_administrative_message_is_rejected_by_the_session() {
        let mut s = logged_on();
        // (MsgType, body, SessionRejectReason, RefTagID)
        let cases = [
            ("0", &[(999, "HI")][..], "0", "999"),
            ("0", &[(55, "MSFT")][..], "2", "55"),
            ("1", &[(112, "")][..], "4", "112"),
            ("1", &[(112, "T1"), (112, "T2")][..], "13", "112"),
        ];
        for (seq, (kind, body, reason, ref_tag)) in (2u64..).zip(cases) {
            let actions = s.on_message(&initiator(seq, kind, body), S);
            assert_eq!(actions.send.len(), 1, "only the Reject");
            assert_reject(&actions.send[0], reason, Some(ref_tag), seq);
            assert_eq!(field(&actions.send[0], 372), Some(kind.as_bytes()));
            assert!(!actions.deliver && actions.disconnect.is_none());
            assert_eq!(s.state().next_incoming, seq + 1);
        }
        let actions = s.on_message(&initiator(6, "1", &[(112, "T3")]), S);
        assert_eq!(msg_type(&actions.send[0]), "0");
        assert_eq!(field(&actions.send[0], 112), Some(&b"T3"[..]));
    }

    /// FIX session test case 10: the SequenceReset-GapFill we answer a ResendRequest with
    /// carries PossDupFlag and OrigSendingTime.
    #[test]
    fn our_gap_fill_carries_orig_sending_time() {
        let mut s = logged_on();
        let actions = s.on_message(&initiator(2, "2", &[(7, "1"), (16, "0")]), S);
        let fill = &actions.send[0];
        assert_eq!(field(fill, 123), Some(&b"Y"[..]));
        assert_eq!(field(fill, 43), Some(&b"Y"[..]));
        assert!(field(fill, 122).and_then(parse_utc_timestamp).is_some());
    }

    /// A Logon with ResetSeqNumFlag during a session starts both sequences over and is
    /// answered with a Logon that says so.
    #[test]
    fn a_reset_logon_during_the_session_starts_over() {
        let mut s = logged_on();
        assert!(s.on_message(&initiator(2, "8", &[]), S).deliver);
        assert!(s.on_message(&initiator(3, "8", &[]), S).deliver);
        let actions = s.on_message(&initiator(1, "A", &[(98, "0"), (108, "30"), (141, "Y")]), S);
        assert!(actions.disconnect.is_none());
        let reply = &actions.send[0];
        assert_eq!(msg_type(reply), "A");
        assert_eq!(field(reply, 141), Some(&b"Y"[..]));
        assert_eq!(number(reply, 34), Some(1), "our sequence starts over too");
        assert_eq!(s.state().next_incoming, 2);
        assert!(s.on_message(&initiator(2, "8", &[]), S).deliver);
    }

    /// FIX session test case 2r: a SendingTime too far from our clock (either way) is a
    /// SendingTime accuracy problem: Reject (373=10), Logout. One within the tolerance passes,
    /// and a missing one is a required tag missing.
    #[test]
    fn a_sending_time_far_from_our_clock_is_rejected_and_logged_out() {
        let stamped = parse_utc_timestamp(b"20261125-21:00:00").unwrap();
        let checked = SessionSettings {
            max_latency: Some(Duration::from_secs(120)),
            ..settings()
        };
        let mut s = Session::new(checked.clone(), SequenceState::default());
        let logon = initiator(1, "A", &[(98, "0"), (108, "30")]);
        assert_eq!(
            msg_type(&s.on_message(&logon, stamped + 119 * S).send[0]),
            "A"
        );
        for now in [stamped + 121 * S, stamped - 121 * S] {
            let mut s = Session::new(checked.clone(), SequenceState::default());
            s.on_message(&logon, stamped);
            let actions = s.on_message(&initiator(2, "8", &[]), now);
            assert!(!actions.deliver);
            assert_eq!(msg_type(&actions.send[0]), "3");
            assert_eq!(field(&actions.send[0], 373), Some(&b"10"[..]));
            assert_eq!(field(&actions.send[0], 45), Some(&b"2"[..]));
            assert_eq!(msg_type(&actions.send[1]), "5");
            assert!(actions.disconnect.is_some());
        }
        let unstamped =
            FixEncoder::new("FIX.4.4").message("8", &[(49, "CLIENT"), (56, "EOD"), (34, "2")]);
        let actions = s.on_message(&unstamped, stamped);
        assert_eq!(field(&actions.send[0], 373), Some(&b"1"[..]));
        assert_eq!(field(&actions.send[0], 371), Some(&b"52"[..]));
        assert!(actions.disconnect.is_some());
    }

    #[test]
    fn too_low_without_possdup_logs_out() {
        let mut s = logged_on();
        s.on_message(&initiator(2, "8", &[]), S);
        let actions = s.on_message(&initiator(2, "8", &[]), S);
        assert!(!actions.deliver);
        assert_eq!(msg_type(&actions.send[0]), "5");
        assert!(actions.disconnect.unwrap().contains("too low"));
    }

    #[test]
    fn their_resend_request_is_gap_filled_and_test_requests_answered() {
        let mut s = logged_on();
        let actions = s.on_message(&initiator(2, "2", &[(7, "1"), (16, "0")]), S);
        let fill = &actions.send[0];
        assert_eq!(msg_type(fill), "4");
        assert_eq!((number(fill, 34), number(fill, 36)), (Some(1), Some(2)));
        let actions = s.on_message(&initiator(3, "1", &[(112, "PING")]), S);
        assert_eq!(msg_type(&actions.send[0]), "0");
        assert_eq!(field(&actions.send[0], 112), Some(&b"PING"[..]));
    }

    #[test]
    fn heartbeats_test_requests_and_timeouts() {
        let mut s = logged_on();
        assert!(s.on_tick(10 * S).send.is_empty());
        assert_eq!(
            msg_type(&s.on_tick(31 * S).send[0]),
            "0",
            "heartbeat when we have been quiet"
        );
        let actions = s.on_tick(37 * S);
        assert_eq!(
            msg_type(&actions.send[0]),
            "1",
            "test request when they have been quiet"
        );
        assert!(s.on_tick(50 * S).disconnect.is_none());
        assert!(
            s.on_tick(68 * S).disconnect.is_some(),
            "no answer within a heartbeat interval"
        );
    }

    #[test]
    fn logout_and_reset_on_logon() {
        let mut s = logged_on();
        let actions = s.on_message(&initiator(2, "5", &[]), S);
        assert_eq!(msg_type(&actions.send[0]), "5");
        assert!(actions.disconnect.is_some());
        // A reconnect with the persisted state carries on; ResetSeqNumFlag starts over.
        let mut again = Session::new(settings(), s.state().clone());
        assert!(
            !again
                .on_message(&initiator(3, "A", &[(108, "30")]), 2 * S)
                .deliver
        );
        assert_eq!(again.state().next_incoming, 4);
        let mut reset = Session::new(settings(), s.state().clone());
        let actions = reset.on_message(&initiator(1, "A", &[(108, "30"), (141, "Y")]), 2 * S);
        assert_eq!(field(&actions.send[0], 141), Some(&b"Y"[..]));
        assert_eq!(reset.state().next_incoming, 2);
    }

    fn acceptor(counterparties: &[&str]) -> Acceptor {
        Acceptor {
            comp_id: "EOD".into(),
            begin_string: "FIX.4.4".into(),
            counterparties: counterparties.iter().map(|c| c.parse().unwrap()).collect(),
            logon_timeout: Duration::from_secs(10),
            max_latency: None,
        }
    }

    fn logon(begin: &str, sender: &str, target: &str) -> Vec<u8> {
        FixEncoder::new(begin).message(
            "A",
            &[
                (49, sender),
                (56, target),
                (34, "1"),
                (52, "20261125-21:00:00"),
                (98, "0"),
                (108, "30"),
            ],
        )
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn counterparties_parse_with_begin_string_and_address() {
        let c: Counterparty = "ACME:FIX.4.2@10.1.2.0/24".parse().unwrap();
        assert_eq!(c.sender_comp_id, "ACME");
        assert_eq!(c.begin_string.as_deref(), Some("FIX.4.2"));
        assert_eq!(c.address, Some("10.1.2.0/24".parse().unwrap()));
        let plain: Counterparty = "ACME@127.0.0.1".parse().unwrap();
        assert_eq!(plain.address, Some("127.0.0.1/32".parse().unwrap()));
        assert_eq!(plain.begin_string, None);
        for bad in [
            "",
            "A/B",
            "../x",
            "ACME:4.4",
            "ACME@not-an-ip",
            "ACME@10.0.0.0/99",
        ] {
            assert!(bad.parse::<Counterparty>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_configured_counterparty_logs_on_with_its_identity() {
        let settings = acceptor(&["CLIENT"])
            .accept(&logon("FIX.4.4", "CLIENT", "EOD"), LOCAL)
            .unwrap();
        assert_eq!(settings, self::settings());
        let mixed = acceptor(&["OLD:FIX.4.2", "CLIENT"]);
        let old = mixed
            .accept(&logon("FIX.4.2", "OLD", "EOD"), LOCAL)
            .unwrap();
        assert_eq!(
            old.begin_string, "FIX.4.2",
            "each counterparty in its own version"
        );
    }

    #[test]
    fn strangers_are_refused_with_the_reason() {
        let a = acceptor(&["CLIENT", "NEAR@10.0.0.0/8"]);
        let refused = |message: &[u8], peer: IpAddr| a.accept(message, peer).unwrap_err();
        assert_eq!(
            refused(&logon("FIX.4.4", "STRANGER", "EOD"), LOCAL),
            Refusal::UnknownSender("STRANGER".into())
        );
        assert_eq!(
            refused(&logon("FIX.4.4", "CLIENT", "OTHER"), LOCAL),
            Refusal::WrongTarget("OTHER".into())
        );
        // A FIX 4.2 (or 3.9) Logon on a 4.4 gateway.
        for begin in ["FIX.4.2", "FIX.3.9"] {
            assert_eq!(
                refused(&logon(begin, "CLIENT", "EOD"), LOCAL),
                Refusal::WrongBeginString(begin.into())
            );
        }
        assert_eq!(
            refused(&logon("FIX.4.4", "NEAR", "EOD"), LOCAL).label(),
            "address_not_allowed"
        );
        let near: IpAddr = "10.9.8.7".parse().unwrap();
        assert!(a.accept(&logon("FIX.4.4", "NEAR", "EOD"), near).is_ok());
        let mapped: IpAddr = "::ffff:10.9.8.7".parse().unwrap();
        assert!(a.accept(&logon("FIX.4.4", "NEAR", "EOD"), mapped).is_ok());
        assert_eq!(refused(&initiator(1, "8", &[]), LOCAL), Refusal::NotLogon);

        let logout = a.refusal_logout(
            &logon("FIX.4.4", "STRANGER", "EOD"),
            &Refusal::UnknownSender("STRANGER".into()),
            0,
        );
        assert_eq!(msg_type(&logout), "5");
        assert_eq!(field(&logout, 56), Some(&b"STRANGER"[..]));
        assert!(String::from_utf8_lossy(field(&logout, 58).unwrap()).contains("not a configured"));
    }

    #[test]
    fn a_comp_id_change_after_logon_is_rejected_and_logged_out() {
        let mut s = logged_on();
        let other_sender = FixEncoder::new("FIX.4.4").message(
            "8",
            &[
                (49, "IMPOSTOR"),
                (56, "EOD"),
                (34, "2"),
                (52, "20261125-21:00:00"),
            ],
        );
        let actions = s.on_message(&other_sender, S);
        assert!(!actions.deliver);
        assert_eq!(msg_type(&actions.send[0]), "3");
        assert_eq!(
            field(&actions.send[0], 373),
            Some(&b"9"[..]),
            "CompID problem"
        );
        assert_eq!(field(&actions.send[0], 45), Some(&b"2"[..]));
        assert_eq!(msg_type(&actions.send[1]), "5");
        assert!(actions.disconnect.is_some());
        assert_eq!(
            s.state().next_incoming,
            3,
            "the rejected message was received"
        );

        let mut s = logged_on();
        let other_target = FixEncoder::new("FIX.4.4")
            .message("8", &[(49, "CLIENT"), (56, "ELSEWHERE"), (34, "2")]);
        assert_eq!(msg_type(&s.on_message(&other_target, S).send[0]), "3");
    }

    #[test]
    fn a_begin_string_change_after_logon_logs_out() {
        let mut s = logged_on();
        let fix42 = FixEncoder::new("FIX.4.2").message(
            "8",
            &[
                (49, "CLIENT"),
                (56, "EOD"),
                (34, "2"),
                (52, "20261125-21:00:00"),
            ],
        );
        let actions = s.on_message(&fix42, S);
        assert!(!actions.deliver);
        assert_eq!(msg_type(&actions.send[0]), "5");
        assert!(
            String::from_utf8_lossy(field(&actions.send[0], 58).unwrap()).contains("BeginString")
        );
        assert!(actions.disconnect.is_some());
    }
}
