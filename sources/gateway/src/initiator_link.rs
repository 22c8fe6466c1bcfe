//! The simulator's FIX session over TCP: the I/O around [`eod_fix::initiator::Initiator`].
//! It logs on, answers what the gateway asks (ResendRequest, TestRequest, Logout) while it
//! sends, and when the gateway goes away (killed, restarted) it connects again and logs on with
//! the next sequence number, so the gateway asks for whatever the dead connection swallowed.

use std::io::{BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use eod_fix::initiator::{Initiator, InitiatorSettings};
use eod_fix::session::field;
use eod_fix::time::now_utc_nanos;
use eod_fix::{Framed, Framer};

use crate::error::{io, GatewayError};

/// The session the simulator opens.
#[derive(Clone, Debug)]
pub struct InitiatorOptions {
    pub settings: InitiatorSettings,
    /// How long to keep trying to log on again to a gateway that went away.
    pub reconnect_for: Duration,
}

/// What a session did, for the simulator's summary.
#[derive(Debug, Default)]
pub struct SessionSummary {
    /// The last MsgSeqNum the gateway confirmed it had read (every number up to it was sent).
    pub last_sequence: u64,
    /// Messages sent again because the gateway asked.
    pub resent: u64,
    /// Connections opened again after the gateway went away.
    pub reconnects: u64,
    /// Session-level Rejects received (the simulator's invalid messages earn them).
    pub rejects: u64,
}

/// What the reader thread of one connection hands over.
enum Incoming {
    Message(Vec<u8>),
    Closed,
}

pub struct InitiatorLink {
    to: String,
    options: InitiatorOptions,
    initiator: Initiator,
    out: BufWriter<TcpStream>,
    incoming: Receiver<Incoming>,
    reconnects: u64,
    rejects: u64,
    /// The ID of the last TestRequest the gateway answered.
    answered_test: Option<String>,
    /// The connection ended (closed, or the session logged out): the next send logs on again.
    lost: bool,
}

/// One connection: its writer and the messages its reader thread frames.
fn open(to: &str) -> Result<(BufWriter<TcpStream>, Receiver<Incoming>), std::io::Error> {
    let stream = TcpStream::connect(to)?;
    stream.set_nodelay(true)?;
    let mut reader = stream.try_clone()?;
    let (sender, incoming) = mpsc::channel();
    std::thread::Builder::new()
        .name("fix-initiator-reader".into())
        .spawn(move || {
            let mut framer = Framer::default();
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        framer.push(&buffer[..n]);
                        while let Some(frame) = framer.next_frame() {
                            if let Framed::Message { bytes, .. } = frame {
                                if sender.send(Incoming::Message(bytes.to_vec())).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            }
            let _ = sender.send(Incoming::Closed);
        })?;
    Ok((BufWriter::with_capacity(64 * 1024, stream), incoming))
}

impl InitiatorLink {
    /// Connects and logs on (retrying for `reconnect_for` while nobody listens).
    pub fn connect(to: &str, options: InitiatorOptions) -> Result<InitiatorLink, GatewayError> {
        let (out, incoming) = Self::open_retrying(to, options.reconnect_for)?;
        let mut link = InitiatorLink {
            to: to.to_owned(),
            initiator: Initiator::new(options.settings.clone()),
            options,
            out,
            incoming,
            reconnects: 0,
            rejects: 0,
            answered_test: None,
            lost: false,
        };
        link.log_on()?;
        Ok(link)
    }

    fn open_retrying(
        to: &str,
        patience: Duration,
    ) -> Result<(BufWriter<TcpStream>, Receiver<Incoming>), GatewayError> {
        let deadline = Instant::now() + patience;
        loop {
            match open(to) {
                Ok(connection) => return Ok(connection),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => return Err(io(format!("connecting to the gateway at {to}"))(e)),
            }
        }
    }

    pub fn resent(&self) -> u64 {
        self.initiator.resent()
    }

    /// Sends the Logon and waits for the gateway's; on a refused or dropped Logon it connects
    /// again until `reconnect_for` runs out.
    fn log_on(&mut self) -> Result<(), GatewayError> {
        let deadline = Instant::now() + self.options.reconnect_for;
        loop {
            self.lost = false;
            let logon = self.initiator.logon(now_utc_nanos());
            let answered = self
                .out
                .write_all(&logon)
                .and_then(|_| self.out.flush())
                .is_ok()
                && self.wait_until(Instant::now() + Duration::from_secs(10), |link| {
                    link.initiator.logged_on()
                });
            let answered = answered && !self.lost;
            if answered {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(GatewayError::Session(format!(
                    "no Logon answered by the gateway at {} for {:?}",
                    self.to, self.options.reconnect_for
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
            let (out, incoming) = Self::open_retrying(&self.to, deadline - Instant::now())?;
            self.out = out;
            self.incoming = incoming;
        }
    }

    /// The connection is gone: a new one, logged on with the next sequence number.
    fn reconnect(&mut self) -> Result<(), GatewayError> {
        let _ = self.out.get_ref().shutdown(Shutdown::Both);
        tracing::warn!(to = %self.to, "lost the gateway; logging on again");
        self.reconnects += 1;
        let (out, incoming) = Self::open_retrying(&self.to, self.options.reconnect_for)?;
        self.out = out;
        self.incoming = incoming;
        self.log_on()
    }

    /// Stamps one simulator message with the session's header and sends it; junk (not a FIX
    /// message) goes out as it is. A write that fails is not retried: the message is stored,
    /// and the gateway asks for it after the next Logon.
    pub fn send(&mut self, message: &[u8]) -> Result<u64, GatewayError> {
        let bytes = self
            .initiator
            .stamp(message, now_utc_nanos())
            .unwrap_or_else(|| message.to_vec());
        let written = bytes.len() as u64;
        if self.out.write_all(&bytes).is_err() {
            self.lost = true;
        }
        self.serve_pending();
        self.reconnect_if_lost()?;
        Ok(written)
    }

    /// Sends `msg_type` with `body` in the session.
    pub fn send_message(
        &mut self,
        msg_type: &str,
        body: Vec<(u32, String)>,
    ) -> Result<(), GatewayError> {
        let bytes = self.initiator.application(msg_type, body, now_utc_nanos());
        if self.out.write_all(&bytes).is_err() {
            self.lost = true;
        }
        self.serve_pending();
        self.reconnect_if_lost()
    }

    /// Bytes outside the session's numbering (what a line error or a broken sender would
    /// produce: the gateway's framer refuses them before the session sees them).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), GatewayError> {
        if self.out.write_all(bytes).is_err() {
            self.lost = true;
        }
        self.serve_pending();
        self.reconnect_if_lost()
    }

    /// Pushes what is buffered to the gateway.
    pub fn flush(&mut self) -> Result<(), GatewayError> {
        if self.out.flush().is_err() {
            self.lost = true;
        }
        self.reconnect_if_lost()
    }

    fn reconnect_if_lost(&mut self) -> Result<(), GatewayError> {
        if self.lost {
            self.reconnect()?;
        }
        Ok(())
    }

    /// Answers whatever the gateway has sent so far, without waiting.
    fn serve_pending(&mut self) {
        while !self.lost {
            match self.incoming.try_recv() {
                Ok(incoming) => self.handle(incoming),
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => self.lost = true,
            }
        }
    }

    /// Answers the gateway until `until`, sending heartbeats when idle.
    pub fn serve_until(&mut self, until: Instant) -> Result<(), GatewayError> {
        self.wait_until(until, |_| false);
        self.reconnect_if_lost()
    }

    /// Serves the gateway until `done` holds (true), or `deadline` passes or the connection
    /// ends (false).
    fn wait_until(&mut self, deadline: Instant, done: impl Fn(&InitiatorLink) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || self.lost {
                return false;
            }
            if let Some(heartbeat) = self.initiator.on_tick(now_utc_nanos()) {
                let _ = self.out.write_all(&heartbeat);
            }
            let _ = self.out.flush();
            let wait = (deadline - now).min(Duration::from_millis(500));
            match self.incoming.recv_timeout(wait) {
                Ok(incoming) => self.handle(incoming),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.lost = true,
            }
        }
    }

    /// One thing from the reader.
    fn handle(&mut self, incoming: Incoming) {
        let Incoming::Message(message) = incoming else {
            self.lost = true;
            return;
        };
        if field(&message, 35) == Some(b"0") {
            self.answered_test = field(&message, 112).map(|id| String::from_utf8_lossy(id).into());
        }
        let actions = self.initiator.on_message(&message, now_utc_nanos());
        if let Some(rejected) = &actions.rejected {
            self.rejects += 1;
            tracing::debug!(%rejected, "the gateway rejected a message");
        }
        let written = actions
            .send
            .iter()
            .try_for_each(|bytes| self.out.write_all(bytes))
            .and_then(|_| self.out.flush());
        if let Some(reason) = actions.disconnect {
            tracing::info!(%reason, "FIX session ended");
            self.lost = true;
        }
        self.lost |= written.is_err();
    }

    /// Ends the session once the gateway has everything: a TestRequest is answered only after
    /// what came before it was read, and it is asked again until no resend or reconnect
    /// happened meanwhile. Then Logout.
    pub fn finish(mut self, patience: Duration) -> Result<SessionSummary, GatewayError> {
        let deadline = Instant::now() + patience;
        let mut round = 0u64;
        loop {
            round += 1;
            let (resent, reconnects) = (self.resent(), self.reconnects);
            let id = format!("EOD-SIMULATE-DONE-{round}");
            let request = self.initiator.test_request(&id, now_utc_nanos());
            self.lost |= self
                .out
                .write_all(&request)
                .and_then(|_| self.out.flush())
                .is_err();
            let answered =
                self.wait_until(deadline, |link| link.answered_test.as_deref() == Some(&id));
            if !answered {
                if Instant::now() >= deadline {
                    return Err(GatewayError::Session(format!(
                        "the gateway at {} did not confirm the end of the stream within {patience:?}",
                        self.to
                    )));
                }
                // The connection ended before the answer: log on again and ask again.
                self.reconnect()?;
                continue;
            }
            if self.resent() == resent && self.reconnects == reconnects {
                break;
            }
        }
        let summary = SessionSummary {
            last_sequence: self.initiator.next_outgoing() - 1,
            resent: self.resent(),
            reconnects: self.reconnects,
            rejects: self.rejects,
        };
        let logout = self.initiator.logout(now_utc_nanos());
        if self
            .out
            .write_all(&logout)
            .and_then(|_| self.out.flush())
            .is_ok()
        {
            // Over when the gateway answers the Logout or closes the connection.
            self.wait_until(Instant::now() + Duration::from_secs(10), |link| {
                !link.initiator.logged_on()
            });
        }
        let _ = self.out.get_ref().shutdown(Shutdown::Both);
        Ok(summary)
    }
}
