//! A connection's FIX session: who may log on, where each counterparty's sequence numbers
//! live, and one live connection per counterparty.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eod_fix::session::{Acceptor, Actions, Refusal, SequenceState, Session};
use eod_fix::time::now_utc_nanos;
use eod_fix::Reject;

use crate::error::{io, GatewayError};

/// Where FIX sessions keep their sequence numbers, who we are and who may log on.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub acceptor: Acceptor,
    pub state_dir: PathBuf,
    /// Counterparties with a live connection in this gateway.
    pub active: ActiveSessions,
}

/// One live connection per counterparty: its sequence state has one writer. A reconnect that
/// arrives while the old connection is still closing waits for it (briefly), so it reads the
/// state the old connection wrote last.
#[derive(Clone, Debug, Default)]
pub struct ActiveSessions(Arc<(Mutex<HashSet<PathBuf>>, std::sync::Condvar)>);

/// A counterparty's claim, released when the connection ends.
pub struct SessionClaim {
    active: ActiveSessions,
    path: PathBuf,
}

impl ActiveSessions {
    /// Claims `path`'s counterparty, waiting up to `patience` for a closing connection to let go.
    pub fn claim(&self, path: &Path, patience: Duration) -> Option<SessionClaim> {
        let (lock, released) = &*self.0;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (mut active, _) = released
            .wait_timeout_while(guard, patience, |active| active.contains(path))
            .unwrap_or_else(|p| p.into_inner());
        if !active.insert(path.to_owned()) {
            return None;
        }
        Some(SessionClaim {
            active: self.clone(),
            path: path.to_owned(),
        })
    }
}

impl Drop for SessionClaim {
    fn drop(&mut self) {
        let (lock, released) = &*self.active.0;
        lock.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.path);
        released.notify_all();
    }
}

/// One connection's session: created at Logon with the persisted state of that counterparty.
pub(crate) struct SessionLink {
    config: SessionConfig,
    connected_at: Instant,
    peer: SocketAddr,
    /// Refused Logons by reason.
    refused: prometheus::IntCounterVec,
    session: Option<(Session, PathBuf)>,
    /// Held from Logon to the end of the connection (dropped after the last persist).
    claim: Option<SessionClaim>,
    writer: TcpStream,
    pub(crate) disconnect: Option<String>,
    /// The state as last written.
    persisted: Option<SequenceState>,
}

impl SessionLink {
    pub(crate) fn new(
        config: SessionConfig,
        stream: &TcpStream,
        refused: prometheus::IntCounterVec,
    ) -> Result<SessionLink, GatewayError> {
        Ok(SessionLink {
            config,
            connected_at: Instant::now(),
            peer: stream.peer_addr().map_err(io("reading the peer address"))?,
            refused,
            session: None,
            claim: None,
            writer: stream.try_clone().map_err(io("cloning the socket"))?,
            disconnect: None,
            persisted: None,
        })
    }

    /// Runs one message through the session; true when it is an application message to use.
    pub(crate) fn admit(&mut self, message: &[u8]) -> Result<bool, GatewayError> {
        if self.disconnect.is_some() {
            return Ok(false);
        }
        if self.session.is_none() {
            let settings = match self.config.acceptor.accept(message, self.peer.ip()) {
                Ok(settings) => settings,
                Err(refusal) => {
                    tracing::warn!(
                        peer = %self.peer,
                        reason = refusal.label(),
                        "FIX Logon refused: {refusal}"
                    );
                    self.refused.with_label_values(&[refusal.label()]).inc();
                    let mut actions = Actions {
                        disconnect: Some(refusal.to_string()),
                        ..Actions::default()
                    };
                    if refusal != Refusal::NotLogon {
                        let logout =
                            self.config
                                .acceptor
                                .refusal_logout(message, &refusal, now_utc_nanos());
                        actions.send.push(logout);
                    }
                    return self.apply(actions);
                }
            };
            let counterparty = settings.counterparty.clone();
            // Only configured CompIDs reach the file name (they cannot hold a path separator).
            let path = self
                .config
                .state_dir
                .join(format!("{}-{counterparty}.json", settings.comp_id));
            let Some(claim) = self.config.active.claim(&path, Duration::from_secs(5)) else {
                tracing::warn!(%counterparty, "second connection for a live FIX session: refused");
                self.disconnect = Some(format!("{counterparty} already has a live session"));
                self.writer.shutdown(std::net::Shutdown::Both).ok();
                return Ok(false);
            };
            self.claim = Some(claim);
            let state = match std::fs::read(&path) {
                Ok(bytes) => {
                    serde_json::from_slice(&bytes).map_err(|source| GatewayError::SessionState {
                        path: path.clone(),
                        source,
                    })?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => SequenceState::default(),
                Err(e) => return Err(io(format!("reading session state {}", path.display()))(e)),
            };
            self.session = Some((Session::new(settings, state), path));
        }
        let Some((session, _)) = self.session.as_mut() else {
            return Ok(false);
        };
        let actions = session.on_message(message, now_utc_nanos());
        self.apply(actions)
    }

    /// Tells the counterparty that a message it sent (and the session delivered) is invalid:
    /// a session-level Reject. The caller still dead-letters the message.
    pub(crate) fn reject_invalid(
        &mut self,
        message: &[u8],
        reject: &Reject,
    ) -> Result<(), GatewayError> {
        let Some((session, _)) = self.session.as_mut() else {
            return Ok(());
        };
        tracing::info!(peer = %self.peer, reason = reject.reason.label(), "FIX Reject sent: {reject}");
        let message = session.reject_invalid(message, reject, now_utc_nanos());
        self.apply(Actions {
            send: vec![message],
            ..Actions::default()
        })?;
        Ok(())
    }

    /// Closes a connection that has not logged on within the acceptor's Logon timeout.
    pub(crate) fn enforce_logon_timeout(&mut self) {
        let timeout = self.config.acceptor.logon_timeout;
        if self.session.is_some() || self.connected_at.elapsed() < timeout {
            return;
        }
        let refusal = Refusal::LogonTimeout(timeout);
        tracing::warn!(peer = %self.peer, reason = refusal.label(), "FIX Logon refused: {refusal}");
        self.refused.with_label_values(&[refusal.label()]).inc();
        self.disconnect = Some(refusal.to_string());
        self.writer.shutdown(std::net::Shutdown::Both).ok();
    }

    pub(crate) fn tick(&mut self) -> Result<(), GatewayError> {
        if let Some((session, _)) = self.session.as_mut() {
            let actions = session.on_tick(now_utc_nanos());
            self.apply(actions)?;
        }
        Ok(())
    }

    fn apply(&mut self, actions: Actions) -> Result<bool, GatewayError> {
        for message in &actions.send {
            std::io::Write::write_all(&mut self.writer, message)
                .map_err(io("writing to the FIX session"))?;
        }
        if let Some(reason) = actions.disconnect {
            self.disconnect = Some(reason);
            self.writer.shutdown(std::net::Shutdown::Both).ok();
        }
        Ok(actions.deliver)
    }

    /// True when the state should be written now: we sent something since the last write (a
    /// restart must not number its messages again), or it has waited `every` long.
    pub(crate) fn persist_due(&self, since_last: Duration) -> bool {
        let Some((session, _)) = &self.session else {
            return false;
        };
        persist_due(self.persisted.as_ref(), session.state(), since_last)
    }

    /// Writes the sequence state atomically (temp file, fsync, rename).
    pub(crate) fn persist(&mut self) -> Result<(), GatewayError> {
        let Some((session, path)) = &self.session else {
            return Ok(());
        };
        // Each write has its own temp file: even if two writers ever met on one counterparty
        // (the claim prevents it), neither rename would find the other's file gone.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = path.with_extension(format!("json.{write}.tmp"));
        let what = || format!("writing session state {}", path.display());
        let state =
            serde_json::to_vec(session.state()).map_err(|source| GatewayError::SessionState {
                path: path.clone(),
                source,
            })?;
        let mut file = std::fs::File::create(&temp).map_err(io(what()))?;
        std::io::Write::write_all(&mut file, &state).map_err(io(what()))?;
        file.sync_all().map_err(io(what()))?;
        std::fs::rename(&temp, path).map_err(io(what()))?;
        self.persisted = Some(session.state().clone());
        Ok(())
    }
}

fn persist_due(
    persisted: Option<&SequenceState>,
    state: &SequenceState,
    since_last: Duration,
) -> bool {
    match persisted {
        None => true,
        Some(persisted) if persisted == state => false,
        Some(persisted) => {
            persisted.next_outgoing != state.next_outgoing
                || since_last >= crate::gateway::SESSION_PERSIST_EVERY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_written_at_once_after_we_sent_and_otherwise_at_most_every_interval() {
        let written = SequenceState::default();
        let mut state = written.clone();
        let soon = Duration::from_millis(1);
        let later = crate::gateway::SESSION_PERSIST_EVERY;
        assert!(persist_due(None, &state, soon), "never written");
        assert!(!persist_due(Some(&written), &state, later), "nothing new");
        state.next_incoming = 50;
        assert!(
            !persist_due(Some(&written), &state, soon),
            "taken in: waits"
        );
        assert!(persist_due(Some(&written), &state, later));
        state.next_outgoing = 2;
        assert!(persist_due(Some(&written), &state, soon), "sent: at once");
    }

    #[test]
    fn one_live_connection_per_counterparty_and_a_closing_one_is_waited_for() {
        let active = ActiveSessions::default();
        let path = Path::new("/state/EOD-ACME.json");
        let first = active.claim(path, Duration::ZERO).unwrap();
        assert!(
            active.claim(path, Duration::from_millis(20)).is_none(),
            "a second live connection is refused"
        );
        assert!(active
            .claim(Path::new("/state/EOD-OTHER.json"), Duration::ZERO)
            .is_some());
        // The old connection closes while the new one waits: the new one gets the claim.
        let waiter = {
            let active = active.clone();
            std::thread::spawn(move || active.claim(path, Duration::from_secs(5)).is_some())
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        assert!(waiter.join().unwrap());
    }
}
