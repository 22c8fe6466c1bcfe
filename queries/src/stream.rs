//! `GET /v1/stream`: the views as Server-Sent Events, for the dashboard and any other live
//! consumer. The first `positions` event is the whole view; later ones carry only the rows
//! that changed (and the keys that went away), so 10k positions cost a diff per tick, not a
//! resend. `summary` carries firm and trader totals, accounting and pipeline health.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use eod_dataflow::{PositionView, ViewSnapshot};
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

/// The `positions` event: the whole view for a new subscriber (`old` is `None`), else the
/// rows that differ from `old` and the keys `new` no longer has. Both maps are ordered by
/// key, so a tick costs one pass over each.
pub fn positions_event(old: Option<&ViewSnapshot>, new: &ViewSnapshot) -> Value {
    let Some(old) = old else {
        return json!({
            "full": true,
            "upsert": new.positions.values().collect::<Vec<_>>(),
            "remove": [],
        });
    };
    // One merge walk over both ordered maps: a lookup per row would cost a log-n search of
    // string keys for each of the 10k rows (measured: 4x slower, eod-bench-stream).
    let mut upsert: Vec<&PositionView> = Vec::new();
    let mut remove: Vec<[&str; 2]> = Vec::new();
    let mut before = old.positions.iter().peekable();
    for (key, row) in &new.positions {
        while let Some((gone, _)) = before.next_if(|(old_key, _)| *old_key < key) {
            remove.push([gone.0.as_str(), gone.1.as_str()]);
        }
        match before.next_if(|(old_key, _)| *old_key == key) {
            Some((_, old_row)) if old_row == row => {}
            _ => upsert.push(row),
        }
    }
    remove.extend(before.map(|((trader, symbol), _)| [trader.as_str(), symbol.as_str()]));
    json!({ "full": false, "upsert": upsert, "remove": remove })
}

struct StreamState {
    app: AppState,
    _permit: OwnedSemaphorePermit,
    sent: Option<Arc<ViewSnapshot>>,
    version: u64,
    pending: VecDeque<Event>,
}

impl StreamState {
    fn events_for(&mut self, snapshot: Arc<ViewSnapshot>) {
        let positions = positions_event(self.sent.as_deref(), &snapshot);
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
        self.sent = Some(snapshot);
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
        sent: None,
        version: u64::MAX,
        pending: VecDeque::new(),
    };
    let events = futures::stream::unfold(state, move |mut state| async move {
        loop {
            if let Some(event) = state.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(event), state));
            }
            let version = state.app.store.version();
            if version != state.version {
                state.version = version;
                let snapshot = state.app.store.snapshot();
                state.events_for(snapshot);
                continue;
            }
            tokio::time::sleep(interval).await;
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
