//! The REST API under `/api/v1`: JSON in, JSON out, every route a thin call
//! into the service layer. Documented by the OpenAPI document served at
//! `/api/v1/openapi.json`.

mod cluster;
pub(crate) mod extract;
mod iscsi_settings;
mod openapi;
mod routes;
mod storage;

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
        .route("/volumes", get(storage::list_volumes).post(storage::create_volume))
        .route("/volumes/{name}", get(storage::get_volume).patch(storage::update_volume).delete(storage::delete_volume))
        .route("/volumes/{name}/activity", get(storage::volume_activity))
        .route("/volumes/{name}/primary", post(storage::move_primary))
        .route("/volumes/{name}/moves", get(storage::volume_moves))
        .route("/target-groups/{name}/moves", get(storage::group_moves))
        .route("/target-groups/{name}/paths", get(storage::group_paths))
        .route("/volumes/{name}/reservations", get(storage::volume_reservations))
        .route("/target-groups", get(storage::list_groups).post(storage::create_group))
        .route(
            "/target-groups/{name}",
            get(storage::get_group).patch(storage::update_group).delete(storage::delete_group),
        )
        .route("/target-groups/{name}/start", post(storage::start_group))
        .route("/target-groups/{name}/stop", post(storage::stop_group))
        .route("/target-groups/{name}/targets", post(storage::add_target))
        .route("/target-groups/{name}/targets/{iqn}", delete(storage::remove_target))
        .route("/target-groups/{name}/luns", get(storage::list_luns).post(storage::attach_lun))
        .route("/target-groups/{name}/luns/{lun}", delete(storage::detach_lun))
        .route("/target-groups/{name}/acl", get(storage::list_acl).post(storage::add_acl))
        .route("/target-groups/{name}/acl/{initiator}", patch(storage::update_acl).delete(storage::delete_acl))
        .route("/target-groups/{name}/connections", get(storage::connections))
        .route("/target-groups/{name}/session", get(iscsi_settings::get_session).put(iscsi_settings::put_session))
        .route(
            "/target-groups/{name}/privileges",
            get(iscsi_settings::get_privileges).put(iscsi_settings::put_privileges),
        )
        .route("/iscsi/discovery", get(iscsi_settings::get_discovery).put(iscsi_settings::put_discovery))
        .route("/chap-users", get(storage::list_chap_users).post(storage::create_chap_user))
        .route("/chap-users/{name}", patch(storage::update_chap_user).delete(storage::delete_chap_user))
        .route("/nodes", get(storage::list_nodes))
        .route("/nodes/{name}", get(storage::get_node).patch(storage::update_node).delete(storage::remove_node))
        .route("/cluster", get(cluster::status))
        .route("/cluster/join-tokens", get(cluster::list_join_tokens).post(cluster::create_join_token))
        .route("/cluster/join-tokens/{id}", delete(cluster::revoke_join_token))
        .route("/openapi.json", get(openapi::document))
        .fallback(routes::not_found)
}
