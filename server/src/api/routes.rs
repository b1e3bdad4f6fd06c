//! The handlers of `/api/v1`.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use portico_app::error::ApiError;
use portico_app::model::*;
use portico_app::server_fns::ssr::{request_is_secure, session_cookie_value, session_set_cookie};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiFailure, ApiJson, Authed, Origin};
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiFailure>;

fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    request_is_secure(state.secure_cookies, headers)
}

fn with_cookie(mut resp: Response, cookie: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Log in; sets the session cookie.
#[utoipa::path(post, path = "/api/v1/login", tag = "session", request_body = LoginRequest,
    responses((status = 200, body = Me, description = "Logged in; the session cookie is set (`__Host-portico_session` over TLS, else `portico_session`)"),
              (status = 401, body = ApiError, description = "Wrong user name or password"),
              (status = 429, body = ApiError, description = "Too many failed logins: locked for a while")))]
pub async fn login(
    State(state): State<AppState>,
    Origin(origin): Origin,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let session = state.service.login(req, origin).await?;
    let cookie = session_set_cookie(Some((&session.token, session.max_age_seconds)), secure(&state, &headers));
    Ok(with_cookie(Json(session.me).into_response(), cookie))
}

/// Log out: ends the session and clears the cookie.
#[utoipa::path(post, path = "/api/v1/logout", tag = "session",
    responses((status = 204, description = "Logged out"), (status = 401, body = ApiError)))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, Authed(caller): Authed) -> ApiResult<Response> {
    if let Some(token) = session_cookie_value(&headers, secure(&state, &headers)) {
        state.service.logout(&caller, &token).await?;
    }
    Ok(with_cookie(StatusCode::NO_CONTENT.into_response(), session_set_cookie(None, secure(&state, &headers))))
}

/// Who am I?
#[utoipa::path(get, path = "/api/v1/me", tag = "session",
    responses((status = 200, body = Me), (status = 401, body = ApiError)))]
pub async fn me(Authed(caller): Authed) -> Json<Me> {
    Json(caller.me())
}

/// This node: name, version, uptime, engine state, the volumes' space.
#[utoipa::path(get, path = "/api/v1/overview", tag = "node",
    responses((status = 200, body = NodeOverview), (status = 401, body = ApiError)))]
pub async fn overview(State(state): State<AppState>, Authed(caller): Authed) -> ApiResult<Json<NodeOverview>> {
    Ok(Json(state.service.overview(&caller).await?))
}

/// List dashboard users (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<UserView>), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list_users(State(state): State<AppState>, Authed(caller): Authed) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(state.service.list_users(&caller).await?))
}

/// Create a dashboard user (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 401, body = ApiError), (status = 403, body = ApiError),
              (status = 409, body = ApiError, description = "The name is taken"),
              (status = 422, body = ApiError, description = "Invalid fields")))]
pub async fn create_user(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiJson(new): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    Ok((StatusCode::CREATED, Json(state.service.create_user(&caller, new).await?)))
}

/// Change a user's role, password or enabled flag (admin).
#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "users", request_body = UserPatch,
    params(("username" = String, Path, description = "User name")),
    responses((status = 200, body = UserView), (status = 403, body = ApiError), (status = 404, body = ApiError),
              (status = 409, body = ApiError, description = "Would leave no enabled administrator"),
              (status = 422, body = ApiError)))]
pub async fn update_user(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(username): Path<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(state.service.update_user(&caller, &username, patch).await?))
}

/// Delete a user (admin).
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "users",
    params(("username" = String, Path, description = "User name")),
    responses((status = 204, description = "Deleted"), (status = 403, body = ApiError), (status = 404, body = ApiError),
              (status = 409, body = ApiError, description = "The last enabled administrator")))]
pub async fn delete_user(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    state.service.delete_user(&caller, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create an API token acting as the caller; the token is shown only here.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 401, body = ApiError), (status = 422, body = ApiError)))]
pub async fn create_token(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiJson(new): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    Ok((StatusCode::CREATED, Json(state.service.create_token(&caller, new).await?)))
}

/// List API tokens: one's own, or everyone's for an admin. Never the secrets.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenView>), (status = 401, body = ApiError)))]
pub async fn list_tokens(State(state): State<AppState>, Authed(caller): Authed) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(state.service.list_tokens(&caller).await?))
}

/// Revoke an API token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = ApiError)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: i64 = id.parse().map_err(|_| ApiError::new(400, "A token id is a number."))?;
    state.service.revoke_token(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Page number, from 1 (newest entries).
    pub page: Option<u32>,
    /// Entries per page, 1–200 (default 50).
    pub per_page: Option<u32>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 401, body = ApiError)))]
pub async fn audit(
    State(state): State<AppState>,
    Authed(caller): Authed,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    let Query(q) = query.map_err(|e| ApiError::new(400, e.body_text()))?;
    Ok(Json(state.service.audit(&caller, q.page.unwrap_or(1), q.per_page.unwrap_or(50)).await?))
}

pub async fn not_found() -> ApiFailure {
    ApiFailure(ApiError::new(404, "No such API route. The routes are listed in /api/v1/openapi.json."))
}
