//! The OpenAPI 3.1 document of `/api/v1`, derived from the handlers and the
//! shared model types.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{cluster, iscsi_settings, routes, storage};

#[derive(OpenApi)]
#[openapi(
    info(title = "Portico API", description = "Manage a Portico iSCSI SAN node. Authenticate with the session cookie from /login or with `Authorization: Bearer <token>`."),
    paths(
        routes::login, routes::logout, routes::me, routes::overview,
        routes::list_users, routes::create_user, routes::update_user, routes::delete_user,
        routes::create_token, routes::list_tokens, routes::revoke_token, routes::audit,
        storage::list_volumes, storage::create_volume, storage::get_volume, storage::update_volume, storage::delete_volume, storage::volume_activity, storage::volume_reservations, storage::move_primary, storage::volume_moves, storage::group_moves, storage::group_paths,
        storage::list_groups, storage::create_group, storage::get_group, storage::update_group, storage::delete_group,
        storage::start_group, storage::stop_group, storage::add_target, storage::remove_target,
        storage::list_luns, storage::attach_lun, storage::detach_lun,
        storage::list_acl, storage::add_acl, storage::update_acl, storage::delete_acl, storage::connections,
        storage::list_chap_users, storage::create_chap_user, storage::update_chap_user, storage::delete_chap_user,
        storage::list_nodes, storage::get_node, storage::update_node, storage::remove_node,
        iscsi_settings::get_session, iscsi_settings::put_session, iscsi_settings::get_privileges, iscsi_settings::put_privileges,
        iscsi_settings::get_discovery, iscsi_settings::put_discovery,
        cluster::status, cluster::create_join_token, cluster::list_join_tokens, cluster::revoke_join_token,
    ),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "session", description = "Log in and out"),
        (name = "node", description = "This node"),
        (name = "users", description = "Dashboard users (admin)"),
        (name = "tokens", description = "API tokens for scripts"),
        (name = "audit", description = "Who did what, when"),
        (name = "volumes", description = "Block volumes"),
        (name = "target-groups", description = "Target groups: targets, LUNs and their path states, ACL, CHAP, session parameters, privileges, connections"),
        (name = "chap-users", description = "CHAP credentials (secrets are never returned)"),
        (name = "nodes", description = "Nodes and their network interfaces"),
        (name = "cluster", description = "The cluster: members, Raft roles, join tokens"),
        (name = "iscsi", description = "iSCSI settings of the whole cluster: CHAP on discovery sessions"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "portico_session",
                "The session cookie from /login; over TLS it is named __Host-portico_session.",
            ))),
        );
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
