//! `eod-queries`: the HTTP read side. Every response is built from one published snapshot, so
//! all rows in it reflect exactly the same input messages (described by `as_of`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use eod_dataflow::{PositionView, Totals, ViewSnapshot, ViewStore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Gauges describing the published views, refreshed from the snapshot at each scrape.
pub struct QueryMetrics {
    registry: prometheus::Registry,
    positions: prometheus::IntGauge,
    traders: prometheus::IntGauge,
    unmatched: prometheus::IntGauge,
    as_of_time: prometheus::IntGauge,
    messages_reflected: prometheus::IntGauge,
    snapshots_published: prometheus::IntGauge,
}

impl QueryMetrics {
    /// Registers the view gauges in `registry`, which `/metrics` then serves whole.
    pub fn register(
        registry: &prometheus::Registry,
    ) -> Result<Arc<QueryMetrics>, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<prometheus::IntGauge, prometheus::Error> {
            let g = prometheus::IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(Arc::new(QueryMetrics {
            positions: gauge("eod_view_positions", "Positions in the published view")?,
            traders: gauge("eod_view_traders", "Traders in the published view")?,
            unmatched: gauge(
                "eod_view_unmatched",
                "Busts and corrections waiting for their target",
            )?,
            as_of_time: gauge(
                "eod_view_as_of_time",
                "Dataflow time the published view reflects",
            )?,
            messages_reflected: gauge(
                "eod_view_messages_reflected",
                "Input messages the published view reflects",
            )?,
            snapshots_published: gauge(
                "eod_view_snapshots_published",
                "Consistent snapshots published so far",
            )?,
            registry: registry.clone(),
        }))
    }

    fn render(&self, store: &ViewStore) -> String {
        let snapshot = store.snapshot();
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.positions.set(clamp(snapshot.positions.len() as u64));
        self.traders.set(clamp(snapshot.traders.len() as u64));
        self.unmatched.set(clamp(snapshot.unmatched.len() as u64));
        self.as_of_time.set(clamp(snapshot.as_of.time));
        self.messages_reflected.set(clamp(snapshot.as_of.messages));
        self.snapshots_published.set(clamp(store.version()));
        let mut out = String::new();
        if let Err(error) =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)
        {
            tracing::warn!(%error, "encoding metrics");
        }
        out
    }
}

#[derive(Clone)]
struct AppState {
    store: Arc<ViewStore>,
    metrics: Arc<QueryMetrics>,
}

impl FromRef<AppState> for Arc<ViewStore> {
    fn from_ref(state: &AppState) -> Arc<ViewStore> {
        state.store.clone()
    }
}

/// A JSON error with the HTTP status it travels with.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "status": self.status.as_u16(), "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionFilter {
    pub trader: Option<String>,
    pub symbol: Option<String>,
}

impl PositionFilter {
    fn validate(self) -> Result<PositionFilter, ApiError> {
        for (name, value) in [("trader", &self.trader), ("symbol", &self.symbol)] {
            if value.as_deref() == Some("") {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("query parameter `{name}` must not be empty"),
                ));
            }
        }
        Ok(self)
    }

    fn matches(&self, row: &PositionView) -> bool {
        self.trader.as_ref().is_none_or(|t| *t == row.trader)
            && self.symbol.as_ref().is_none_or(|s| *s == row.symbol)
    }
}

#[derive(Serialize)]
struct TraderRow<'a> {
    trader: &'a str,
    #[serde(flatten)]
    totals: &'a Totals,
}

/// `GET /v1/positions` body; also what `eod replay --output` writes.
pub fn positions_body(snapshot: &ViewSnapshot, filter: &PositionFilter) -> Value {
    let positions: Vec<&PositionView> = snapshot
        .positions
        .values()
        .filter(|row| filter.matches(row))
        .collect();
    json!({ "as_of": snapshot.as_of, "positions": positions })
}

pub fn traders_body(snapshot: &ViewSnapshot) -> Value {
    let traders: Vec<TraderRow> = snapshot
        .traders
        .iter()
        .map(|(trader, totals)| TraderRow { trader, totals })
        .collect();
    json!({ "as_of": snapshot.as_of, "traders": traders })
}

pub fn trader_body(snapshot: &ViewSnapshot, trader: &str) -> Option<Value> {
    let totals = snapshot.traders.get(trader)?;
    let positions: Vec<&PositionView> = snapshot
        .positions
        .values()
        .filter(|row| row.trader == trader)
        .collect();
    Some(json!({
        "as_of": snapshot.as_of,
        "trader": TraderRow { trader, totals },
        "positions": positions,
    }))
}

pub fn firm_body(snapshot: &ViewSnapshot) -> Value {
    let firm = snapshot.firm.clone().unwrap_or_default();
    json!({ "as_of": snapshot.as_of, "firm": firm })
}

async fn positions(
    State(store): State<Arc<ViewStore>>,
    filter: Result<Query<PositionFilter>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(filter) =
        filter.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let filter = filter.validate()?;
    Ok(Json(positions_body(&store.snapshot(), &filter)))
}

async fn traders(State(store): State<Arc<ViewStore>>) -> Json<Value> {
    Json(traders_body(&store.snapshot()))
}

async fn trader(
    State(store): State<Arc<ViewStore>>,
    Path(trader): Path<String>,
) -> Result<Json<Value>, ApiError> {
    trader_body(&store.snapshot(), &trader)
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("unknown trader `{trader}`")))
}

async fn firm(State(store): State<Arc<ViewStore>>) -> Json<Value> {
    Json(firm_body(&store.snapshot()))
}

async fn unmatched(State(store): State<Arc<ViewStore>>) -> Json<Value> {
    let snapshot = store.snapshot();
    Json(json!({ "as_of": snapshot.as_of, "unmatched": snapshot.unmatched }))
}

async fn accounting(State(store): State<Arc<ViewStore>>) -> Json<Value> {
    let snapshot = store.snapshot();
    Json(json!({ "as_of": snapshot.as_of, "accounting": snapshot.accounting }))
}

async fn live() -> Json<Value> {
    Json(json!({ "status": "live" }))
}

/// Ready once the dataflow has published its first complete time.
async fn ready(State(store): State<Arc<ViewStore>>) -> (StatusCode, Json<Value>) {
    if store.version() > 0 {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "as_of": store.snapshot().as_of })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting" })),
        )
    }
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render(&state.store);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

/// The query API over `store`, with `/metrics` serving `metrics`' registry.
pub fn router(store: Arc<ViewStore>, metrics: Arc<QueryMetrics>) -> Router {
    Router::new()
        .route("/v1/positions", get(positions))
        .route("/v1/pnl/traders", get(traders))
        .route("/v1/pnl/traders/{trader}", get(trader))
        .route("/v1/pnl/firm", get(firm))
        .route("/v1/unmatched", get(unmatched))
        .route("/v1/accounting", get(accounting))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .with_state(AppState { store, metrics })
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<ViewStore>,
    metrics: Arc<QueryMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "query endpoint listening");
    axum::serve(listener, router(store, metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use eod_dataflow::{MarkSource, Money};
    use tower::ServiceExt;

    fn store() -> Arc<ViewStore> {
        let store = ViewStore::new();
        let mut snapshot = ViewSnapshot::default();
        let row = PositionView {
            trader: "alice".into(),
            symbol: "AAPL".into(),
            net_qty: 100,
            trades: 2,
            avg_cost: Some(Money(18_500_000_000)),
            mark: Some(Money(18_600_000_000)),
            mark_source: Some(MarkSource::OfficialClose),
            realized_pnl: Some(Money(0)),
            unrealized_pnl: Some(Money(10_000_000_000)),
            total_pnl: Some(Money(10_000_000_000)),
        };
        snapshot
            .positions
            .insert(("alice".into(), "AAPL".into()), row.clone());
        snapshot.traders.insert("alice".into(), Totals::sum([&row]));
        snapshot.firm = Some(Totals::sum([&row]));
        snapshot.as_of.time = 3;
        snapshot.as_of.messages = 5;
        store.publish(snapshot);
        store
    }

    async fn get(store: Arc<ViewStore>, uri: &str) -> (StatusCode, Value) {
        let metrics = QueryMetrics::register(&prometheus::Registry::new()).unwrap();
        let response = router(store, metrics)
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn positions_carry_decimals_as_strings() {
        let (status, body) = get(store(), "/v1/positions?trader=alice").await;
        assert_eq!(status, StatusCode::OK);
        let row = &body["positions"][0];
        assert_eq!(row["mark"], "186");
        assert_eq!(row["avg_cost"], "185");
        assert_eq!(row["total_pnl"], "100");
        assert_eq!(row["mark_source"], "official_close");
        assert_eq!(row["net_qty"], 100);
        assert_eq!(body["as_of"]["messages"], 5);
        let (_, none) = get(store(), "/v1/positions?symbol=MSFT").await;
        assert_eq!(none["positions"].as_array().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn unknown_trader_is_404_and_bad_params_are_400() {
        let (status, body) = get(store(), "/v1/pnl/traders/nobody").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nobody"));
        let (status, body) = get(store(), "/v1/positions?colour=red").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"]["message"].is_string());
        let (status, _) = get(store(), "/v1/positions?trader=").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn trader_firm_and_health() {
        let (status, body) = get(store(), "/v1/pnl/traders/alice").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["trader"]["trader"], "alice");
        assert_eq!(body["trader"]["total_pnl"], "100");
        assert_eq!(body["positions"].as_array().unwrap().len(), 1);
        let (_, firm) = get(store(), "/v1/pnl/firm").await;
        assert_eq!(firm["firm"]["positions"], 1);
        let (_, traders) = get(store(), "/v1/pnl/traders").await;
        assert_eq!(traders["traders"][0]["trader"], "alice");
        assert_eq!(get(store(), "/health/ready").await.0, StatusCode::OK);
        assert_eq!(
            get(ViewStore::new(), "/health/ready").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(store(), "/health/live").await.0, StatusCode::OK);
        assert_eq!(get(store(), "/nope").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn metrics_describe_the_published_view() {
        let registry = prometheus::Registry::new();
        let metrics = QueryMetrics::register(&registry).unwrap();
        let response = router(store(), metrics)
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.contains("eod_view_positions 1"), "{text}");
        assert!(text.contains("eod_view_messages_reflected 5"), "{text}");
    }
}
