//! Giving the allocator's free memory back to the system once a burst is over.
//!
//! A burst leaves the heap much larger than what the day's state needs afterwards: each
//! epoch's stage buffers, the consumers' batches and the books writer's queue are freed, but
//! glibc keeps what was freed inside its arenas, and returns little of it by itself (only the
//! top of each heap). After a 4.5M-trade catch-up through Kafka, `malloc_trim` took VmRSS from
//! 1.75 to 1.48 GB (bench/RESULTS.md, 2026-12-06, sixth session): memory the process held for
//! nothing until the next burst, and counted against it by whatever watches its RSS.
//!
//! Contract: the trim runs only when the process has been quiet for the configured time (no
//! record consumed, no row and no snapshot written) *and* its resident memory grew by at least
//! the configured growth ([`TrimPolicy`]) since the last trim. A quiet process pays nothing,
//! and a trickle of trades with pauses between them does not walk the heap at every pause.
//! The trim runs on its own thread (which also reports the resident memory as a metric), so a
//! worker only meets it as a short wait for an arena's lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};

use crate::metrics::Metrics;

/// When to trim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrimPolicy {
    /// How long the process must have been quiet.
    pub quiet_for: Duration,
    /// Growth of resident memory since the last trim below which a quiet spell does not trim.
    pub min_growth: u64,
}

impl Default for TrimPolicy {
    /// `eod run`'s defaults (`--trim-memory-after-ms`, `--trim-memory-min-growth-mb`).
    fn default() -> Self {
        TrimPolicy {
            // Longer than any pause inside a burst's work (a books commit, a snapshot), short
            // enough that the memory is back well before the next burst.
            quiet_for: Duration::from_secs(2),
            // What a burst leaves behind is hundreds of MB; a few MB is not worth a walk of
            // the heap (tens of ms for a GB-sized one).
            min_growth: 64 << 20,
        }
    }
}

impl TrimPolicy {
    /// The policy `eod run`'s `--trim-memory-after-ms` and `--trim-memory-min-growth-mb` ask
    /// for; `None` (no trims) when the quiet time is 0.
    pub fn from_flags(after_ms: u64, min_growth_mb: u64) -> Option<TrimPolicy> {
        (after_ms > 0).then(|| TrimPolicy {
            quiet_for: Duration::from_millis(after_ms),
            min_growth: min_growth_mb.saturating_mul(1 << 20),
        })
    }
}

/// How soon the watch ends once the run is done.
const DONE_SEEN_WITHIN: Duration = Duration::from_millis(20);

/// How often the trimmer looks at the process's activity.
const LOOK_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct MemoryMetrics {
    /// The process's resident memory (VmRSS), read every quarter second.
    pub resident_bytes: IntGauge,
    /// Trims run after a burst.
    pub trims: IntCounter,
    /// Resident memory given back by them (the drop of VmRSS across each trim).
    pub released_bytes: IntCounter,
    /// How long each trim took (the arenas are locked one at a time while it runs).
    pub trim_seconds: Histogram,
}

impl MemoryMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let resident_bytes = IntGauge::with_opts(Opts::new(
            "eod_resident_memory_bytes",
            "Resident memory of the process (VmRSS)",
        ))?;
        registry.register(Box::new(resident_bytes.clone()))?;
        let trims = IntCounter::with_opts(Opts::new(
            "eod_memory_trims_total",
            "Times the allocator's free memory was returned to the system after a burst",
        ))?;
        registry.register(Box::new(trims.clone()))?;
        let released_bytes = IntCounter::with_opts(Opts::new(
            "eod_memory_released_bytes_total",
            "Resident memory returned to the system by those trims",
        ))?;
        registry.register(Box::new(released_bytes.clone()))?;
        let trim_seconds = Histogram::with_opts(
            HistogramOpts::new("eod_memory_trim_seconds", "How long each trim took")
                .buckets(vec![0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]),
        )?;
        registry.register(Box::new(trim_seconds.clone()))?;
        Ok(MemoryMetrics {
            resident_bytes,
            trims,
            released_bytes,
            trim_seconds,
        })
    }

    pub(crate) fn collectors(&self) -> [&dyn Collector; 4] {
        [
            &self.resident_bytes,
            &self.trims,
            &self.released_bytes,
            &self.trim_seconds,
        ]
    }
}

/// Decides when to trim from what it observes: a count that moves whenever the process does
/// work, and the process's resident memory. Time is passed in, so a test can step it.
#[derive(Debug)]
pub struct QuietSpell {
    policy: TrimPolicy,
    activity: u64,
    moved_at: Instant,
    /// Resident memory just after the last trim (or at the start).
    rss_after_trim: u64,
    /// Trimmed since the activity last moved: one trim per quiet spell.
    trimmed_in_spell: bool,
}

impl QuietSpell {
    pub fn new(policy: TrimPolicy, activity: u64, rss: u64, now: Instant) -> Self {
        QuietSpell {
            policy,
            activity,
            moved_at: now,
            rss_after_trim: rss,
            trimmed_in_spell: false,
        }
    }

    /// True when a trim is due now: the activity has not moved for the policy's quiet spell,
    /// memory grew by its growth since the last trim, and this spell has had no trim yet.
    pub fn observe(&mut self, activity: u64, rss: u64, now: Instant) -> bool {
        if activity != self.activity {
            self.activity = activity;
            self.moved_at = now;
            self.trimmed_in_spell = false;
            return false;
        }
        !self.trimmed_in_spell
            && now.duration_since(self.moved_at) >= self.policy.quiet_for
            && rss >= self.rss_after_trim.saturating_add(self.policy.min_growth)
    }

    /// Records a trim's outcome: growth is counted from what remained.
    pub fn trimmed(&mut self, rss_after: u64) {
        self.rss_after_trim = rss_after;
        self.trimmed_in_spell = true;
    }
}

/// What one trim did.
#[derive(Debug, Clone, Copy)]
pub struct Trim {
    pub rss_before: u64,
    pub rss_after: u64,
    pub took: Duration,
}

/// Returns the allocator's free memory to the system (glibc: `malloc_trim(0)`, which since
/// glibc 2.8 goes through every arena and gives back every free page, not only a heap's top).
/// `None` where the allocator has no such call.
pub fn trim_free_memory() -> Option<Trim> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let rss_before = resident_bytes()?;
        let started = Instant::now();
        // SAFETY: malloc_trim takes a plain integer and only works on the allocator's own
        // structures, under the arenas' locks; any thread may call it at any time.
        unsafe {
            libc::malloc_trim(0);
        }
        let took = started.elapsed();
        let rss_after = resident_bytes()?;
        Some(Trim {
            rss_before,
            rss_after,
            took,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// The process's resident memory in bytes (Linux: VmRSS), `None` where it cannot be read.
pub fn resident_bytes() -> Option<u64> {
    process_status_bytes("VmRSS")
}

/// A size the kernel reports in `/proc/self/status` (`VmRSS`, `VmHWM`...), in bytes; `None`
/// where it cannot be read.
pub fn process_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kilobytes: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kilobytes * 1024)
}

/// A count that moves whenever the process works: records consumed, rows written by any sink,
/// snapshot bytes written. Each is a counter, so their sum stands still only when all do.
fn activity(metrics: &Metrics) -> u64 {
    let counters: [&dyn Collector; 3] = [
        &metrics.sources.kafka_consumed,
        &metrics.sinks.rows_written,
        &metrics.snapshots.bytes_written,
    ];
    counters
        .iter()
        .flat_map(|collector| collector.collect())
        .map(|family| {
            family
                .get_metric()
                .iter()
                .map(|metric| metric.get_counter().get_value() as u64)
                .fold(0u64, u64::wrapping_add)
        })
        .fold(0u64, u64::wrapping_add)
}

/// Waits `wait`, in slices so that the end of a run does not wait for a whole look (`eod run
/// --until-caught-up` reports its time after this thread ends); false once `done` is set.
fn wait_unless_done(wait: Duration, done: &AtomicBool) -> bool {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if done.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep(DONE_SEEN_WITHIN);
    }
    !done.load(Ordering::Acquire)
}

/// Starts the thread that keeps `eod_resident_memory_bytes` current and, with a policy, trims
/// after bursts; it ends once `done` is set.
pub fn spawn_memory_watch(
    policy: Option<TrimPolicy>,
    metrics: Arc<Metrics>,
    done: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("memory-watch".into())
        .spawn(move || {
            let Some(rss) = resident_bytes() else {
                tracing::info!("resident memory unreadable here: not reported, no trims");
                return;
            };
            metrics.memory.resident_bytes.set(rss as i64);
            let mut spell = policy
                .map(|policy| QuietSpell::new(policy, activity(&metrics), rss, Instant::now()));
            while wait_unless_done(LOOK_EVERY, &done) {
                let Some(rss) = resident_bytes() else {
                    continue;
                };
                metrics.memory.resident_bytes.set(rss as i64);
                let Some(spell) = spell.as_mut() else {
                    continue;
                };
                if !spell.observe(activity(&metrics), rss, Instant::now()) {
                    continue;
                }
                let _span = tracing::info_span!("memory_trim").entered();
                let Some(trim) = trim_free_memory() else {
                    continue;
                };
                spell.trimmed(trim.rss_after);
                metrics.memory.resident_bytes.set(trim.rss_after as i64);
                let released = trim.rss_before.saturating_sub(trim.rss_after);
                metrics.memory.trims.inc();
                metrics.memory.released_bytes.inc_by(released);
                metrics.memory.trim_seconds.observe(trim.took.as_secs_f64());
                tracing::info!(
                    rss_before_mb = trim.rss_before >> 20,
                    rss_after_mb = trim.rss_after >> 20,
                    seconds = trim.took.as_secs_f64(),
                    "quiet after a burst: free memory returned to the system"
                );
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn policy(quiet_ms: u64) -> TrimPolicy {
        TrimPolicy {
            quiet_for: Duration::from_millis(quiet_ms),
            min_growth: 64 * MB,
        }
    }

    #[test]
    fn the_flags_make_the_policy_and_zero_turns_it_off() {
        assert_eq!(TrimPolicy::from_flags(0, 64), None);
        assert_eq!(
            TrimPolicy::from_flags(2_000, 64),
            Some(TrimPolicy::default())
        );
        let huge = TrimPolicy::from_flags(1, u64::MAX).unwrap();
        assert_eq!(huge.min_growth, u64::MAX, "a growth past u64 saturates");
    }

    #[test]
    fn trims_once_quiet_for_long_enough_after_growth() {
        let start = Instant::now();
        let mut spell = QuietSpell::new(policy(2_000), 0, 100 * MB, start);
        let at = |ms: u64| start + Duration::from_millis(ms);
        // A burst: the activity moves and memory grows.
        assert!(!spell.observe(10, 400 * MB, at(250)));
        assert!(!spell.observe(20, 500 * MB, at(500)));
        // Quiet, but not for long enough yet.
        assert!(!spell.observe(20, 500 * MB, at(2_499)));
        assert!(spell.observe(20, 500 * MB, at(2_500)));
        spell.trimmed(300 * MB);
        // Still quiet: nothing grew since the trim.
        assert!(!spell.observe(20, 300 * MB, at(10_000)));
    }

    /// The watch ends soon after the run is done, not at its next look: `eod run` reports its
    /// time after joining it.
    #[test]
    fn the_watch_ends_soon_after_the_run() {
        let done = Arc::new(AtomicBool::new(false));
        let metrics = Metrics::new().unwrap();
        let watch = spawn_memory_watch(Some(TrimPolicy::default()), metrics, done.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let ended = Instant::now();
        done.store(true, Ordering::Release);
        watch.join().unwrap();
        let took = ended.elapsed();
        assert!(
            took < LOOK_EVERY / 2,
            "the watch ended {took:?} after the run"
        );
    }

    /// Without a growth to wait for, a quiet spell still has one trim, not one per look.
    #[test]
    fn one_trim_per_quiet_spell() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut spell = QuietSpell::new(
            TrimPolicy {
                quiet_for: Duration::from_millis(300),
                min_growth: 0,
            },
            0,
            100 * MB,
            start,
        );
        assert!(!spell.observe(1, 100 * MB, at(0)));
        assert!(spell.observe(1, 100 * MB, at(300)));
        spell.trimmed(90 * MB);
        for look in 2..40 {
            assert!(!spell.observe(1, 90 * MB, at(look * 250)), "look {look}");
        }
        // Work, then quiet again: the next spell has its trim.
        assert!(!spell.observe(2, 95 * MB, at(10_000)));
        assert!(spell.observe(2, 95 * MB, at(10_300)));
    }

    #[test]
    fn a_trickle_with_pauses_does_not_trim_at_every_pause() {
        let start = Instant::now();
        let mut spell = QuietSpell::new(policy(2_000), 0, 300 * MB, start);
        let mut activity = 0;
        for pause in 0..20u64 {
            // A trade, then a pause of 3 s: memory grows by 1 MB each time.
            activity += 1;
            let trade_at = start + Duration::from_secs(pause * 4);
            let rss = 300 * MB + pause * MB;
            assert!(!spell.observe(activity, rss, trade_at));
            assert!(
                !spell.observe(activity, rss, trade_at + Duration::from_secs(3)),
                "trimmed after {pause} small pauses"
            );
        }
    }

    #[test]
    fn work_that_resumes_restarts_the_quiet_spell() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut spell = QuietSpell::new(policy(2_000), 0, 100 * MB, start);
        assert!(!spell.observe(5, 400 * MB, at(0)));
        // The books writer is still writing 1.5 s on: the spell starts again from there.
        assert!(!spell.observe(6, 400 * MB, at(1_500)));
        assert!(!spell.observe(6, 400 * MB, at(3_000)));
        assert!(spell.observe(6, 400 * MB, at(3_500)));
    }

    #[test]
    fn reads_sizes_the_kernel_reports() {
        let resident = resident_bytes().expect("VmRSS");
        let peak = process_status_bytes("VmHWM").expect("VmHWM");
        assert!(resident > MB && peak >= resident, "{resident} {peak}");
        assert_eq!(process_status_bytes("VmNoSuchField"), None);
        // A field's name is matched whole: "VmRS" is no field.
        assert_eq!(process_status_bytes("VmRS"), None);
    }

    /// The call itself gives back memory freed in the middle of the heap, which glibc keeps
    /// on its own.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_trim_returns_memory_freed_inside_the_heap() {
        // On a thread of its own, so its arena holds nothing else of the test harness's.
        let released = std::thread::spawn(|| {
            // 64 MiB in small blocks (below the mmap threshold, so they come from the
            // arena); every block but the last is freed, which pins the heap's top.
            let mut blocks: Vec<Box<[u8; 1024]>> =
                (0..65_536).map(|_| Box::new([1u8; 1024])).collect();
            let last = blocks.pop();
            drop(blocks);
            let trim = trim_free_memory().expect("glibc has malloc_trim");
            drop(last);
            trim.rss_before.saturating_sub(trim.rss_after)
        })
        .join()
        .unwrap();
        assert!(
            released >= 32 * MB,
            "released only {} MB of 64 MiB freed",
            released / MB
        );
    }
}
