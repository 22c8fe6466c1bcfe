//! `GET /v1/stream`: the views as Server-Sent Events, for the dashboard and any other live
//! consumer. The first `positions` event is the whole view; later ones carry only the rows
//! the dataflow's deltas touched (and the keys that went away), so 10k positions cost the
//! changes per tick, not a resend or a comparison of snapshots. `summary` carries firm and trader totals, accounting and pipeline health.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use eod_dataflow::{PositionView, Touched, ViewSnapshot};
use serde_json::{json, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{pipeline_health, traders_body, ApiError, AppState};

/// Live subscribers, bounded by the access policy.
pub struct Subscribers {
    permits: Arc<Semaphore>,
}

impl Subscribers {
    pub fn new(max: usize) -> Subscribers {
        Subscribers {
            permits: Arc::new(Semaphore::new(max)),
        }
    }
}

/// The `positions` event: the whole view for a new subscriber (`touched` is `None`), else
/// the rows the deltas since the last event touched, read from `new`, and the touched keys
/// `new` no longer has. The dataflow's deltas name the keys, so a tick costs its changes,
/// not a walk over the whole view.
pub fn positions_event(touched: Option<&Touched>, new: &ViewSnapshot) -> Value {
    let Some(touched) = touched else {
        return json!({
            "full": true,
            "upsert": new.positions.values().collect::<Vec<_>>(),
            "remove": [],
        });
    };
    let mut upsert: Vec<&PositionView> = Vec::new();
    let mut remove: Vec<[&str; 2]> = Vec::new();
    for key in &touched.positions {
        match new.positions.get(key) {
            Some(row) => upsert.push(row),
            None => remove.push([key.0.as_str(), key.1.as_str()]),
        }
    }
    json!({ "full": false, "upsert": upsert, "remove": remove })
}

struct StreamState {
    app: AppState,
    _permit: OwnedSemaphorePermit,
    /// The store version the last events reflect; `None` before the first.
    version: Option<u64>,
    pending: VecDeque<Event>,
}

impl StreamState {
    /// Queues the events for what was published since the last ones: deltas when the store
    /// still holds them all, else the whole view again.
    fn catch_up(&mut self) {
        let update = self.app.store.follow(self.version);
        let touched = update.touched();
        let snapshot = update.snapshot;
        let positions = positions_event(touched.as_ref(), &snapshot);
        let mut summary = traders_body(&snapshot);
        summary["firm"] = json!(snapshot.firm.clone().unwrap_or_default());
        summary["accounting"] = json!(snapshot.accounting);
        summary["unmatched"] = json!(snapshot.unmatched.len());
        summary["health"] = pipeline_health(&self.app.metrics.registry);
        self.pending
            .push_back(Event::default().event("summary").data(summary.to_string()));
        self.pending.push_back(
            Event::default()
                .event("positions")
                .data(positions.to_string()),
        );
        self.version = Some(update.version);
    }
}

pub(crate) async fn stream(State(app): State<AppState>) -> Response {
    let Ok(permit) = app.subscribers.permits.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams; try again later",
        )
        .into_response();
    };
    let interval = app.policy.stream_interval;
    let state = StreamState {
        app,
        _permit: permit,
        version: None,
        pending: VecDeque::new(),
    };
    let events = futures::stream::unfold(state, move |mut state| async move {
        loop {
            if let Some(event) = state.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(event), state));
            }
            if state.version != Some(state.app.store.version()) {
                state.catch_up();
                continue;
            }
            tokio::time::sleep(interval).await;
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
