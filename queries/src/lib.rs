//! `eod-queries`: the HTTP read side. Every response is built from one published snapshot, so
//! all rows in it reflect exactly the same input messages (described by `as_of`).

pub mod access;
pub mod charts;
pub mod history;
pub mod readiness;
pub mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use eod_dataflow::{PositionView, Totals, ViewSnapshot, ViewStore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use access::{AccessError, AccessPolicy};
pub use axum::Router;
pub use readiness::Readiness;

/// Gauges describing the published views, refreshed from the snapshot at each scrape.
pub struct QueryMetrics {
    registry: prometheus::Registry,
    positions: prometheus::IntGauge,
    traders: prometheus::IntGauge,
    unmatched: prometheus::IntGauge,
    as_of_time: prometheus::IntGauge,
    messages_reflected: prometheus::IntGauge,
    snapshots_published: prometheus::IntGauge,
    changes_published: prometheus::IntGauge,
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
            changes_published: gauge(
                "eod_view_changes_published",
                "Row, total and count changes the published snapshots applied, in all",
            )?,
            registry: registry.clone(),
        }))
    }

    /// The names of the view gauges.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        [
            &self.positions,
            &self.traders,
            &self.unmatched,
            &self.as_of_time,
            &self.messages_reflected,
            &self.snapshots_published,
            &self.changes_published,
        ]
        .iter()
        .flat_map(|g| g.desc().into_iter().map(|d| d.fq_name.clone()))
        .collect()
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
        self.changes_published.set(clamp(store.changes_published()));
        encode_text(&self.registry)
    }
}

#[derive(Clone)]
struct AppState {
    store: Arc<ViewStore>,
    metrics: Arc<QueryMetrics>,
    readiness: Arc<Readiness>,
    policy: Arc<AccessPolicy>,
    subscribers: Arc<stream::Subscribers>,
    history: history::History,
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
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
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

/// Ready once the dataflow has published its first complete time and every dependency
/// answers; otherwise 503, naming the dependencies that do not.
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let dependencies = state.readiness.evaluate();
    let not_ready: Vec<&str> = dependencies
        .iter()
        .filter(|(_, up)| !up)
        .map(|(name, _)| *name)
        .collect();
    let dependencies: serde_json::Map<String, Value> = dependencies
        .into_iter()
        .map(|(name, up)| {
            (
                name.to_owned(),
                json!(if up { "ready" } else { "not ready" }),
            )
        })
        .collect();
    if state.store.version() == 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting", "dependencies": dependencies })),
        );
    }
    let as_of = state.store.snapshot().as_of.clone();
    if not_ready.is_empty() {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "as_of": as_of, "dependencies": dependencies })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not ready",
                "not_ready": not_ready,
                "as_of": as_of,
                "dependencies": dependencies,
            })),
        )
    }
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics_response(state.metrics.render(&state.store))
}

fn encode_text(registry: &prometheus::Registry) -> String {
    let mut out = String::new();
    if let Err(error) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!(%error, "encoding metrics");
    }
    out
}

fn metrics_response(body: String) -> impl IntoResponse {
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

/// Pipeline health for people (the dashboard) rather than Prometheus: the same registry,
/// summarised. Only what the process exports appears (a replay has no consumer lag).
pub fn pipeline_health(registry: &prometheus::Registry) -> Value {
    use prometheus::proto::MetricType;
    let mut health = serde_json::Map::new();
    let mut sinks: std::collections::BTreeMap<String, serde_json::Map<String, Value>> =
        Default::default();
    for family in registry.gather() {
        let metrics = family.get_metric();
        let gauge_sum = || -> f64 { metrics.iter().map(|m| m.get_gauge().get_value()).sum() };
        match family.name() {
            "eod_kafka_consumer_lag" => {
                health.insert("consumer_lag".into(), json!(gauge_sum() as i64));
            }
            "eod_dataflow_epochs_in_flight" => {
                health.insert("epochs_in_flight".into(), json!(gauge_sum() as i64));
            }
            "eod_dataflow_epochs_not_durable" => {
                health.insert("epochs_not_durable".into(), json!(gauge_sum() as i64));
            }
            "eod_archive_spool_segments" => {
                health.insert("spool_segments".into(), json!(gauge_sum() as i64));
            }
            "eod_fill_to_view_seconds" if family.get_field_type() == MetricType::HISTOGRAM => {
                if let Some(bound) = metrics.first().and_then(|m| p99_bound(m.get_histogram())) {
                    health.insert("fill_to_view_p99_le_seconds".into(), json!(bound));
                }
            }
            name @ ("eod_sink_store_up" | "eod_sink_breaker_state") => {
                let field = if name == "eod_sink_store_up" {
                    "up"
                } else {
                    "breaker"
                };
                for metric in metrics {
                    let sink = metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == "sink")
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default();
                    sinks
                        .entry(sink)
                        .or_default()
                        .insert(field.into(), json!(metric.get_gauge().get_value() as i64));
                }
            }
            _ => {}
        }
    }
    health.insert("sinks".into(), json!(sinks));
    Value::Object(health)
}

/// The upper bound of the bucket holding the 99th percentile, if anything was observed.
fn p99_bound(histogram: &prometheus::proto::Histogram) -> Option<f64> {
    let count = histogram.get_sample_count();
    if count == 0 {
        return None;
    }
    let rank = count - count / 100;
    histogram
        .get_bucket()
        .iter()
        .find(|b| b.cumulative_count() >= rank)
        .map(|b| b.upper_bound())
}

async fn pipeline(State(state): State<AppState>) -> Json<Value> {
    let snapshot = state.store.snapshot();
    Json(json!({
        "as_of": snapshot.as_of,
        "accounting": snapshot.accounting,
        "health": pipeline_health(&state.metrics.registry),
    }))
}

async fn history_series(State(state): State<AppState>) -> Json<Value> {
    Json(state.history.body())
}

/// The verdicts of the last `eod check` that reported here (`null` before any: not a 404,
/// which a browser would log as an error on every dashboard refresh).
async fn last_check(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "last_check": state.history.last_check() }))
}

/// What `eod check` reports: its run, its overall verdict and each scenario's.
#[derive(Debug, Deserialize, Serialize)]
struct CheckReport {
    run_id: String,
    started_at: String,
    passed: bool,
    verdicts: Vec<CheckVerdict>,
}

#[derive(Debug, Deserialize, Serialize)]
struct CheckVerdict {
    scenario: String,
    passed: bool,
    summary: String,
}

async fn post_check(
    State(state): State<AppState>,
    report: Result<Json<CheckReport>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(report) = report.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let value = serde_json::to_value(&report)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    state.history.set_check(value);
    Ok(StatusCode::NO_CONTENT)
}

/// The dashboard with its charting library inlined (one page, nothing else to fetch).
static DASHBOARD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("dashboard.html")
        .replacen("/*UPLOT_CSS*/", charts::UPLOT_CSS, 1)
        .replacen("/*UPLOT_JS*/", charts::UPLOT_JS, 1)
});

/// The live dashboard: one static page, no build step; it holds no data until it streams.
async fn dashboard() -> Response {
    (
        [
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'",
            ),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        Html(DASHBOARD.as_str()),
    )
        .into_response()
}

/// The query API over `store`, with `/metrics` serving `metrics`' registry, behind `policy`.
pub fn router(store: Arc<ViewStore>, metrics: Arc<QueryMetrics>, policy: AccessPolicy) -> Router {
    router_with_readiness(store, metrics, policy, Readiness::new())
}

/// [`router`], with `/health/ready` also asking `readiness`' dependency checks.
pub fn router_with_readiness(
    store: Arc<ViewStore>,
    metrics: Arc<QueryMetrics>,
    policy: AccessPolicy,
    readiness: Readiness,
) -> Router {
    router_with_history(store, metrics, policy, readiness, history::History::new())
}

/// [`router_with_readiness`], serving `history` (which the caller samples, see
/// [`history::History::run`]) at `/v1/history` and the last check's verdicts at `/v1/check`.
pub fn router_with_history(
    store: Arc<ViewStore>,
    metrics: Arc<QueryMetrics>,
    policy: AccessPolicy,
    readiness: Readiness,
    history: history::History,
) -> Router {
    let policy = Arc::new(policy);
    let state = AppState {
        store,
        metrics,
        readiness: Arc::new(readiness),
        subscribers: Arc::new(stream::Subscribers::new(policy.max_streams)),
        policy: policy.clone(),
        history,
    };
    let router = Router::new()
        .route("/", get(dashboard))
        .route("/v1/stream", get(stream::stream))
        .route("/v1/pipeline", get(pipeline))
        .route("/v1/positions", get(positions))
        .route("/v1/pnl/traders", get(traders))
        .route("/v1/pnl/traders/{trader}", get(trader))
        .route("/v1/pnl/firm", get(firm))
        .route("/v1/unmatched", get(unmatched))
        .route("/v1/accounting", get(accounting))
        .route("/v1/history", get(history_series))
        .route("/v1/check", get(last_check).post(post_check))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .with_state(state);
    guarded(router, &policy)
}

/// Only `/metrics` and the liveness probe: for processes without views (the gateway).
pub fn metrics_router(registry: prometheus::Registry, policy: AccessPolicy) -> Router {
    let policy = Arc::new(policy);
    let router = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { encode_metrics(&registry) }
            }),
        )
        .route("/health/live", get(live))
        .fallback(not_found);
    guarded(router, &policy)
}

fn encode_metrics(registry: &prometheus::Registry) -> impl IntoResponse {
    metrics_response(encode_text(registry))
}

/// The access rules every endpoint shares: token, body and time limits, concurrency.
fn guarded(router: Router, policy: &Arc<AccessPolicy>) -> Router {
    router
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            policy.clone(),
            access::require_token,
        ))
        .layer(axum::middleware::from_fn(access::trace_request))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            policy.request_timeout,
        ))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            policy.max_concurrent_requests.max(1),
        ))
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "http endpoint listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use eod_dataflow::{MarkSource, Money, Touched, ViewRecord};
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
        store.publish_whole(snapshot);
        store
    }

    async fn get(store: Arc<ViewStore>, uri: &str) -> (StatusCode, Value) {
        let metrics = QueryMetrics::register(&prometheus::Registry::new()).unwrap();
        call(router(store, metrics, AccessPolicy::default()), uri).await
    }

    /// GET `uri` from `router`: the status and the JSON body.
    async fn call(router: Router, uri: &str) -> (StatusCode, Value) {
        let response = router
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// `eod check` reports its verdicts; the dashboard reads the last back. With a token the
    /// report needs it like every view.
    #[tokio::test]
    async fn the_last_check_is_kept() {
        let metrics = QueryMetrics::register(&prometheus::Registry::new()).unwrap();
        let policy = AccessPolicy {
            token: Some("a-long-enough-token-for-tests-1234".into()),
            ..AccessPolicy::default()
        };
        let app = router(store(), metrics, policy);
        let report = json!({
            "run_id": "r1", "started_at": "20261204-08:00:00.000", "passed": false,
            "verdicts": [{ "scenario": "burst", "passed": false, "summary": "56% absorbed" }],
        });
        let post = |token: Option<&str>| {
            let mut request = Request::post("/v1/check").header("content-type", "application/json");
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            request.body(Body::from(report.to_string())).unwrap()
        };
        let refused = app.clone().oneshot(post(None)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let stored = app
            .clone()
            .oneshot(post(Some("a-long-enough-token-for-tests-1234")))
            .await
            .unwrap();
        assert_eq!(stored.status(), StatusCode::NO_CONTENT);
        let read = app
            .clone()
            .oneshot(
                Request::get("/v1/check")
                    .header("authorization", "Bearer a-long-enough-token-for-tests-1234")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let bytes = axum::body::to_bytes(read.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["last_check"], report);
    }

    /// `/health/ready` names the dependency that does not answer, and recovers with it.
    #[tokio::test]
    async fn readiness_names_the_dependency_that_is_down() {
        let books_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = books_up.clone();
        let readiness = Readiness::new()
            .with("kafka", || true)
            .with("books", move || {
                flag.load(std::sync::atomic::Ordering::Relaxed)
            });
        let ask = |readiness: Readiness| async move {
            let metrics = QueryMetrics::register(&prometheus::Registry::new()).unwrap();
            let router =
                router_with_readiness(store(), metrics, AccessPolicy::default(), readiness);
            call(router, "/health/ready").await
        };
        let (status, body) = ask(readiness.clone()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["not_ready"], json!(["books"]));
        assert_eq!(body["dependencies"]["kafka"], "ready");
        books_up.store(true, std::sync::atomic::Ordering::Relaxed);
        let (status, body) = ask(readiness).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["dependencies"]["books"], "ready");
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

    const TOKEN: &str = "s3cret-token-0123456789";

    async fn status_with(policy: &AccessPolicy, uri: &str, auth: Option<&str>) -> StatusCode {
        let metrics = QueryMetrics::register(&prometheus::Registry::new()).unwrap();
        let mut request = Request::get(uri);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        router(store(), metrics, policy.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn a_configured_token_guards_every_view() {
        let policy = AccessPolicy {
            token: Some(TOKEN.into()),
            ..AccessPolicy::default()
        };
        let right = format!("Bearer {TOKEN}");
        for uri in ["/v1/positions", "/v1/pnl/firm", "/metrics", "/v1/pipeline"] {
            assert_eq!(
                status_with(&policy, uri, None).await,
                StatusCode::UNAUTHORIZED,
                "{uri}"
            );
            assert_eq!(
                status_with(&policy, uri, Some("Bearer wrong-token-0123456789")).await,
                StatusCode::UNAUTHORIZED
            );
            assert_eq!(
                status_with(&policy, uri, Some(&right)).await,
                StatusCode::OK,
                "{uri}"
            );
        }
        // Probes and the page (no data) stay open; only the stream takes a query token.
        assert_eq!(
            status_with(&policy, "/health/live", None).await,
            StatusCode::OK
        );
        assert_eq!(status_with(&policy, "/", None).await, StatusCode::OK);
        let query = format!("/v1/stream?access_token={TOKEN}");
        assert_eq!(status_with(&policy, &query, None).await, StatusCode::OK);
        let query = format!("/v1/positions?access_token={TOKEN}");
        assert_eq!(
            status_with(&policy, &query, None).await,
            StatusCode::UNAUTHORIZED
        );
        // Without a token configured, nothing asks for one.
        let open = AccessPolicy::default();
        assert_eq!(
            status_with(&open, "/v1/positions", None).await,
            StatusCode::OK
        );
    }

    /// Reads server-sent events from `body` until `wanted` of them have arrived.
    async fn read_events(body: Body, wanted: usize) -> Vec<(String, Value)> {
        use futures::StreamExt;
        let mut stream = body.into_data_stream();
        let mut text = String::new();
        let mut events = Vec::new();
        while events.len() < wanted {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
                .await
                .expect("an event within 5 s")
                .expect("stream open")
                .unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if !name.is_empty() {
                    events.push((name, serde_json::from_str(&data).unwrap()));
                }
            }
        }
        events
    }

    #[tokio::test]
    async fn the_stream_sends_the_view_then_only_changes() {
        let store = store();
        let metrics = QueryMetrics::register(&prometheus::Registry::new()).unwrap();
        let policy = AccessPolicy {
            stream_interval: std::time::Duration::from_millis(5),
            max_streams: 1,
            ..AccessPolicy::default()
        };
        let app = router(store.clone(), metrics, policy);
        let response = app
            .clone()
            .oneshot(Request::get("/v1/stream").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "server-sent events"
        );
        let body = response.into_body();
        // One subscriber allowed: a second is refused while the first is open.
        let second = app
            .clone()
            .oneshot(Request::get("/v1/stream").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        // A new snapshot: AAPL's mark moves, a new MSFT row appears.
        let mut next = (*store.snapshot()).clone();
        let old_aapl = next.positions[&("alice".into(), "AAPL".into())].clone();
        let mut aapl = old_aapl.clone();
        aapl.mark = Some(Money(18_700_000_000));
        let mut msft = aapl.clone();
        msft.symbol = "MSFT".into();
        let changes = vec![
            (ViewRecord::Position(old_aapl), -1),
            (ViewRecord::Position(aapl), 1),
            (ViewRecord::Position(msft), 1),
        ];
        next.apply(&changes);
        next.as_of.messages = 9;
        let events = {
            let reader = tokio::spawn(read_events(body, 4));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            store.publish(next, changes);
            reader.await.unwrap()
        };
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["summary", "positions", "summary", "positions"]);
        assert_eq!(events[0].1["as_of"]["messages"], 5);
        assert_eq!(events[0].1["firm"]["total_pnl"], "100");
        assert_eq!(events[1].1["full"], true);
        assert_eq!(events[1].1["upsert"].as_array().unwrap().len(), 1);
        assert_eq!(events[2].1["as_of"]["messages"], 9);
        let change = &events[3].1;
        assert_eq!(change["full"], false);
        let symbols: Vec<&str> = change["upsert"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["symbol"].as_str().unwrap())
            .collect();
        assert_eq!(symbols, ["AAPL", "MSFT"]);
        assert_eq!(change["upsert"][0]["mark"], "187");
    }

    #[tokio::test]
    async fn a_slow_request_times_out() {
        let policy = Arc::new(AccessPolicy {
            request_timeout: std::time::Duration::from_millis(50),
            ..AccessPolicy::default()
        });
        let slow = Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                "late"
            }),
        );
        let started = std::time::Instant::now();
        let response = guarded(slow, &policy)
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    /// The event names exactly the touched keys: present ones as rows, gone ones as removals,
    /// and nothing the deltas did not touch.
    #[test]
    fn position_events_follow_the_deltas() {
        let store = store();
        let old = (*store.snapshot()).clone();
        let aapl = old.positions.values().next().unwrap().clone();
        let mut ibm = aapl.clone();
        ibm.symbol = "IBM".into();
        let mut new = old.clone();
        let changes = vec![
            (ViewRecord::Position(aapl.clone()), -1),
            (ViewRecord::Position(ibm), 1),
        ];
        new.apply(&changes);
        store.publish(new, changes);
        let update = store.follow(Some(1));
        let touched = update.touched().unwrap();
        let change = stream::positions_event(Some(&touched), &update.snapshot);
        assert_eq!(change["full"], false);
        assert_eq!(change["remove"], json!([["alice", "AAPL"]]));
        assert_eq!(change["upsert"].as_array().unwrap().len(), 1);
        assert_eq!(change["upsert"][0]["symbol"], "IBM");
        let nothing = stream::positions_event(Some(&Touched::default()), &update.snapshot);
        assert_eq!(nothing["upsert"], json!([]));
        assert_eq!(nothing["remove"], json!([]));
        let full = stream::positions_event(None, &update.snapshot);
        assert_eq!(full["full"], true);
        assert_eq!(full["upsert"][0]["symbol"], "IBM");
    }

    #[tokio::test]
    async fn the_dashboard_is_one_self_contained_page() {
        let metrics = QueryMetrics::register(&prometheus::Registry::new()).unwrap();
        let response = router(store(), metrics, AccessPolicy::default())
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("connect-src 'self'"));
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let page = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(page.contains("new EventSource(url)"));
        assert!(!page.contains("<script src"), "no external scripts");
        assert!(
            page.contains("uPlot") && !page.contains("/*UPLOT_JS*/"),
            "charts inlined"
        );
    }

    #[test]
    fn health_summarises_the_registry() {
        let registry = prometheus::Registry::new();
        let up = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("eod_sink_store_up", "u"),
            &["sink"],
        )
        .unwrap();
        registry.register(Box::new(up.clone())).unwrap();
        up.with_label_values(&["books"]).set(1);
        let lag = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("eod_kafka_consumer_lag", "l"),
            &["topic", "partition"],
        )
        .unwrap();
        registry.register(Box::new(lag.clone())).unwrap();
        lag.with_label_values(&["t", "0"]).set(3);
        lag.with_label_values(&["t", "1"]).set(4);
        let hist = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("eod_fill_to_view_seconds", "h")
                .buckets(vec![0.001, 0.01, 0.1]),
        )
        .unwrap();
        registry.register(Box::new(hist.clone())).unwrap();
        for _ in 0..98 {
            hist.observe(0.0005);
        }
        hist.observe(0.05);
        hist.observe(0.05);
        let health = pipeline_health(&registry);
        assert_eq!(health["consumer_lag"], 7);
        assert_eq!(health["sinks"]["books"]["up"], 1);
        assert_eq!(health["fill_to_view_p99_le_seconds"], 0.1);
    }

    #[tokio::test]
    async fn metrics_describe_the_published_view() {
        let registry = prometheus::Registry::new();
        let metrics = QueryMetrics::register(&registry).unwrap();
        let response = router(store(), metrics, AccessPolicy::default())
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
