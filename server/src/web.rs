//! The node's HTTP service: the dashboard (server-rendered Leptos pages and
//! their server functions under `/rpc`), the REST API under `/api/v1`, and
//! the static files of the site. Every state-changing request passes the
//! cross-origin check of [`crate::csrf`] first.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, handle_server_fns_with_context, LeptosRoutes};
use portico_app::error::ApiError;
use portico_app::server_fns::ssr::{request_is_secure, SecureCookies};
use portico_app::service::{RequestOrigin, SharedStorage};
use portico_app::{shell, App};
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::api::ApiFailure;
use crate::client_address::{client_address, via_trusted_proxy};
use crate::csrf;
use crate::state::AppState;

/// Context every server function and page render gets.
fn context(state: &AppState) -> impl Fn() + Clone + Send + Sync + 'static {
    let service = state.service.clone();
    let storage: SharedStorage = state.storage.clone();
    let secure = state.secure_cookies;
    move || {
        provide_context(service.clone());
        provide_context(storage.clone());
        provide_context(SecureCookies(secure));
    }
}

async fn server_fn_handler(State(state): State<AppState>, req: Request<Body>) -> impl IntoResponse {
    handle_server_fns_with_context(context(&state), req).await
}

/// The largest request body the node reads: every form and API call is a
/// small JSON document, so a bigger body is a mistake or an attack.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

fn too_large() -> Response {
    let message = format!("The request body is larger than {} KiB, the most this node reads.", MAX_BODY_BYTES / 1024);
    ApiFailure(ApiError::new(413, message)).into_response()
}

/// Refuses a body announced as too large at once, and cuts off one that
/// grows too large while it is read (the reader then fails with 413).
async fn limit_body(req: Request, next: Next) -> Response {
    let announced =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let req = req.map(|body| Body::new(http_body_util::Limited::new(body, MAX_BODY_BYTES)));
    next.run(req).await
}

fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Refuses state-changing requests from other origins, and server function
/// calls that are not JSON.
async fn refuse_cross_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let forwarded_host = via_trusted_proxy(peer(&req), &state.trusted_proxies)
        .then(|| headers.get("x-forwarded-host").and_then(|h| h.to_str().ok()))
        .flatten();
    let authority = forwarded_host
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let secure = request_is_secure(state.secure_cookies, headers);
    let target = authority.map(|authority| csrf::Target { authority, secure });
    if let Err(refusal) = csrf::check(req.method(), headers, target) {
        tracing::warn!(method = %req.method(), path = %req.uri().path(), %refusal, "cross-origin request refused");
        return ApiFailure(ApiError::new(403, format!("Refused: {refusal}."))).into_response();
    }
    if req.uri().path().starts_with("/rpc/") && !csrf::is_safe(req.method()) && !csrf::is_json(headers) {
        return ApiFailure(ApiError::new(415, "Server functions take JSON: send Content-Type: application/json."))
            .into_response();
    }
    next.run(req).await
}

/// How long a browser that reached the node over HTTPS keeps to HTTPS for
/// it (Strict-Transport-Security, RFC 6797): a year.
const HSTS: &str = "max-age=31536000";

/// `X-Forwarded-Proto` counts only from a trusted proxy (`--trusted-proxy`):
/// from anyone else it is removed before any handler sees it, so that a
/// client cannot have a plain-HTTP request taken for HTTPS (the session
/// cookie's name and the cross-origin check depend on it). A response to a
/// request that came over HTTPS tells the browser to keep to HTTPS.
async fn judge_transport(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !via_trusted_proxy(peer(&req), &state.trusted_proxies) {
        req.headers_mut().remove("x-forwarded-proto");
    }
    let secure = request_is_secure(state.secure_cookies, req.headers());
    let mut resp = next.run(req).await;
    if secure {
        resp.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    resp
}

/// Records the client's address in the request for throttling and audit.
async fn record_origin(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let address = peer(&req).map(|p| client_address(p, req.headers(), &state.trusted_proxies).to_string());
    req.extensions_mut().insert(RequestOrigin { address });
    next.run(req).await
}

pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    Router::new()
        .nest("/api/v1", crate::api::router())
        .route("/rpc/{*fn_name}", any(server_fn_handler))
        .route("/metrics", get(crate::metrics::authenticated_scrape))
        .leptos_routes_with_context(&state, routes, context(&state), move || shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(middleware::from_fn_with_state(state.clone(), refuse_cross_origin))
        .layer(middleware::from_fn(limit_body))
        .layer(middleware::from_fn_with_state(state.clone(), record_origin))
        .layer(middleware::from_fn_with_state(state.clone(), judge_transport))
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
