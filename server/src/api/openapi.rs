//! The OpenAPI 3.1 document of `/api/v1`, derived from the handlers and the
//! shared model types.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Portico API", description = "Manage a Portico iSCSI SAN node. Authenticate with the session cookie from /login or with `Authorization: Bearer <token>`."),
    paths(
        routes::login, routes::logout, routes::me, routes::overview,
        routes::list_users, routes::create_user, routes::update_user, routes::delete_user,
        routes::create_token, routes::list_tokens, routes::revoke_token, routes::audit,
    ),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "session", description = "Log in and out"),
        (name = "node", description = "This node"),
        (name = "users", description = "Dashboard users (admin)"),
        (name = "tokens", description = "API tokens for scripts"),
        (name = "audit", description = "Who did what, when"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        components.add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("portico_session"))));
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
