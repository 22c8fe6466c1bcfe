//! The dashboard's pictures over the day: firm and trader P&L and the fill-to-view P99,
//! sampled once a second from the published snapshot and the metrics, and the verdicts of the
//! last `eod check`.
//!
//! Each series keeps at most [`MAX_POINTS`] points: when it is full every other point goes and
//! it samples half as often from then on, so a whole day fits in a bounded space (a few
//! hundred kB per trader at most) at a resolution that coarsens with its length.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eod_dataflow::{Money, ViewStore};
use serde::Serialize;
use serde_json::{json, Value};

/// Points a series keeps before it halves its resolution.
pub const MAX_POINTS: usize = 2_048;

/// Traders followed; beyond this many, only the firm (a desk view, not a risk system).
pub const MAX_TRADERS: usize = 200;

/// One series: `(unix ms, value)` points, sampled every `stride` ticks.
#[derive(Clone, Debug, Default, Serialize)]
struct Series<T> {
    points: Vec<(i64, T)>,
    #[serde(skip)]
    stride: u64,
}

impl<T> Series<T> {
    fn push(&mut self, tick: u64, at_ms: i64, value: T) {
        let stride = self.stride.max(1);
        if !tick.is_multiple_of(stride) {
            return;
        }
        if self.points.len() >= MAX_POINTS {
            let mut index = 0;
            self.points.retain(|_| {
                index += 1;
                index % 2 == 1
            });
            self.stride = stride * 2;
        }
        self.points.push((at_ms, value));
    }
}

#[derive(Default)]
struct Recorded {
    tick: u64,
    firm: Series<Money>,
    traders: BTreeMap<String, Series<Money>>,
    fill_to_view_p99_ms: Series<f64>,
    last_check: Option<Value>,
}

/// What the dashboard draws over the day; shared by the sampler and the endpoints.
#[derive(Clone, Default)]
pub struct History(Arc<Mutex<Recorded>>);

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Takes one sample of `store`'s current snapshot and of the fill-to-view P99 in `health`
    /// (as [`crate::pipeline_health`] gives it).
    pub fn sample(&self, store: &ViewStore, health: &Value, at_ms: i64) {
        let snapshot = store.snapshot();
        let Ok(mut recorded) = self.0.lock() else {
            return;
        };
        let tick = recorded.tick;
        recorded.tick += 1;
        if let Some(pnl) = snapshot.firm.as_ref().and_then(|firm| firm.total_pnl) {
            recorded.firm.push(tick, at_ms, pnl);
        }
        for (trader, totals) in &snapshot.traders {
            let Some(pnl) = totals.total_pnl else {
                continue;
            };
            let followed = recorded.traders.len();
            match recorded.traders.get_mut(trader.as_str()) {
                Some(series) => series.push(tick, at_ms, pnl),
                None if followed < MAX_TRADERS => {
                    // A trader seen later samples as coarsely as the firm does by then.
                    let mut series = Series {
                        stride: recorded.firm.stride,
                        ..Series::default()
                    };
                    series.push(tick, at_ms, pnl);
                    recorded.traders.insert(trader.to_string(), series);
                }
                None => {}
            }
        }
        if let Some(seconds) = health["fill_to_view_p99_le_seconds"].as_f64() {
            recorded
                .fill_to_view_p99_ms
                .push(tick, at_ms, seconds * 1e3);
        }
    }

    /// Samples every `interval` until the task is dropped (spawn it on the server's runtime).
    pub async fn run(
        self,
        store: Arc<ViewStore>,
        registry: prometheus::Registry,
        interval: Duration,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticker.tick().await;
            let health = crate::pipeline_health(&registry);
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default();
            self.sample(&store, &health, now_ms);
        }
    }

    /// The series as `GET /v1/history` serves them; money as decimal strings.
    pub fn body(&self) -> Value {
        let Ok(recorded) = self.0.lock() else {
            return json!({});
        };
        json!({
            "firm_total_pnl": recorded.firm.points,
            "trader_total_pnl": recorded
                .traders
                .iter()
                .map(|(trader, series)| (trader.clone(), &series.points))
                .collect::<BTreeMap<_, _>>(),
            "fill_to_view_p99_ms": recorded.fill_to_view_p99_ms.points,
        })
    }

    /// Keeps the verdicts `eod check` posted last.
    pub fn set_check(&self, verdicts: Value) {
        if let Ok(mut recorded) = self.0.lock() {
            recorded.last_check = Some(verdicts);
        }
    }

    pub fn last_check(&self) -> Option<Value> {
        self.0.lock().ok().and_then(|r| r.last_check.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_series_halves_its_resolution_and_keeps_the_newest_point() {
        let mut series = Series::<i64>::default();
        for tick in 0..(MAX_POINTS as u64 * 3) {
            series.push(tick, tick as i64, tick as i64);
        }
        assert!(series.points.len() <= MAX_POINTS);
        assert!(series.points.len() > MAX_POINTS / 2);
        assert_eq!(series.points[0], (0, 0));
        let last = series.points.last().unwrap().0;
        assert!(
            last >= MAX_POINTS as i64 * 3 - series.stride as i64,
            "{last}"
        );
        assert!(series.points.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn samples_follow_the_firm_and_each_trader() {
        let store = ViewStore::new();
        let history = History::new();
        history.sample(&store, &json!({}), 1);
        assert_eq!(history.body()["firm_total_pnl"], json!([]), "nothing yet");
        let totals = |pnl: i128| eod_dataflow::Totals {
            total_pnl: Some(Money(pnl)),
            ..Default::default()
        };
        let mut snapshot = eod_dataflow::ViewSnapshot::default();
        snapshot.traders.insert("alice".into(), totals(150_000_000));
        snapshot.traders.insert("bob".into(), totals(-50_000_000));
        snapshot.firm = Some(totals(100_000_000));
        store.publish_whole(snapshot);
        history.sample(&store, &json!({ "fill_to_view_p99_le_seconds": 0.025 }), 2);
        let body = history.body();
        assert_eq!(
            body["firm_total_pnl"],
            json!([[2, "1"]]),
            "money as a decimal string"
        );
        assert_eq!(body["trader_total_pnl"]["alice"], json!([[2, "1.5"]]));
        assert_eq!(body["trader_total_pnl"]["bob"], json!([[2, "-0.5"]]));
        assert_eq!(body["fill_to_view_p99_ms"], json!([[2, 25.0]]));
    }
}
