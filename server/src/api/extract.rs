//! Request extractors and the error response of the REST API.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use portico_app::error::ApiError;
use portico_app::server_fns::ssr::{request_is_secure, session_cookie_value};
use portico_app::service::{Caller, Credential, RequestOrigin};
use serde::de::DeserializeOwned;

use crate::state::AppState;

/// An [`ApiError`] as an HTTP response: its status and a JSON body.
#[derive(Debug)]
pub struct ApiFailure(pub ApiError);

impl From<ApiError> for ApiFailure {
    fn from(e: ApiError) -> Self {
        ApiFailure(e)
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

/// The authenticated caller: from `Authorization: Bearer`, else the session cookie.
pub struct Authed(pub Caller);

/// The credential a request carries, if any. `secure`: the request came
/// over TLS, where only the `__Host-` session cookie counts.
pub fn credential(headers: &HeaderMap, secure: bool) -> Option<Credential> {
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = auth.split_once(' ').unwrap_or((auth, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(Credential::Bearer(token.trim().to_string()));
        }
    }
    session_cookie_value(headers, secure).map(Credential::Session)
}

pub fn origin(parts: &Parts) -> RequestOrigin {
    parts.extensions.get::<RequestOrigin>().cloned().unwrap_or_default()
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let secure = request_is_secure(state.secure_cookies, &parts.headers);
        let credential = credential(&parts.headers, secure).ok_or_else(ApiError::unauthenticated)?;
        let caller = state.service.authenticate(credential, origin(parts)).await?;
        Ok(Authed(caller))
    }
}

/// The client's address, for throttling and the audit log.
pub struct Origin(pub RequestOrigin);

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Origin(origin(parts)))
    }
}

/// A JSON body whose errors are JSON too (400 for bad syntax, 415 without
/// the content type, 422 for a wrong shape).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiFailure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(ApiFailure(ApiError::new(rejection.status().as_u16(), rejection.body_text()))),
        }
    }
}
