//! Who may reach the endpoint and how much of it: bearer-token auth, request timeouts and a
//! cap on concurrent requests and live streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::ApiError;

/// The endpoint's access rules; `Default` is what `eod` uses unless told otherwise.
#[derive(Clone, Debug)]
pub struct AccessPolicy {
    /// Bearer token every request must carry (`Authorization: Bearer <token>`); health probes
    /// and the dashboard page itself (which holds no data) are exempt. `None`: no auth, which
    /// is only allowed on a loopback address.
    pub token: Option<Arc<str>>,
    /// Longest time to produce a response; a live stream's body is not bounded by it.
    pub request_timeout: Duration,
    /// Requests served at once; more wait their turn.
    pub max_concurrent_requests: usize,
    /// Live `/v1/stream` subscribers at once; more are refused with 503.
    pub max_streams: usize,
    /// How often a live stream looks for a newer snapshot.
    pub stream_interval: Duration,
}

impl Default for AccessPolicy {
    fn default() -> AccessPolicy {
        AccessPolicy {
            token: None,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 256,
            max_streams: 64,
            stream_interval: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    #[error(
        "refusing to serve the views on {0} without an auth token: set --auth-token \
         (EOD_AUTH_TOKEN) or --auth-token-file, or bind a loopback address such as 127.0.0.1"
    )]
    OpenToTheNetwork(SocketAddr),
    #[error("the auth token must be at least 16 characters (it is {0})")]
    WeakToken(usize),
}

impl AccessPolicy {
    /// A non-loopback address needs a token: the views are the firm's positions.
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), AccessError> {
        if let Some(token) = &self.token {
            if token.len() < 16 {
                return Err(AccessError::WeakToken(token.len()));
            }
        }
        if self.token.is_none() && !addr.ip().is_loopback() {
            return Err(AccessError::OpenToTheNetwork(addr));
        }
        Ok(())
    }

    fn admits(&self, request: &Request) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let path = request.uri().path();
        if path == "/" || path.starts_with("/health/") {
            return true;
        }
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // EventSource cannot set headers, so the live stream also takes the token as a query
        // parameter; the endpoint never logs request URIs.
        let from_query = || {
            (path == "/v1/stream")
                .then(|| request.uri().query())
                .flatten()
                .and_then(|q| {
                    q.split('&')
                        .find_map(|pair| pair.strip_prefix("access_token="))
                })
        };
        bearer
            .or_else(from_query)
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
    }
}

/// Middleware: a span per request, named by method and path only (a query string may hold
/// the stream's token).
pub async fn trace_request(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "http_request",
        method = %request.method(),
        path = %request.uri().path(),
        status = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

/// Middleware: 401 without the right token.
pub async fn require_token(
    State(policy): State<Arc<AccessPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    if policy.admits(&request) {
        return next.run(request).await;
    }
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_binds_need_a_strong_token() {
        let open = AccessPolicy::default();
        assert!(open.check_bind("127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(open.check_bind("[::1]:8080".parse().unwrap()).is_ok());
        assert_eq!(
            open.check_bind("0.0.0.0:8080".parse().unwrap()),
            Err(AccessError::OpenToTheNetwork(
                "0.0.0.0:8080".parse().unwrap()
            ))
        );
        let weak = AccessPolicy {
            token: Some("short".into()),
            ..AccessPolicy::default()
        };
        assert_eq!(
            weak.check_bind("127.0.0.1:1".parse().unwrap()),
            Err(AccessError::WeakToken(5))
        );
        let strong = AccessPolicy {
            token: Some("0123456789abcdef".into()),
            ..AccessPolicy::default()
        };
        assert!(strong.check_bind("0.0.0.0:8080".parse().unwrap()).is_ok());
    }
}
