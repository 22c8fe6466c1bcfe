//! Thread priority: a books replay's workers leave the core to the books writer.
//!
//! A replay with books is as fast as its one books writer (SQLite allows one). At the
//! workers' priority the writer waited for a core for a fifth of its run, while the workers,
//! ahead of it by up to their books lag, computed epochs it could not take yet
//! (`/proc/PID/task/*/schedstat` of a 1M-message replay, bench/RESULTS.md 2026-12-05).

/// Lowers the calling thread's priority to at least `nice` (0-19; a thread already lower
/// stays as it is). Threads it starts afterwards inherit the value, so it is called once the
/// threads that must keep theirs are running. On Linux the nice value belongs to each thread
/// (setpriority(2), "NOTES"), so the process's other threads keep theirs. Elsewhere this does
/// nothing.
pub fn lower_this_thread(nice: u8) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and the priority calls take plain integers and touch no memory of
        // ours; errno is thread-local.
        unsafe {
            let thread = libc::gettid() as libc::id_t;
            *libc::__errno_location() = 0;
            let current = libc::getpriority(libc::PRIO_PROCESS, thread);
            if current == -1 && *libc::__errno_location() != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let wanted = i32::from(nice.min(19));
            if current >= wanted {
                return Ok(());
            }
            if libc::setpriority(libc::PRIO_PROCESS, thread, wanted) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        // SAFETY: as above.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    /// The thread that asks is lowered, and so is a thread it starts after; the thread that
    /// started it is not. Asking for less than it has changes nothing.
    #[test]
    fn lowers_the_calling_thread_and_what_it_starts_after() {
        let before = nice_of_this_thread();
        let wanted = (before + 3).min(19);
        let (lowered, started_after, asked_less) = std::thread::spawn(move || {
            lower_this_thread(wanted as u8).unwrap();
            let lowered = nice_of_this_thread();
            let started_after = std::thread::spawn(nice_of_this_thread).join().unwrap();
            lower_this_thread(0).unwrap();
            (lowered, started_after, nice_of_this_thread())
        })
        .join()
        .unwrap();
        assert_eq!(lowered, wanted);
        assert_eq!(started_after, wanted, "a thread started after inherits it");
        assert_eq!(asked_less, wanted, "never raised");
        assert_eq!(
            nice_of_this_thread(),
            before,
            "the other threads keep theirs"
        );
    }
}
