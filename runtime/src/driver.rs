//! The one epoch loop. A [`Source`] (an archive, the simulator, Kafka) enters input; the
//! driver decides when an epoch closes ([`EpochPolicy`]) and how far the source may run ahead
//! of what the dataflow has done ([`EpochLimits`]), both counted in closed epochs: an epoch is
//! *in flight* from its close until the views reflect it, and *not yet durable* until the views
//! and every durable sink (the books) hold it.
//!
//! Contract: every closed epoch is reported to the source once as reflected and once as durable,
//! in order; at the end the open epoch is closed, the driver steps the worker until the views
//! reflect it, takes the source's background input to its end (even when stopped), then closes
//! the inputs and steps until every epoch is durable (or the source says stop). Background
//! input is taken while the views hold every closed epoch, and at least every
//! [`BACKGROUND_AT_LEAST_EVERY`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use eod_dataflow::{Inputs, Time};
use timely::dataflow::operators::probe::Handle as ProbeHandle;

use crate::metrics::Metrics;

/// When the open epoch closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochPolicy {
    /// After this many input messages (replay: reproducible epochs). Closing does not wait for
    /// room; the source waits after it instead, until the epochs in flight are within limits.
    Messages(u64),
    /// Live input: an epoch closes once the limits leave room and it holds input, or, empty,
    /// once it has been open for `epoch`, so that an idle worker or partition never holds the
    /// frontier back for longer. Under load an epoch grows to hold what arrived while the
    /// previous ones computed, up to `open_epoch_cap` messages, instead of a queue of small
    /// epochs each waiting its turn; at a low rate a message does not wait for a clock bucket to
    /// end. Epochs are numbered by the microsecond of the Unix clock they opened at (or the
    /// next number, when two open within one; see [`shared_clock_now`]), so that the workers'
    /// and processes' epochs interleave by the clock: one worker's epoch is complete once every
    /// other has closed one after it.
    Clock {
        epoch: Duration,
        open_epoch_cap: u64,
    },
}

/// How many closed epochs may be in flight, and not yet durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochLimits {
    pub in_flight: usize,
    pub not_durable: usize,
}

/// Defaults, defined once. Replay waits on the views after [`REPLAY_IN_FLIGHT_MESSAGES`] (from
/// [`REPLAY_IN_FLIGHT`] to [`REPLAY_MAX_IN_FLIGHT`] epochs) and on the books after
/// [`REPLAY_NOT_DURABLE_MESSAGES`] (see [`replay_limits`]); live input lets the books fall
/// behind by a few seconds of epochs (a books batch waits up to its age limit).
pub const REPLAY_IN_FLIGHT: usize = 4;
/// How many messages per worker a replay's closed epochs may hold before it waits for the
/// views. Counted in epochs instead (4), 250-message epochs kept 1,000 messages per worker in
/// flight, a few milliseconds of work: the workers waited on each other's progress at every
/// few epochs, and about half of the replay's extra time against big epochs was that waiting
/// (bench/RESULTS.md, 2026-12-05: 128 in flight 0.79x the wall of 4, with a lower peak than
/// the default epochs'). Live input keeps one epoch in flight, for its latency.
pub const REPLAY_IN_FLIGHT_MESSAGES: u64 = 32_000;
/// Most epochs a replay keeps in flight, however small: each open epoch costs memory in the
/// stages it has reached (0.4-0.9 MB per epoch measured; their batch buffers, most likely, not
/// confirmed with a heap profile), and 64,000 one-message epochs in flight held 2.3 GB, against
/// 43 MB with 4, for a 50k-message archive. 250-message epochs gained nothing from 256 over
/// 128, and took 50 MB more.
pub const REPLAY_MAX_IN_FLIGHT: usize = 128;
/// How far a replay's books may lag, in messages, across the workers that share it (a
/// process's, or with SQLite's one writer the whole cluster's; see
/// [`crate::replay::books_lag_shared_by`]): each holds its share. Enough that SQLite's one
/// books writer finds a full group commit
/// ([`crate::replay::REPLAY_BOOKS_BATCH_ROWS`]) waiting whenever it finishes one; more only
/// holds rows in memory. Counted per worker, the writer's lag grew with the workers: a
/// 1M-message replay with SQLite books and one worker took 1.37x the time it takes at this
/// bound (100,000 a worker: 5.93 s against 4.34 s, six pairs), and with two it held 16 MiB more
/// at its peak for the same time (200,000 in all: peak 416 against 400 MiB, wall A/B 0.96-0.99
/// in two calls of six and eight pairs). Less is slower: 120,000 in all took 3% longer with two
/// workers, and 50,000 a worker 33%. PostgreSQL and SQL Server books have a writer per worker,
/// and their server's CPU sets the pace: with two workers, 75,000, 100,000 and 150,000 a worker
/// took the same time (bench/RESULTS.md, 2026-12-07, seventh session). Counted in epochs
/// instead (4), a 1M-message replay in 100k-message epochs buffered half a million rows ahead
/// of the writer, and in 250-message epochs the writer never saw more than four epochs' rows: a
/// transaction, and its fsync and rewrite of the hot index pages, every thousand rows.
pub const REPLAY_NOT_DURABLE_MESSAGES: u64 = 150_000;

/// Most messages a replay enters between two steps of the worker while an epoch is closed and
/// computing, so that its rows reach the sinks while the next epoch is read. Small epochs step
/// more often anyway; a step per feed there cost 5% of a 250-message-epoch replay.
pub const REPLAY_FEED_CHUNK: u64 = 10_000;

/// A replay's limits for epochs of `epoch_messages` per worker, with `lag_sharers` workers
/// sharing the books lag ([`crate::replay::books_lag_shared_by`]).
pub fn replay_limits(epoch_messages: u64, lag_sharers: usize) -> EpochLimits {
    let epochs_holding =
        |messages: u64| usize::try_from(messages / epoch_messages.max(1)).unwrap_or(usize::MAX);
    let workers = u64::try_from(lag_sharers.max(1)).unwrap_or(u64::MAX);
    EpochLimits {
        in_flight: epochs_holding(REPLAY_IN_FLIGHT_MESSAGES)
            .clamp(REPLAY_IN_FLIGHT, REPLAY_MAX_IN_FLIGHT),
        not_durable: epochs_holding(REPLAY_NOT_DURABLE_MESSAGES / workers).max(2),
    }
}

/// How long a live epoch without input stays open (`--epoch-ms`): an idle worker closes an empty
/// epoch this often, so that the frontier moves on for the workers that have input, and each
/// costs the dataflow's fixed work per epoch. An epoch holding input does not wait for it: it
/// closes as soon as the one before is in the views. Measured through Kafka (bench/RESULTS.md,
/// 2026-12-04), against closing every epoch at the end of a 10 ms bucket: fill-to-view p50 at
/// 50k msg/s with one worker lower in 5 of 6 pairs (8.5-12.7 ms against 15.8-17.6 ms in the
/// last three), at 5k msg/s with two 7.1 against 14.0 ms, at 1k msg/s 4.2 against 8.1 ms.
pub const LIVE_EPOCH_MS: u64 = 10;

/// Live input closes an epoch only once the one before is in the views: under load the open
/// epoch then holds all that arrived meanwhile, and each epoch's fixed cost is paid once for it
/// rather than by two smaller epochs computing side by side. Measured through Kafka
/// (`eod-bench-kafka --max-in-flight 1|2`, pairs in turn, bench/RESULTS.md 2026-12-04): at
/// 50k msg/s fill-to-view p50 31-45 ms with one in flight against 41-51 ms with two (1 worker)
/// and 47-58 against 89-112 ms (2 workers); no worse at 1k and 5k msg/s or in a 10x burst; four
/// or eight in flight were worse still.
pub const LIVE_LIMITS: EpochLimits = EpochLimits {
    in_flight: 1,
    not_durable: 2_000,
};

/// A live run's limits. When the books sink spills to disk, nothing bounds how far the books
/// may fall behind: a books outage must not freeze the views (the speed path never waits for
/// the truth path), and what waits costs disk, not memory. Without a spill the books may lag
/// by [`LIVE_LIMITS`]' 2,000 epochs, about 20 s of 10 ms epochs.
pub fn live_limits(books_spill: bool) -> EpochLimits {
    if books_spill {
        EpochLimits {
            not_durable: usize::MAX,
            ..LIVE_LIMITS
        }
    } else {
        LIVE_LIMITS
    }
}
/// How far apart, in clock epoch numbers, two clock epochs opened `span` apart are.
pub fn clock_span(span: Duration) -> Time {
    Time::try_from(span.as_micros()).unwrap_or(Time::MAX)
}

/// The clock epoch number of now: the microsecond since the Unix epoch, the same on every
/// worker of every process (as far as their hosts' clocks agree). Counted from each worker's
/// own start, the numbers of two workers differed by however far apart they started: the one
/// ahead waited that long for its peers' inputs to pass each epoch it closed, and in a quiet
/// market the views never held its open epoch, so a restore's books never went on (which
/// fits a fault test whose books stopped at 3,345 of 73,387 rows after a restart).
pub fn shared_clock_now() -> Time {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, clock_span)
}

/// Longest a source's background input waits for the views to hold every closed epoch before
/// it takes a chunk anyway (see [`Source::background`]).
pub const BACKGROUND_AT_LEAST_EVERY: Duration = Duration::from_millis(100);

/// Longest an idle live worker parks: a stop (Ctrl-C, the end of a source) does not wake it,
/// and must be seen within this whatever `--epoch-ms` is.
pub const IDLE_PARK_AT_MOST: Duration = Duration::from_millis(100);

/// Most messages an open epoch takes while earlier epochs are still computing (live input).
pub const OPEN_EPOCH_CAP: u64 = 200_000;

/// What a call to [`Source::feed`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Entered this many messages (units, records) into the open epoch.
    Entered(u64),
    /// Nothing available now: the worker may park briefly.
    Idle,
    /// The source has no more input.
    Exhausted,
}

/// An input of the dataflow, driven by [`drive`].
pub trait Source {
    /// Enters available input, at most about `budget` messages.
    fn feed(&mut self, inputs: &mut Inputs, budget: u64) -> Result<Feed>;

    /// The open epoch is about to close: enter what is kept per epoch (outcome counts).
    fn before_close(&mut self, _inputs: &mut Inputs) {}

    /// `epoch` just closed.
    fn closed(&mut self, _epoch: Time) {}

    /// These closed epochs are now reflected by the views, oldest first.
    fn reflected(&mut self, _epochs: &[Time]) {}

    /// These closed epochs are now held by the views and every durable sink, oldest first.
    fn durable(&mut self, _epochs: &[Time]) -> Result<()> {
        Ok(())
    }

    /// Input for a sink that enters no epoch (a restore's records for the books), taken a
    /// chunk at a time while the views hold every closed epoch (once per epoch under load,
    /// back to back when idle), at least every [`BACKGROUND_AT_LEAST_EVERY`] once the views
    /// hold the epochs before the first, and to its end before the inputs close, also when
    /// stopped.
    /// Returns whether some remains.
    fn background(&mut self, _inputs: &mut Inputs) -> Result<bool> {
        Ok(false)
    }

    /// Where this process's workers say which epochs they closed with input (clock epochs),
    /// shared by every worker of the process, or `None`.
    fn peer_closes(&self) -> Option<&PeerCloses> {
        None
    }

    /// The source is exhausted (or stopped): what follows is the final close and drain.
    fn end_of_input(&mut self) {}

    /// Stop now (Ctrl-C, a time limit): the drain at the end is cut short too.
    fn stopped(&self) -> bool {
        false
    }

    /// Whether input arriving for this worker wakes its thread (unparks it), so that an idle
    /// worker may park until its open epoch is due rather than a millisecond at a time. A
    /// source that only finds its input when asked (a simulator's schedule) says no.
    fn input_wakes_worker(&self) -> bool {
        false
    }
}

/// The latest clock epoch a worker of the cluster closed with input, as far as this process
/// knows, shared by the process's workers ([`Source::peer_closes`]). A worker's epoch is in the
/// views once every other worker's input has passed it, and an idle worker moves its input on
/// only when it closes its empty epoch, once per `--epoch-ms`: with two workers, each epoch
/// with input waited up to that long for the idle one (close to view 5-9.5 ms against 1.6-2.3
/// ms with one worker, through Kafka at 50k msg/s, 2026-12-05). An idle worker that sees a
/// peer's epoch at or after its own open one closes its own at once, after the peer's.
/// Workers of this process tell each other here; other processes' closes arrive through
/// [`PeerCloses::heard`] (the run broadcasts this process's in a dataflow of their own).
#[derive(Debug, Default)]
pub struct PeerCloses {
    /// One past the latest epoch a worker of this process closed with input (0: none yet).
    here: AtomicU64,
    /// One past the latest any worker this process has heard of closed, its own included.
    anywhere: AtomicU64,
}

impl PeerCloses {
    pub fn latest(&self) -> Option<Time> {
        self.anywhere.load(Ordering::Acquire).checked_sub(1)
    }

    /// The latest epoch a worker of this process closed with input: what other processes
    /// should hear.
    pub fn latest_here(&self) -> Option<Time> {
        self.here.load(Ordering::Acquire).checked_sub(1)
    }

    /// Another process's worker closed `epoch` with input.
    pub fn heard(&self, epoch: Time) {
        self.anywhere
            .fetch_max(epoch.saturating_add(1), Ordering::AcqRel);
    }

    fn closed_with_input(&self, epoch: Time) {
        let past = epoch.saturating_add(1);
        self.here.fetch_max(past, Ordering::AcqRel);
        self.anywhere.fetch_max(past, Ordering::AcqRel);
    }
}

/// This worker's link to the workers of the other processes: it sends them this process's
/// latest close with input, and a dataflow of its own hands theirs to [`PeerCloses::heard`].
/// Without it an idle process moved its input on only once per `--epoch-ms`, and every epoch a
/// busy process closed waited for that: `eod run -n 2` at 300 msg/s had a fill-to-view p99 of
/// 10 ms, the idle epoch's length. Every worker of the cluster builds it (timely builds each
/// dataflow on all of them); its one input stays at time 0, so it costs no progress tracking.
pub struct PeerClosesBeacon {
    input: timely::dataflow::InputHandleVec<Time, Time>,
    sent: Option<Time>,
}

impl PeerClosesBeacon {
    pub fn build(worker: &mut timely::worker::Worker, peers: Arc<PeerCloses>) -> PeerClosesBeacon {
        use timely::dataflow::channels::pact::Pipeline;
        use timely::dataflow::operators::generic::operator::Operator;
        use timely::dataflow::operators::vec::{Broadcast, Input};
        let input = worker.dataflow::<Time, _, _>(|scope| {
            let (input, closes) = scope.new_input::<Time>();
            closes
                .broadcast()
                .sink(Pipeline, "PeerCloses", move |(input, _frontier)| {
                    input.for_each(|_time, closes| {
                        for epoch in closes.drain(..) {
                            peers.heard(epoch);
                        }
                    });
                });
            input
        });
        PeerClosesBeacon { input, sent: None }
    }

    /// Sends `peers`' latest close with input in this process, when the others have not had it.
    pub fn send_news(&mut self, peers: &PeerCloses) {
        let Some(here) = peers.latest_here() else {
            return;
        };
        if self.sent.is_none_or(|sent| here > sent) {
            self.input.send(here);
            self.input.flush();
            self.sent = Some(here);
        }
    }
}

/// How far the dataflow has got: the views, and the views with every durable sink.
pub struct Frontiers {
    pub views: ProbeHandle<Time>,
    pub durable: ProbeHandle<Time>,
}

/// Runs `source` into `inputs` on this worker until it is exhausted or stopped.
pub fn drive(
    worker: &mut timely::worker::Worker,
    inputs: Inputs,
    frontiers: &Frontiers,
    source: &mut impl Source,
    policy: EpochPolicy,
    limits: EpochLimits,
    metrics: &Metrics,
) -> Result<()> {
    drive_from(
        worker, inputs, frontiers, source, policy, limits, metrics, 0,
    )
}

/// [`drive`], with the first epoch at `start` or later (the earlier times were used before,
/// for a restore).
#[allow(clippy::too_many_arguments)]
pub fn drive_from(
    worker: &mut timely::worker::Worker,
    mut inputs: Inputs,
    frontiers: &Frontiers,
    source: &mut impl Source,
    policy: EpochPolicy,
    limits: EpochLimits,
    metrics: &Metrics,
    start: Time,
) -> Result<()> {
    let reports = worker.index() == 0;
    let epoch_compute = reports.then(|| metrics.epoch_compute.clone());
    let mut epochs = Epochs::new(policy, limits, start, epoch_compute);
    inputs.advance_to(epochs.open);
    loop {
        if source.stopped() {
            break;
        }
        let fed = match epochs.feed_budget() {
            0 => Feed::Idle,
            budget => source.feed(&mut inputs, budget)?,
        };
        match fed {
            Feed::Exhausted => break,
            Feed::Entered(n) => {
                epochs.in_open += n;
                epochs.fed_since_step += n;
            }
            Feed::Idle => {}
        }
        epochs.report(frontiers, source)?;
        // Only once the views hold every closed epoch, a restore's included; and then
        // between epochs (before the next closes), not only when the source is idle: under a
        // sustained burst the background input still gets a chunk per epoch, and what waits
        // on it (the books' rows, held in memory until the restore is in) does not grow for
        // the whole burst. And at least every `BACKGROUND_AT_LEAST_EVERY` once the restore
        // is in the views: a peer that lags for good (a host whose clock is behind, a worker
        // stalled) must not hold the books back for as long.
        let views_hold_every_closed_epoch = !frontiers.views.less_than(&epochs.open);
        let background_overdue = epochs.background_at.elapsed() >= BACKGROUND_AT_LEAST_EVERY
            && !frontiers.views.less_than(&epochs.start);
        let mut background_left = false;
        if views_hold_every_closed_epoch || background_overdue {
            background_left = source.background(&mut inputs)?;
            epochs.background_at = Instant::now();
        }
        let peer_closed = source.peer_closes().and_then(PeerCloses::latest);
        if epochs.close_due(peer_closed) {
            source.before_close(&mut inputs);
            let held_input = epochs.in_open > 0;
            let closed = epochs.close(&mut inputs, peer_closed);
            if held_input {
                if let Some(peers) = source.peer_closes() {
                    peers.closed_with_input(closed);
                }
            }
            source.closed(closed);
            metrics.epochs_closed.inc();
        }
        if reports {
            epochs.publish_metrics(metrics);
        }
        match epochs.policy {
            // Replay feeds on without parking while it has input.
            EpochPolicy::Messages(_) => {
                if epochs.feed_budget() == 0 {
                    // Waiting for the views or a durable sink: park until something arrives
                    // (another worker's data or progress, a writer's report) or a millisecond
                    // passes. Spinning here took a core from the books writer: in 250-message
                    // epochs with SQLite books the workers stepped 96M times in a 10 s replay,
                    // which took 15% longer than parking (farm-bench, RESULTS 2026-12-04).
                    worker.step_or_park(Some(Duration::from_millis(1)));
                    epochs.fed_since_step = 0;
                } else if !matches!(fed, Feed::Entered(_))
                    || (epochs.fed_since_step >= REPLAY_FEED_CHUNK && !epochs.in_flight.is_empty())
                {
                    // While closed epochs compute, a step per chunk fed moves them on: fed
                    // without steps, three epochs reached the books writer at once, and it
                    // then wrote alone while the workers waited for it.
                    worker.step();
                    epochs.fed_since_step = 0;
                }
            }
            EpochPolicy::Clock { .. } => {
                let idle =
                    matches!(fed, Feed::Idle) && !background_left && source.input_wakes_worker();
                worker.step_or_park(Some(epochs.live_park(idle)));
            }
        }
    }
    source.end_of_input();
    source.before_close(&mut inputs);
    let last = epochs.open;
    epochs.closed_epochs(last);
    metrics.epochs_closed.inc();
    source.closed(last);
    // The inputs stay open until the views reflect the last epoch: closing them completes the
    // operators, and a completed operator drops its state before its frontier moves on. On a
    // 5M-trade restore that teardown (millions of map entries freed) was a fifth of the CPU
    // before the views could say they held everything.
    inputs.advance_to(last + 1);
    inputs.flush();
    step_until(worker, &mut epochs, frontiers, source, |e| {
        e.in_flight.is_empty()
    })?;
    // Even when stopped: closing the inputs ends the background input too, and a books
    // restore ended early would let the books form rows from part of their state.
    while source.background(&mut inputs)? {
        epochs.report(frontiers, source)?;
        worker.step();
    }
    inputs.close();
    step_until(worker, &mut epochs, frontiers, source, |e| {
        e.not_durable.is_empty()
    })?;
    if reports {
        epochs.publish_metrics(metrics);
    }
    Ok(())
}

/// Steps the worker, reporting progress to the source, until `done` holds (or the source says
/// stop).
fn step_until(
    worker: &mut timely::worker::Worker,
    epochs: &mut Epochs,
    frontiers: &Frontiers,
    source: &mut impl Source,
    done: impl Fn(&Epochs) -> bool,
) -> Result<()> {
    while !source.stopped() {
        epochs.report(frontiers, source)?;
        if done(epochs) {
            break;
        }
        worker.step_or_park(Some(Duration::from_millis(1)));
    }
    Ok(())
}

/// The open epoch and the closed ones not yet reflected or durable.
struct Epochs {
    policy: EpochPolicy,
    limits: EpochLimits,
    /// The first epoch's number (a restore used those before it).
    start: Time,
    open: Time,
    opened_at: Instant,
    /// When the source's background input was last offered a chunk.
    background_at: Instant,
    in_open: u64,
    /// Messages entered since the replay loop last stepped the worker.
    fed_since_step: u64,
    /// Each with the instant it closed.
    in_flight: VecDeque<(Time, Instant)>,
    not_durable: VecDeque<Time>,
    /// Takes how long each epoch took from its close until the views reflected it (worker 0).
    epoch_compute: Option<prometheus::Histogram>,
}

impl Epochs {
    fn new(
        policy: EpochPolicy,
        limits: EpochLimits,
        start: Time,
        epoch_compute: Option<prometheus::Histogram>,
    ) -> Epochs {
        Epochs {
            policy,
            limits,
            opened_at: Instant::now(),
            background_at: Instant::now(),
            start,
            // Replay numbers epochs from 1; clock epochs by the clock, from `start`.
            open: match policy {
                EpochPolicy::Messages(_) => start.max(1),
                EpochPolicy::Clock { .. } => start,
            },
            in_open: 0,
            fed_since_step: 0,
            in_flight: VecDeque::new(),
            not_durable: VecDeque::new(),
            epoch_compute,
        }
    }

    fn within_limits(&self) -> bool {
        self.in_flight.len() <= self.limits.in_flight
            && self.not_durable.len() <= self.limits.not_durable
    }

    fn room_for_another(&self) -> bool {
        self.in_flight.len() < self.limits.in_flight
            && self.not_durable.len() < self.limits.not_durable
    }

    /// How much the source may enter now.
    fn feed_budget(&self) -> u64 {
        match self.policy {
            // What the open epoch still takes: a source that stops short (at the end of an
            // archive segment) fills the rest of the epoch from where it goes on.
            EpochPolicy::Messages(n) if self.within_limits() => {
                n.saturating_sub(self.in_open).clamp(1, REPLAY_FEED_CHUNK)
            }
            EpochPolicy::Messages(_) => 0,
            EpochPolicy::Clock { open_epoch_cap, .. } => {
                open_epoch_cap.saturating_sub(self.in_open).min(20_000)
            }
        }
    }

    /// The clock's time now, in epoch numbers, never before the first epoch.
    fn clock_time(&self) -> Time {
        self.start.max(shared_clock_now())
    }

    /// How long a live worker may park. While epochs compute, or input or a restore's
    /// backlog is still waiting, a millisecond. Idle (the source found nothing, and input
    /// arriving wakes the worker: [`Source::input_wakes_worker`]) with nothing in flight:
    /// until its open epoch is due by the clock, since whatever else it must act on wakes it:
    /// a record arriving (the Kafka consumer's non-empty callback), a peer's data or progress
    /// (timely's). Parked a millisecond at a time, an idle `eod run` woke each
    /// worker a thousand times a second, 7% of a core for nothing (bench/RESULTS.md,
    /// 2026-12-07). At most [`IDLE_PARK_AT_MOST`], since a stop does not wake it.
    fn live_park(&self, idle: bool) -> Duration {
        const BUSY: Duration = Duration::from_millis(1);
        match self.policy {
            EpochPolicy::Clock { epoch, .. } if idle && self.in_flight.is_empty() => epoch
                .saturating_sub(self.opened_at.elapsed())
                .clamp(BUSY, IDLE_PARK_AT_MOST),
            _ => BUSY,
        }
    }

    /// `peer_closed`: the latest epoch a worker of the cluster closed with input, as far as
    /// this process knows ([`PeerCloses::latest`]).
    fn close_due(&self, peer_closed: Option<Time>) -> bool {
        match self.policy {
            EpochPolicy::Messages(n) => self.in_open >= n,
            EpochPolicy::Clock { epoch, .. } => {
                self.room_for_another()
                    && (self.in_open > 0
                        || self.opened_at.elapsed() >= epoch
                        || peer_closed.is_some_and(|peer| peer >= self.open))
            }
        }
    }

    /// Closes the open epoch; returns its time. The next opens after `peer_closed` too, so
    /// that the views can pass the peer's epoch.
    fn close(&mut self, inputs: &mut Inputs, peer_closed: Option<Time>) -> Time {
        let closed = self.open;
        self.closed_epochs(closed);
        self.open = match self.policy {
            EpochPolicy::Messages(_) => closed + 1,
            EpochPolicy::Clock { .. } => self
                .clock_time()
                .max(closed + 1)
                .max(peer_closed.map_or(0, |peer| peer.saturating_add(1))),
        };
        self.opened_at = Instant::now();
        self.in_open = 0;
        inputs.advance_to(self.open);
        inputs.flush();
        closed
    }

    fn closed_epochs(&mut self, closed: Time) {
        self.in_flight.push_back((closed, Instant::now()));
        self.not_durable.push_back(closed);
    }

    /// Tells the source what the views and the durable sinks now hold.
    fn report(&mut self, frontiers: &Frontiers, source: &mut impl Source) -> Result<()> {
        let reflected = passed(&mut self.in_flight, &frontiers.views, |(time, _)| *time);
        if let Some(histogram) = &self.epoch_compute {
            for (_, closed) in &reflected {
                histogram.observe(closed.elapsed().as_secs_f64());
            }
        }
        if !reflected.is_empty() {
            let times: Vec<Time> = reflected.iter().map(|(time, _)| *time).collect();
            source.reflected(&times);
        }
        let held = passed(&mut self.not_durable, &frontiers.durable, |time| *time);
        if !held.is_empty() {
            source.durable(&held)?;
        }
        Ok(())
    }

    fn publish_metrics(&self, metrics: &Metrics) {
        metrics.epochs_in_flight.set(self.in_flight.len() as i64);
        metrics
            .epochs_not_durable
            .set(self.not_durable.len() as i64);
        if let EpochPolicy::Clock { .. } = self.policy {
            let lag = self
                .in_flight
                .front()
                .map_or(0.0, |(_, closed)| closed.elapsed().as_secs_f64());
            metrics.frontier_lag.set(lag);
        }
    }
}

/// Removes from `queue` the closed epochs `probe` has passed.
fn passed<E>(
    queue: &mut VecDeque<E>,
    probe: &ProbeHandle<Time>,
    time: impl Fn(&E) -> Time,
) -> Vec<E> {
    let frontier = probe.with_frontier(|f| f.first().copied().unwrap_or(Time::MAX));
    let passed = queue.iter().take_while(|e| time(e) < frontier).count();
    queue.drain(..passed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use eod_dataflow::{build_graph, BooksRestore, Fill, GraphOptions, TradeEvent};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn fill(n: u64) -> Fill {
        Fill {
            exec_id: format!("E{n}").into(),
            trader: "alice".into(),
            symbol: "AAA".into(),
            qty: 1,
            price: 100_000_000,
            transact_time: n as i64,
        }
    }

    /// Small epochs keep as many messages in flight as big ones allow, so that the workers
    /// never run out of closed work while a peer's progress is on its way; big epochs keep a
    /// few, and the books' lag stays counted in messages.
    #[test]
    fn a_replay_keeps_its_messages_in_flight_whatever_its_epoch_size() {
        for epoch_messages in [250, 1_000, 4_000] {
            // Within the cap on epochs, so that the bound is the messages'.
            assert!(REPLAY_IN_FLIGHT_MESSAGES / epoch_messages <= REPLAY_MAX_IN_FLIGHT as u64);
            let limits = replay_limits(epoch_messages, 1);
            let in_flight = limits.in_flight as u64 * epoch_messages;
            assert!(
                in_flight <= REPLAY_IN_FLIGHT_MESSAGES
                    && in_flight + epoch_messages > REPLAY_IN_FLIGHT_MESSAGES,
                "{epoch_messages}-message epochs: {} in flight",
                limits.in_flight
            );
            assert_eq!(
                limits.not_durable as u64,
                REPLAY_NOT_DURABLE_MESSAGES / epoch_messages
            );
        }
        assert_eq!(replay_limits(100_000, 1).in_flight, REPLAY_IN_FLIGHT);
        assert_eq!(replay_limits(1, 1).in_flight, REPLAY_MAX_IN_FLIGHT);
        assert_eq!(replay_limits(1_000_000, 1).not_durable, 2);
        assert_eq!(replay_limits(0, 1), replay_limits(1, 1));
        assert_eq!(replay_limits(250, 0), replay_limits(250, 1));
    }

    /// The books' lag is shared by the workers that feed one writer (`lag_sharers`): the writer
    /// needs as many rows waiting whatever the number of workers that make them, and more
    /// workers must not hold more rows ahead of it. The views' limit stays each worker's own.
    #[test]
    fn a_replay_s_books_lag_is_shared_by_the_workers_that_feed_it() {
        for epoch_messages in [250, 5_000] {
            let one = replay_limits(epoch_messages, 1);
            for workers in [2, 3, 4] {
                let each = replay_limits(epoch_messages, workers);
                let lag = (each.not_durable * workers) as u64 * epoch_messages;
                assert!(
                    lag <= REPLAY_NOT_DURABLE_MESSAGES
                        && lag + workers as u64 * epoch_messages > REPLAY_NOT_DURABLE_MESSAGES,
                    "{workers} workers, {epoch_messages}-message epochs: {} epochs each",
                    each.not_durable
                );
                assert_eq!(each.in_flight, one.in_flight);
            }
        }
    }

    /// A restore's records for the books, `chunks` chunks of one: a test source's background
    /// input.
    struct Backlog {
        chunks: u64,
        /// Every chunk is in and the restore ended.
        done: bool,
    }

    impl Backlog {
        fn of(chunks: u64) -> Backlog {
            Backlog {
                chunks,
                done: false,
            }
        }

        /// Enters a chunk, or ends the restore once none is left: whether it entered one.
        fn take(&mut self, inputs: &mut Inputs) -> bool {
            if self.chunks == 0 {
                if !self.done {
                    inputs.books_restored();
                    self.done = true;
                }
                return false;
            }
            self.chunks -= 1;
            inputs.restore_books(BooksRestore::Event(TradeEvent::Fill(fill(
                1_000_000 + self.chunks,
            ))));
            true
        }
    }

    /// Never idle: a fill on every call, until `calls` calls. Its background input is a
    /// restore's backlog.
    struct Busy {
        calls: u64,
        /// Says stop after this many calls.
        stop_after: u64,
        fed: u64,
        backlog: Backlog,
        background_while_feeding: u64,
    }

    impl Source for Busy {
        fn feed(&mut self, inputs: &mut Inputs, _budget: u64) -> Result<Feed> {
            if self.fed == self.calls {
                return Ok(Feed::Exhausted);
            }
            self.fed += 1;
            inputs.event(TradeEvent::Fill(fill(self.fed)));
            Ok(Feed::Entered(1))
        }

        fn background(&mut self, inputs: &mut Inputs) -> Result<bool> {
            let took = self.backlog.take(inputs);
            if took && self.fed < self.calls {
                self.background_while_feeding += 1;
            }
            Ok(took)
        }

        fn stopped(&self) -> bool {
            self.fed >= self.stop_after
        }
    }

    /// Runs `source` to its end on one worker under a clock policy, with the first epoch at
    /// `start`; `books_stored_before` > 0 builds the books held back by a restore, 0 none.
    fn drive_one_worker<S: Source + Send + Sync + 'static>(
        mut source: S,
        epoch: Duration,
        books_stored_before: u64,
        start: Time,
    ) -> S {
        let metrics = Metrics::new().expect("metrics register");
        timely::execute_directly(move |worker| {
            let (inputs, frontiers) = test_graph(worker, 1, books_stored_before);
            drive_clock_epochs(
                worker,
                inputs,
                &frontiers,
                &mut source,
                epoch,
                start,
                &metrics,
            );
            source
        })
    }

    /// Runs `source` with books held back by a restore; returns how many background chunks
    /// were taken while it still fed, and whether all were taken.
    fn drive_busy(source: Busy) -> (u64, bool) {
        let source = drive_one_worker(source, Duration::from_micros(100), 1, 1);
        (source.background_while_feeding, source.backlog.done)
    }

    fn busy(calls: u64, stop_after: u64, chunks: u64) -> Busy {
        Busy {
            calls,
            stop_after,
            fed: 0,
            backlog: Backlog::of(chunks),
            background_while_feeding: 0,
        }
    }

    /// One fill, then nothing until the views reflect it (or `give_up` passes): how a quiet
    /// market's one trade arrives.
    struct OneFill {
        fed: bool,
        reflected_at: Option<Instant>,
        give_up: Instant,
        closed: u64,
        idle_until: Option<Instant>,
    }

    impl Source for OneFill {
        fn feed(&mut self, inputs: &mut Inputs, _budget: u64) -> Result<Feed> {
            if let Some(until) = self.idle_until {
                return Ok(if Instant::now() < until {
                    Feed::Idle
                } else {
                    Feed::Exhausted
                });
            }
            if !self.fed {
                self.fed = true;
                inputs.event(TradeEvent::Fill(fill(1)));
                return Ok(Feed::Entered(1));
            }
            if self.reflected_at.is_some() || Instant::now() > self.give_up {
                return Ok(Feed::Exhausted);
            }
            Ok(Feed::Idle)
        }

        fn closed(&mut self, _epoch: Time) {
            self.closed += 1;
        }

        fn reflected(&mut self, _epochs: &[Time]) {
            if self.fed && self.reflected_at.is_none() {
                self.reflected_at = Some(Instant::now());
            }
        }
    }

    fn drive_clock(source: OneFill, epoch: Duration) -> OneFill {
        drive_one_worker(source, epoch, 0, 0)
    }

    /// A trade in a quiet market is in the views without waiting for its epoch's bucket to end:
    /// the epoch closes as soon as it holds input and the one before is in the views.
    #[test]
    fn an_epoch_with_input_closes_without_waiting_for_its_bucket() {
        let started = Instant::now();
        let source = drive_clock(
            OneFill {
                fed: false,
                reflected_at: None,
                give_up: started + Duration::from_secs(5),
                closed: 0,
                idle_until: None,
            },
            Duration::from_secs(60),
        );
        let reflected = source
            .reflected_at
            .expect("the fill was never in the views before the source gave up");
        assert!(
            reflected - started < Duration::from_secs(4),
            "the fill waited {:?} for its epoch",
            reflected - started
        );
    }

    /// Without input an epoch still closes once per bucket (the frontier moves on for other
    /// workers), and no more often: an idle worker does not spin through empty epochs.
    #[test]
    fn an_idle_worker_closes_one_empty_epoch_per_bucket() {
        let source = drive_clock(
            OneFill {
                fed: true,
                reflected_at: None,
                give_up: Instant::now(),
                closed: 0,
                idle_until: Some(Instant::now() + Duration::from_millis(400)),
            },
            Duration::from_millis(40),
        );
        // About ten buckets, and the final close.
        assert!(
            (4..=14).contains(&source.closed),
            "{} epochs closed in 400 ms of 40 ms buckets",
            source.closed
        );
    }

    /// Under input that never pauses, background input still goes on between epochs (a
    /// restore's books must not wait for the end of a burst, holding its rows meanwhile), and
    /// all of it is taken before the inputs close.
    #[test]
    fn background_input_goes_on_under_sustained_input() {
        let (taken_while_feeding, done) = drive_busy(busy(2_000, u64::MAX, 50));
        assert!(done, "every chunk taken before the inputs closed");
        assert!(
            taken_while_feeding > 0,
            "no background input while the source kept feeding"
        );
    }

    /// Quiet until `quiet_until`, then exhausted. Its background input is a restore's
    /// backlog. With `stall_at`, its feed blocks the worker for `stall_for` on that call,
    /// `peer_stalled` set meanwhile.
    struct QuietWithBacklog {
        quiet_until: Instant,
        backlog: Backlog,
        taken_while_quiet: u64,
        taken_while_peer_stalled: u64,
        calls: u64,
        stall_at: Option<u64>,
        stall_for: Duration,
        peer_stalled: Arc<AtomicBool>,
    }

    impl Source for QuietWithBacklog {
        fn feed(&mut self, _inputs: &mut Inputs, _budget: u64) -> Result<Feed> {
            self.calls += 1;
            if self.stall_at == Some(self.calls) {
                self.peer_stalled.store(true, Ordering::Release);
                std::thread::sleep(self.stall_for);
                self.peer_stalled.store(false, Ordering::Release);
            }
            Ok(if Instant::now() < self.quiet_until {
                Feed::Idle
            } else {
                Feed::Exhausted
            })
        }

        fn background(&mut self, inputs: &mut Inputs) -> Result<bool> {
            let took = self.backlog.take(inputs);
            if took && Instant::now() < self.quiet_until {
                self.taken_while_quiet += 1;
            }
            if took && self.peer_stalled.load(Ordering::Acquire) {
                self.taken_while_peer_stalled += 1;
            }
            Ok(took)
        }
    }

    /// Two workers in one process, each quiet for `quiet` after its start with a restore's
    /// backlog of `chunks` for the books. The second starts `late` after the first, and with
    /// `stall` blocks for that long on its 50th feed. Returns, for each, the chunks taken
    /// while quiet and while the other was stalled.
    fn two_quiet_workers(
        late: Duration,
        stall: Option<Duration>,
        quiet: Duration,
        chunks: u64,
    ) -> Vec<(u64, u64)> {
        let peer_stalled = Arc::new(AtomicBool::new(false));
        let guards = timely::execute(timely::Config::process(2), move |worker| {
            let metrics = Metrics::new().expect("metrics register");
            let (inputs, frontiers) = test_graph(worker, 2, 1);
            let second = worker.index() == 1;
            if second {
                std::thread::sleep(late);
            }
            let mut source = QuietWithBacklog {
                quiet_until: Instant::now() + quiet,
                backlog: Backlog::of(chunks),
                taken_while_quiet: 0,
                taken_while_peer_stalled: 0,
                calls: 0,
                stall_at: stall.filter(|_| second).map(|_| 50),
                stall_for: stall.unwrap_or_default(),
                peer_stalled: peer_stalled.clone(),
            };
            let epoch = Duration::from_millis(20);
            drive_clock_epochs(worker, inputs, &frontiers, &mut source, epoch, 1, &metrics);
            assert!(
                source.backlog.done,
                "every chunk taken before the inputs closed"
            );
            (source.taken_while_quiet, source.taken_while_peer_stalled)
        })
        .expect("workers start");
        guards
            .join()
            .into_iter()
            .map(|result| result.expect("worker ran"))
            .collect()
    }

    /// Workers number their clock epochs alike, however far apart they started: a restore's
    /// books go on in a quiet market on every worker. Numbered from each worker's own start,
    /// the worker that started first was ahead of its peer for good, so the views never held
    /// its open epoch, and its share of the restore (and with it every books row of the
    /// cluster) waited for the end of the input.
    #[test]
    fn a_worker_that_started_later_holds_back_no_peers_background_input() {
        let taken = two_quiet_workers(
            Duration::from_millis(150),
            None,
            Duration::from_millis(800),
            3,
        );
        assert_eq!(
            taken.iter().map(|(quiet, _)| *quiet).collect::<Vec<_>>(),
            vec![3, 3],
            "chunks each worker took while quiet"
        );
    }

    /// A peer that holds the views back (stalled here; a host whose clock is behind does the
    /// same) does not stop a worker's background input: a chunk at least every
    /// `BACKGROUND_AT_LEAST_EVERY` once the restore is in the views.
    #[test]
    fn background_input_goes_on_while_a_peer_holds_the_views_back() {
        let taken = two_quiet_workers(
            Duration::ZERO,
            Some(Duration::from_millis(700)),
            Duration::from_millis(1_200),
            // More than the first 50 ms take back to back.
            1_000,
        );
        assert!(
            taken[0].1 >= 1,
            "the first worker took no chunk while its peer stalled: {taken:?}"
        );
    }

    /// Worker 0 enters one fill and waits for the views to reflect it (or gives up 2 s after
    /// the entry); worker 1 stays idle until then. Both share `peers` when it is given.
    struct OneFillBesideAnIdlePeer {
        first: bool,
        fed: bool,
        fed_at: Option<Instant>,
        reflected_at: Option<Instant>,
        give_up: Instant,
        finished: Arc<AtomicBool>,
        peers: Option<Arc<PeerCloses>>,
        beacon: Option<PeerClosesBeacon>,
    }

    impl Source for OneFillBesideAnIdlePeer {
        fn closed(&mut self, _epoch: Time) {
            if let (Some(beacon), Some(peers)) = (&mut self.beacon, &self.peers) {
                beacon.send_news(peers);
            }
        }

        fn feed(&mut self, inputs: &mut Inputs, _budget: u64) -> Result<Feed> {
            if !self.first {
                return Ok(if self.finished.load(Ordering::Acquire) {
                    Feed::Exhausted
                } else {
                    Feed::Idle
                });
            }
            if !self.fed {
                self.fed = true;
                self.fed_at = Some(Instant::now());
                self.give_up = Instant::now() + Duration::from_secs(2);
                inputs.event(TradeEvent::Fill(fill(1)));
                return Ok(Feed::Entered(1));
            }
            if self.reflected_at.is_some() || Instant::now() > self.give_up {
                self.finished.store(true, Ordering::Release);
                return Ok(Feed::Exhausted);
            }
            Ok(Feed::Idle)
        }

        fn reflected(&mut self, _epochs: &[Time]) {
            if self.first && self.fed && self.reflected_at.is_none() {
                self.reflected_at = Some(Instant::now());
            }
        }

        fn peer_closes(&self) -> Option<&PeerCloses> {
            self.peers.as_deref()
        }
    }

    /// The graph on `worker` for `workers_per_process`; `books_stored_before` > 0 builds the
    /// books held back by a restore, 0 none.
    fn test_graph(
        worker: &mut timely::worker::Worker,
        workers_per_process: usize,
        books_stored_before: u64,
    ) -> (Inputs, Frontiers) {
        worker.dataflow(|scope| {
            let graph = build_graph(
                scope,
                GraphOptions {
                    store: None,
                    workers_per_process,
                    books: books_stored_before > 0,
                    books_stored_before,
                },
            );
            let frontiers = Frontiers {
                views: graph.probe,
                durable: graph.durable,
            };
            (graph.inputs, frontiers)
        })
    }

    /// Runs `source` to its end under clock epochs of `epoch`, the first at `start`.
    fn drive_clock_epochs(
        worker: &mut timely::worker::Worker,
        inputs: Inputs,
        frontiers: &Frontiers,
        source: &mut impl Source,
        epoch: Duration,
        start: Time,
        metrics: &Metrics,
    ) {
        let policy = EpochPolicy::Clock {
            epoch,
            open_epoch_cap: OPEN_EPOCH_CAP,
        };
        drive_from(
            worker,
            inputs,
            frontiers,
            source,
            policy,
            LIVE_LIMITS,
            metrics,
            start,
        )
        .expect("drives");
    }

    /// On worker 0, one fill and the instants it was entered and reflected; on the others,
    /// nothing until then ([`OneFillBesideAnIdlePeer`]), in one-minute empty epochs.
    fn one_fill_or_idle(
        worker: &mut timely::worker::Worker,
        workers_per_process: usize,
        finished: Arc<AtomicBool>,
        peers: Option<Arc<PeerCloses>>,
        beacon: Option<PeerClosesBeacon>,
    ) -> Option<(Instant, Instant)> {
        let metrics = Metrics::new().expect("metrics register");
        let (inputs, frontiers) = test_graph(worker, workers_per_process, 0);
        let mut source = OneFillBesideAnIdlePeer {
            first: worker.index() == 0,
            fed: false,
            fed_at: None,
            reflected_at: None,
            give_up: Instant::now() + Duration::from_secs(2),
            finished,
            peers,
            beacon,
        };
        let epoch = Duration::from_secs(60);
        drive_clock_epochs(worker, inputs, &frontiers, &mut source, epoch, 0, &metrics);
        source.fed_at.zip(source.reflected_at)
    }

    /// How long worker 0's fill took from its entry to the views beside an idle worker 1 whose
    /// empty epochs last a minute (worker 0 gives up waiting 2 s after the entry).
    fn one_fill_beside_an_idle_peer(share_closes: bool) -> Option<Duration> {
        let finished = Arc::new(AtomicBool::new(false));
        let peers = share_closes.then(|| Arc::new(PeerCloses::default()));
        let guards = timely::execute(timely::Config::process(2), move |worker| {
            one_fill_or_idle(worker, 2, finished.clone(), peers.clone(), None)
        })
        .expect("workers start");
        let reflected = guards.join().into_iter().next()?;
        reflected.ok().flatten().map(|(fed, at)| at - fed)
    }

    /// An idle worker closes its empty epoch as soon as a peer of its process closed one with
    /// input: the peer's epoch need not wait for the idle worker's clock bucket to end.
    #[test]
    fn an_idle_peer_follows_a_worker_that_closed_an_epoch_with_input() {
        assert_followed_at_once(
            one_fill_beside_an_idle_peer(true),
            one_fill_beside_an_idle_peer(false),
        );
    }

    /// `followed`: the fill's time to the views with the idle side told, `alone` without.
    /// Alone, the fill is in the views only once its source gives up after 2 s and the idle
    /// side's input closes.
    fn assert_followed_at_once(followed: Option<Duration>, alone: Option<Duration>) {
        assert!(
            followed.is_some_and(|took| took < Duration::from_millis(1_500)),
            "the fill waited for the idle side's bucket: {followed:?}"
        );
        assert!(
            alone.is_none_or(|took| took >= Duration::from_secs(2)),
            "{alone:?}"
        );
    }

    /// How long process 0's fill took from its entry to the views beside an idle process 1 (one worker
    /// each, two processes of a cluster over TCP in this test's process) whose empty epochs
    /// last a minute, each process with its own `PeerCloses`; `beacon`: each tells the other of
    /// its closes with input.
    fn one_fill_beside_an_idle_process(beacon: bool) -> Option<Duration> {
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
                listener.local_addr().expect("bound").port()
            })
            .collect();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            ports
                .iter()
                .map(|port| format!("127.0.0.1:{port}\n"))
                .collect::<String>(),
        )
        .expect("hosts written");
        let finished = Arc::new(AtomicBool::new(false));
        let processes: Vec<_> = (0..2)
            .map(|process| {
                let args: Vec<String> = ["-w", "1", "-n", "2", "-p", &process.to_string(), "-h"]
                    .iter()
                    .map(|a| a.to_string())
                    .chain([hosts.display().to_string()])
                    .collect();
                let config = crate::timely_args::timely_config(&args).expect("timely flags");
                let finished = finished.clone();
                std::thread::spawn(move || {
                    let peers = Arc::new(PeerCloses::default());
                    let guards = timely::execute(config, move |worker| {
                        let beacon = beacon.then(|| PeerClosesBeacon::build(worker, peers.clone()));
                        one_fill_or_idle(worker, 1, finished.clone(), Some(peers.clone()), beacon)
                    })
                    .expect("the process starts");
                    guards
                        .join()
                        .into_iter()
                        .next()
                        .and_then(Result::ok)
                        .flatten()
                })
            })
            .collect();
        let reflected: Vec<Option<(Instant, Instant)>> = processes
            .into_iter()
            .map(|process| process.join().expect("the process ran"))
            .collect();
        reflected[0].map(|(fed, at)| at - fed)
    }

    /// An idle process closes its empty epoch as soon as it hears that another closed one with
    /// input: the other's epoch need not wait for the idle process's clock bucket to end.
    #[test]
    fn an_idle_process_follows_a_process_that_closed_an_epoch_with_input() {
        assert_followed_at_once(
            one_fill_beside_an_idle_process(true),
            one_fill_beside_an_idle_process(false),
        );
    }

    /// An idle live worker whose input wakes it parks until its open epoch is due (at most
    /// [`IDLE_PARK_AT_MOST`]); with an epoch in flight, input waiting, or replay epochs, a
    /// millisecond.
    #[test]
    fn an_idle_live_worker_parks_until_its_epoch_is_due() {
        let clock = |ms| EpochPolicy::Clock {
            epoch: Duration::from_millis(ms),
            open_epoch_cap: OPEN_EPOCH_CAP,
        };
        let busy = Duration::from_millis(1);
        let mut epochs = Epochs::new(clock(10), LIVE_LIMITS, 0, None);
        assert_eq!(epochs.live_park(false), busy);
        let idle = epochs.live_park(true);
        assert!(idle > busy && idle <= Duration::from_millis(10), "{idle:?}");
        epochs.closed_epochs(5);
        assert_eq!(epochs.live_park(true), busy, "an epoch in flight");
        let minute = Epochs::new(clock(60_000), LIVE_LIMITS, 0, None);
        assert_eq!(minute.live_park(true), IDLE_PARK_AT_MOST);
        let replay = Epochs::new(EpochPolicy::Messages(250), LIVE_LIMITS, 0, None);
        assert_eq!(replay.live_park(true), busy);
    }

    /// A run stopped early still hands the books the whole restore before its inputs close.
    #[test]
    fn a_stopped_run_takes_all_background_input_before_closing() {
        let (_, done) = drive_busy(busy(2_000, 1, 10_000));
        assert!(done, "the restore was cut short by the stop");
    }
}
