//! A supervisor for `eod run --supervise`: runs the real process and starts it again when it
//! fails. A timely cluster has no membership changes: when one process dies, its peers' network
//! threads fail (`timely communication error`) and they exit. Supervising every process brings
//! the whole cluster back, and each restarted worker re-reads its partitions from the start, so
//! the views come back exact.

use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When to start a failed process again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The first restart's delay; it doubles with every failure in a row.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A process that ran this long before failing counts as healthy: the delay starts over.
    pub healthy_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            healthy_after: Duration::from_secs(60),
        }
    }
}

/// Why supervision ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Supervised {
    /// The process finished successfully (`--until-caught-up`, say).
    Finished,
    /// `stop` was set; the running process was killed.
    Stopped,
}

/// Runs the command `make` builds until it exits successfully or `stop` is set, restarting it
/// after every failure (a crash, a kill, a peer's death). `on_event` hears each start and exit.
pub fn supervise(
    mut make: impl FnMut() -> Command,
    policy: RestartPolicy,
    stop: &AtomicBool,
    mut on_event: impl FnMut(SupervisorEvent),
) -> std::io::Result<Supervised> {
    let mut backoff = policy.initial_backoff;
    let mut restarts = 0u64;
    loop {
        let started = Instant::now();
        let mut command = make();
        dies_with_this_thread(&mut command);
        let mut child = command.spawn()?;
        on_event(SupervisorEvent::Started {
            pid: child.id(),
            restarts,
        });
        let status = match wait_or_stop(&mut child, stop)? {
            Some(status) => status,
            None => return Ok(Supervised::Stopped),
        };
        if status.success() {
            return Ok(Supervised::Finished);
        }
        if started.elapsed() >= policy.healthy_after {
            backoff = policy.initial_backoff;
        }
        on_event(SupervisorEvent::Exited {
            status,
            restart_in: backoff,
        });
        let resume = Instant::now() + backoff;
        while Instant::now() < resume {
            if stop.load(Ordering::Acquire) {
                return Ok(Supervised::Stopped);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(policy.max_backoff);
        restarts += 1;
    }
}

/// Has the child sent SIGTERM when the thread that starts it ends, the supervisor's process
/// killed included: else a supervisor stopped by `kill -9` (or a test that fails and drops it)
/// leaves its `eod run` running, holding its ports and reading on, and the next start of the
/// cluster finds them taken.
#[cfg(target_os = "linux")]
fn dies_with_this_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let supervisor = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure only makes two async-signal-safe system
    // calls and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The supervisor died before the request took effect: no signal will come.
            if libc::getppid() != supervisor {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn dies_with_this_thread(_command: &mut Command) {}

/// What the supervisor did, for its log.
#[derive(Debug, PartialEq, Eq)]
pub enum SupervisorEvent {
    Started {
        pid: u32,
        restarts: u64,
    },
    Exited {
        status: ExitStatus,
        restart_in: Duration,
    },
}

/// The child's exit status, or `None` once `stop` is set (the child killed and reaped).
fn wait_or_stop(child: &mut Child, stop: &AtomicBool) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if stop.load(Ordering::Acquire) {
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A flag set by SIGINT or SIGTERM, for a supervisor that must not leave its process behind.
pub fn stop_on_signal() -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("supervisor-signals".into())
        .spawn(move || {
            runtime.block_on(async {
                let mut terminate =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(terminate) => terminate,
                        Err(_) => return,
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                flag.store(true, Ordering::Release);
            });
        })?;
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> RestartPolicy {
        RestartPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            healthy_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_failing_process_is_restarted_with_growing_delays_until_it_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        // Fails on its first three runs, succeeds on the fourth.
        let script = format!("echo x >> {0}; [ $(wc -l < {0}) -ge 4 ]", runs.display());
        let mut events = Vec::new();
        let outcome = supervise(
            || {
                let mut command = Command::new("sh");
                command.args(["-c", &script]);
                command
            },
            quick(),
            &AtomicBool::new(false),
            |event| events.push(event),
        )
        .unwrap();
        assert_eq!(outcome, Supervised::Finished);
        let delays: Vec<Duration> = events
            .iter()
            .filter_map(|event| match event {
                SupervisorEvent::Exited { restart_in, .. } => Some(*restart_in),
                _ => None,
            })
            .collect();
        assert_eq!(delays, [10, 20, 40].map(Duration::from_millis));
        let starts = events
            .iter()
            .filter(|e| matches!(e, SupervisorEvent::Started { .. }))
            .count();
        assert_eq!(starts, 4);
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 4);
    }

    /// The child goes when the thread that started it does (a supervisor killed takes all its
    /// threads with it).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_dies_with_the_thread_that_started_it() {
        use std::os::unix::process::ExitStatusExt;
        let starter = std::thread::spawn(|| {
            let mut command = Command::new("sleep");
            command.arg("30");
            dies_with_this_thread(&mut command);
            command.spawn().unwrap()
        });
        let mut child = starter.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the child outlived the thread that started it");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn stopping_kills_the_running_process() {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            flag.store(true, Ordering::Release);
        });
        let started = Instant::now();
        let outcome = supervise(
            || {
                let mut command = Command::new("sleep");
                command.arg("30");
                command
            },
            quick(),
            &stop,
            |_| {},
        )
        .unwrap();
        stopper.join().unwrap();
        assert_eq!(outcome, Supervised::Stopped);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
