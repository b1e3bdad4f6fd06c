#![recursion_limit = "256"]
//! Portico's dashboard: a Leptos application rendered on the server and
//! hydrated in the browser.
//!
//! * [`model`] and [`error`] are the values shared with the REST API.
//! * [`service`] (server only) is the service layer's interface; `server/`
//!   implements it and both the REST API and the [`server_fns`] call it.
//! * `pages` and `components` are the user interface.

pub mod error;
pub mod iscsi_fns;
pub mod model;
pub mod server_fns;
#[cfg(feature = "ssr")]
pub mod service;
pub mod storage_fns;

mod chart;
mod components;
mod format;
mod pages;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{path, SsrMode};

use crate::pages::{
    AuditPage, ChapUsersPage, GroupPage, GroupsPage, IscsiPage, Layout, LoginPage, NodesPage, NotFound, OverviewPage,
    TokensPage, UsersPage, VolumesPage,
};

/// The HTML document around the application (server side).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser, after hydration: tests wait for this
    // marker before clicking, because clicks before hydration are lost.
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/portico.css"/>
        <Title formatter=|page: String| if page.is_empty() { "Portico".to_string() } else { format!("{page} · Portico") }/>
        <Router>
            <Routes fallback=|| view! { <NotFound/> }>
                <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async/>
                // Async rendering: the page is sent once the caller is known, so an
                // anonymous visitor gets a real redirect to /login.
                <ParentRoute path=path!("") view=Layout ssr=SsrMode::Async>
                    <Route path=path!("") view=OverviewPage/>
                    <Route path=path!("volumes") view=VolumesPage/>
                    <Route path=path!("target-groups") view=GroupsPage/>
                    <Route path=path!("target-groups/:name") view=GroupPage/>
                    <Route path=path!("chap-users") view=ChapUsersPage/>
                    <Route path=path!("iscsi") view=IscsiPage/>
                    <Route path=path!("nodes") view=NodesPage/>
                    <Route path=path!("users") view=UsersPage/>
                    <Route path=path!("audit") view=AuditPage/>
                    <Route path=path!("tokens") view=TokensPage/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}

/// Browser entry point: attaches the application to the server-rendered HTML.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
