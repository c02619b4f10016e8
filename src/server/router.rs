//! The HTTP surface: routes, per-request span and metrics, auth on `/v1`, body limit,
//! optional CORS, OpenAI-shaped 404 fallback.

use super::auth::require_key;
use super::handlers::{chat, completions, info, messages, responses};
use super::state::AppState;
use crate::Error;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tracing::Instrument;

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/chat/completions", post(chat::chat_completions))
        .route("/completions", post(completions::completions))
        .route("/messages", post(messages::messages))
        .route("/messages/count_tokens", post(messages::count_tokens))
        .route("/responses", post(responses::responses))
        .route("/models", get(info::list_models))
        .route("/models/{*id}", get(info::get_model))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    let mut app = Router::new()
        .nest("/v1", v1)
        .route("/health", get(info::health))
        .route("/metrics", get(info::metrics))
        .fallback(info::not_found)
        .layer(middleware::from_fn(json_method_not_allowed))
        .layer(DefaultBodyLimit::max(state.config().max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe));
    if let Some(cors) = cors_layer(&state.config().cors_origins) {
        app = app.layer(cors);
    }
    app.with_state(state)
}

/// CORS is off unless origins are named; `*` allows any origin.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| match HeaderValue::from_str(o) {
                Ok(v) => Some(v),
                Err(_) => {
                    tracing::warn!(origin = %o, "ignoring a CORS origin that is not a valid header value");
                    None
                }
            })
            .collect();
        AllowOrigin::list(list)
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(AllowHeaders::mirror_request()),
    )
}

/// axum answers a known path with the wrong method by an empty 405; give it the OpenAI
/// error body too, keeping axum's `Allow` header.
async fn json_method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let allowed = allow
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("another method")
        .to_owned();
    let mut json = Error::MethodNotAllowed {
        method,
        path,
        allowed,
    }
    .into_response();
    if let Some(v) = allow {
        json.headers_mut().insert(header::ALLOW, v);
    }
    json
}

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// One span per request (id, method, route), a log line with status and latency, and the
/// request counter by route and status: exactly once per request, however it ends. A client
/// that leaves before its response is ready (the handler is dropped) is counted and logged
/// with status 499, nginx's "client closed request".
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let id = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("request", id, method = %req.method(), route = %route, model = %state.config().model_id);
    let mut outcome = Outcome {
        state: &state,
        route,
        span: span.clone(),
        start: Instant::now(),
        status: None,
    };
    let response = next.run(req).instrument(span).await;
    outcome.status = Some(response.status().as_u16());
    response
}

/// Records a request when dropped: with its status, or as 499 when the response never came.
struct Outcome<'a> {
    state: &'a AppState,
    route: String,
    span: tracing::Span,
    start: Instant,
    status: Option<u16>,
}

/// Status recorded for a request whose client left before the response was ready.
pub const CLIENT_CLOSED: u16 = 499;

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        let ms = self.start.elapsed().as_millis() as u64;
        let status = self.status.unwrap_or(CLIENT_CLOSED);
        self.state.metrics().record_request(&self.route, status);
        self.span.in_scope(|| match self.status {
            Some(status) => tracing::info!(status, ms, "handled"),
            None => tracing::info!(
                status,
                ms,
                "client disconnected before the response was ready"
            ),
        });
    }
}
