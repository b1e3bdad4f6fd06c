//! The REST API under `/api/v1`: JSON in, JSON out, every route a thin call
//! into the service layer. Documented by the OpenAPI document served at
//! `/api/v1/openapi.json`.

mod extract;
mod openapi;
mod routes;

use axum::routing::{delete, get, patch, post};
use axum::Router;

pub use extract::{ApiFailure, Authed};
pub use openapi::ApiDoc;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", post(routes::login))
        .route("/logout", post(routes::logout))
        .route("/me", get(routes::me))
        .route("/overview", get(routes::overview))
        .route("/users", get(routes::list_users).post(routes::create_user))
        .route("/users/{username}", patch(routes::update_user).delete(routes::delete_user))
        .route("/tokens", get(routes::list_tokens).post(routes::create_token))
        .route("/tokens/{id}", delete(routes::revoke_token))
        .route("/audit", get(routes::audit))
        .route("/openapi.json", get(openapi::document))
        .fallback(routes::not_found)
}
