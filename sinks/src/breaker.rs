//! A circuit breaker: after failures, stop trying for a cool-down (doubling up to a cap), then
//! let one attempt through. Small enough to own: the crates we looked at are async-first or
//! wrap calls in futures, while our caller is a plain thread with its own retry loop.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the instant.
    Open { until: Instant },
    /// One trial call goes through; its outcome closes or re-opens the breaker.
    HalfOpen,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    state: BreakerState,
    failures: u32,
    /// Consecutive failures that open a closed breaker.
    threshold: u32,
    base_cooldown: Duration,
    max_cooldown: Duration,
    cooldown: Duration,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, base_cooldown: Duration, max_cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker {
            state: BreakerState::Closed,
            failures: 0,
            threshold: threshold.max(1),
            base_cooldown,
            max_cooldown,
            cooldown: base_cooldown,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// For a gauge: 0 closed, 1 open, 2 half-open.
    pub fn state_code(&self) -> i64 {
        match self.state {
            BreakerState::Closed => 0,
            BreakerState::Open { .. } => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    /// May a call go through now? An open breaker whose cool-down is over turns half-open.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed | BreakerState::HalfOpen => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } => false,
        }
    }

    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed;
        self.failures = 0;
        self.cooldown = self.base_cooldown;
    }

    pub fn on_failure(&mut self, now: Instant) {
        match self.state {
            BreakerState::HalfOpen => {
                self.cooldown = (self.cooldown * 2).min(self.max_cooldown);
                self.state = BreakerState::Open {
                    until: now + self.cooldown,
                };
            }
            BreakerState::Closed => {
                self.failures += 1;
                if self.failures >= self.threshold {
                    self.state = BreakerState::Open {
                        until: now + self.cooldown,
                    };
                }
            }
            BreakerState::Open { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn opens_after_threshold_and_refuses_until_the_cooldown_ends() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(2, SECOND, 8 * SECOND);
        breaker.on_failure(t0);
        assert!(breaker.allow(t0), "one failure is under the threshold");
        breaker.on_failure(t0);
        assert_eq!(breaker.state(), BreakerState::Open { until: t0 + SECOND });
        assert!(!breaker.allow(t0 + SECOND / 2));
        assert!(breaker.allow(t0 + SECOND), "cool-down over: one trial");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn failed_trials_double_the_cooldown_up_to_the_cap_and_success_resets() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(1, SECOND, 3 * SECOND);
        breaker.on_failure(t0);
        let mut now = t0;
        for expected in [2, 3, 3] {
            let BreakerState::Open { until } = breaker.state() else {
                panic!("open")
            };
            now = until;
            assert!(breaker.allow(now));
            breaker.on_failure(now);
            assert_eq!(
                breaker.state(),
                BreakerState::Open {
                    until: now + expected * SECOND
                }
            );
        }
        let BreakerState::Open { until } = breaker.state() else {
            panic!("open")
        };
        assert!(breaker.allow(until));
        breaker.on_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.state_code(), 0);
        breaker.on_failure(now);
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                until: now + SECOND
            },
            "success resets the cool-down"
        );
    }
}
