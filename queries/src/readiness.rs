//! What `/health/ready` asks besides the views: one check per dependency of the process (the
//! Kafka brokers, the books store, Redis), so that an orchestrator or `eod check` learns which
//! one is not ready rather than only that something is wrong.

use std::sync::Arc;

/// A dependency's check: true while it is reachable. Called on every `/health/ready`, so it
/// must be cheap (a gauge the component keeps current, not a round trip).
pub type Check = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl Readiness {
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Adds the check of dependency `name`.
    pub fn with(
        mut self,
        name: &'static str,
        check: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Readiness {
        self.checks.push((name, Arc::new(check)));
        self
    }

    /// Every dependency with its state, in the order they were added.
    pub fn evaluate(&self) -> Vec<(&'static str, bool)> {
        self.checks
            .iter()
            .map(|(name, check)| (*name, check()))
            .collect()
    }
}
