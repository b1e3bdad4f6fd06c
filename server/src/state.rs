//! What every request handler can reach.

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use portico_app::service::SharedService;

#[derive(Clone)]
pub struct AppState {
    pub service: SharedService,
    pub storage: std::sync::Arc<crate::storage::Storage>,
    pub leptos_options: LeptosOptions,
    /// Set the `Secure` attribute on cookies (the node is behind TLS).
    pub secure_cookies: bool,
    /// Reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Host` are believed.
    pub trusted_proxies: std::sync::Arc<[std::net::IpAddr]>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
