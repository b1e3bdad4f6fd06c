//! Server functions: thin doors from the dashboard into the service layer.
//!
//! Each resolves the caller from the session cookie, calls one
//! [`NodeService`](crate::service::NodeService) method, and turns an error
//! into its HTTP status so the browser sees a real 401/403/422. Each takes
//! its arguments as JSON (`input = Json`): a page on another origin cannot
//! send JSON without the browser asking the node first.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::error::ApiError;
use crate::model::*;

#[cfg(feature = "ssr")]
pub mod ssr {
    use http::header::{HeaderValue, COOKIE, SET_COOKIE};
    use http::StatusCode;
    use leptos::prelude::*;
    use leptos_axum::ResponseOptions;

    use crate::error::ApiError;
    use crate::service::{Caller, Credential, RequestOrigin, SharedService, SECURE_SESSION_COOKIE, SESSION_COOKIE};

    /// Whether cookies get the `Secure` attribute (the node is served over TLS).
    #[derive(Clone, Copy, Debug)]
    pub struct SecureCookies(pub bool);

    pub fn service() -> Result<SharedService, ApiError> {
        use_context::<SharedService>().ok_or_else(ApiError::internal)
    }

    fn parts() -> Result<http::request::Parts, ApiError> {
        use_context::<http::request::Parts>().ok_or_else(ApiError::internal)
    }

    pub fn origin() -> RequestOrigin {
        use_context::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<RequestOrigin>().cloned())
            .unwrap_or_default()
    }

    /// The session cookie's name: over TLS the `__Host-` prefix makes the
    /// browser refuse it unless it is Secure, for this host only (no
    /// `Domain`) and for the whole site, so a sibling name cannot plant or
    /// shadow it.
    pub fn session_cookie_name(secure: bool) -> &'static str {
        if secure {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    /// The value of the session cookie in a `Cookie` header, if any (over
    /// TLS only the `__Host-` one counts).
    pub fn session_cookie_value(headers: &http::HeaderMap, secure: bool) -> Option<String> {
        let wanted = session_cookie_name(secure);
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == wanted)
            .map(|(_, value)| value.to_string())
    }

    /// A `Set-Cookie` value that opens (`Some`) or clears (`None`) the session.
    pub fn session_set_cookie(token: Option<(&str, i64)>, secure: bool) -> String {
        let name = session_cookie_name(secure);
        let secure = if secure { "; Secure" } else { "" };
        match token {
            Some((value, max_age)) => {
                format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
            }
            None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
        }
    }

    /// Whether the browser reached the node over TLS: the node says so
    /// (`--secure-cookies`), or a TLS-terminating proxy reports HTTPS.
    pub fn request_is_secure(configured: bool, headers: &http::HeaderMap) -> bool {
        configured
            || headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https"))
    }

    /// [`request_is_secure`] for the request being served.
    pub fn secure_cookies() -> bool {
        let configured = use_context::<SecureCookies>().map(|s| s.0).unwrap_or(false);
        match use_context::<http::request::Parts>() {
            Some(parts) => request_is_secure(configured, &parts.headers),
            None => configured,
        }
    }

    pub fn set_cookie(value: String) {
        if let (Some(resp), Ok(v)) = (use_context::<ResponseOptions>(), HeaderValue::from_str(&value)) {
            resp.append_header(SET_COOKIE, v);
        }
    }

    /// Sets the response status to the error's and passes the error on.
    pub fn fail(e: ApiError) -> ApiError {
        if let Some(resp) = use_context::<ResponseOptions>() {
            resp.set_status(StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        }
        e
    }

    /// The caller behind this request's session cookie.
    pub async fn caller() -> Result<(SharedService, Caller), ApiError> {
        let svc = service()?;
        let token = session_cookie_value(&parts()?.headers, secure_cookies()).ok_or_else(ApiError::unauthenticated)?;
        let caller = svc.authenticate(Credential::Session(token), origin()).await?;
        Ok((svc, caller))
    }

    pub fn current_session_token() -> Option<String> {
        use_context::<http::request::Parts>().and_then(|p| session_cookie_value(&p.headers, secure_cookies()))
    }
}

#[server(prefix = "/rpc", endpoint = "login", input = Json)]
pub async fn login(username: String, password: String) -> Result<Me, ApiError> {
    use self::ssr::*;
    let run = async {
        let svc = service()?;
        let session = svc.login(LoginRequest { username, password }, origin()).await?;
        set_cookie(session_set_cookie(Some((&session.token, session.max_age_seconds)), secure_cookies()));
        Ok(session.me)
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "logout", input = Json)]
pub async fn logout() -> Result<(), ApiError> {
    use self::ssr::*;
    let run = async {
        if let Ok((svc, caller)) = caller().await {
            if let Some(token) = current_session_token() {
                svc.logout(&caller, &token).await?;
            }
        }
        set_cookie(session_set_cookie(None, secure_cookies()));
        Ok(())
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "me", input = Json)]
pub async fn current_user() -> Result<Me, ApiError> {
    use self::ssr::*;
    caller().await.map(|(_, c)| c.me()).map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "overview", input = Json)]
pub async fn get_overview() -> Result<NodeOverview, ApiError> {
    use self::ssr::*;
    let run = async {
        let (svc, caller) = caller().await?;
        svc.overview(&caller).await
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "users/list", input = Json)]
pub async fn list_users() -> Result<Vec<UserView>, ApiError> {
    use self::ssr::*;
    let run = async {
        let (svc, caller) = caller().await?;
        svc.list_users(&caller).await
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "users/create", input = Json)]
pub async fn create_user(username: String, password: String, role: String) -> Result<UserView, ApiError> {
    use self::ssr::*;
    let run = async {
        let (svc, caller) = caller().await?;
        let role = Role::parse(&role).ok_or_else(|| ApiError::invalid_field("role", "Choose a role."))?;
        svc.create_user(&caller, NewUser { username: username.trim().to_string(), password, role }).await
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "users/role", input = Json)]
pub async fn set_user_role(username: String, role: String) -> Result<UserView, ApiError> {
    use self::ssr::*;
    let run = async {
        let (svc, caller) = caller().await?;
        let role = Role::parse(&role).ok_or_else(|| ApiError::invalid_field("role", "Choose a role."))?;
        svc.update_user(&caller, &username, UserPatch { role: Some(role), ..Default::default() }).await
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "users/enabled", input = Json)]
pub async fn set_user_enabled(username: String, enabled: bool) -> Result<UserView, ApiError> {
    use self::ssr::*;
    let run = async {
        let (svc, caller) = caller().await?;
        svc.update_user(&caller, &username, UserPatch { enabled: Some(enabled), ..Default::default() }).await
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "users/password", input = Json)]
pub async fn reset_password(username: String, password: String) -> Result<UserView, ApiError> {
    use self::ssr::*;
    let run = async {
        let (svc, caller) = caller().await?;
        svc.update_user(&caller, &username, UserPatch { password: Some(password), ..Default::default() }).await
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "users/delete", input = Json)]
pub async fn delete_user(username: String) -> Result<(), ApiError> {
    use self::ssr::*;
    let run = async {
        let (svc, caller) = caller().await?;
        svc.delete_user(&caller, &username).await
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "tokens/list", input = Json)]
pub async fn list_tokens() -> Result<Vec<TokenView>, ApiError> {
    use self::ssr::*;
    let run = async {
        let (svc, caller) = caller().await?;
        svc.list_tokens(&caller).await
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "tokens/create", input = Json)]
pub async fn create_token(name: String, expires: String, scope: String) -> Result<CreatedToken, ApiError> {
    use self::ssr::*;
    let run = async {
        let (svc, caller) = caller().await?;
        let expires_in_days = match expires.as_str() {
            "never" => None,
            days => Some(
                days.parse::<u32>()
                    .map_err(|_| ApiError::invalid_field("expires_in_days", "Choose when the token expires."))?,
            ),
        };
        let read_only = match scope.as_str() {
            "full" => false,
            "read-only" => true,
            _ => return Err(ApiError::invalid_field("read_only", "Choose what the token may do.")),
        };
        svc.create_token(&caller, NewToken { name, expires_in_days, read_only }).await
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "tokens/revoke", input = Json)]
pub async fn revoke_token(id: i64) -> Result<(), ApiError> {
    use self::ssr::*;
    let run = async {
        let (svc, caller) = caller().await?;
        svc.revoke_token(&caller, id).await
    };
    run.await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "audit", input = Json)]
pub async fn get_audit(page: u32) -> Result<AuditPage, ApiError> {
    use self::ssr::*;
    let run = async {
        let (svc, caller) = caller().await?;
        svc.audit(&caller, page, 50).await
    };
    run.await.map_err(fail)
}
