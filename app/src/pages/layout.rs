//! The frame around every page once logged in: navigation, the current
//! user, and logout. Anonymous visitors are sent to the login page.
//!
//! The server renders the frame; the page inside it is drawn in the browser
//! once the app has hydrated. A page's content depends on its own resources,
//! created under the frame's (the signed-in user): drawn on the server, such
//! nested resource-dependent content came out in varying shapes depending on
//! which answer arrived first, and hydration panicked on a share of the
//! loads (tachys' "unreachable" on the release build, Leptos issue #3398's
//! class of bug). Drawn in the browser, it cannot disagree with the server.

use leptos::prelude::*;
use leptos_router::components::{Outlet, Redirect, A};
use leptos_router::hooks::use_navigate;

use crate::components::{in_browser, ErrorBanner, JsonForm, RoleBadge};
use crate::model::{Me, Role};
use crate::server_fns::{current_user, Logout};

#[component]
pub fn Layout() -> impl IntoView {
    let me = Resource::new(|| (), |_| current_user());
    let logout = ServerAction::<Logout>::new();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(())) = logout.value().get() {
            navigate("/login", Default::default());
        }
    });

    view! {
        <Suspense fallback=|| view! { <div class="loading">"Loading…"</div> }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(me) => {
                        provide_context(me.clone());
                        view! { <Frame me logout/> }.into_any()
                    }
                    Err(e) if e.is_unauthenticated() => view! { <Redirect path="/login"/> }.into_any(),
                    Err(e) => view! { <main class="center-page"><ErrorBanner error=e/></main> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Frame(me: Me, logout: ServerAction<Logout>) -> impl IntoView {
    let is_admin = me.role == Role::Admin;
    let page_shown = in_browser();
    view! {
        <div class="app">
            <header class="topbar">
                <a class="brand" href="/">
                    <span class="brand-mark">"P"</span>
                    <span>"Portico"</span>
                </a>
                <nav class="nav" aria-label="Main">
                    <A href="/" exact=true>"Overview"</A>
                    <A href="/volumes">"Volumes"</A>
                    <A href="/target-groups">"Target groups"</A>
                    <A href="/chap-users">"CHAP users"</A>
                    <A href="/iscsi">"iSCSI"</A>
                    <A href="/nodes">"Nodes"</A>
                    {is_admin.then(|| view! { <A href="/users">"Users"</A> })}
                    <A href="/tokens">"API tokens"</A>
                    <A href="/audit">"Audit log"</A>
                </nav>
                <div class="whoami">
                    <span class="whoami-name" data-testid="current-user">{me.username.clone()}</span>
                    <RoleBadge role=me.role/>
                    <JsonForm action=logout attr:class="inline">
                        <button type="submit" class="btn btn-ghost">"Log out"</button>
                    </JsonForm>
                </div>
            </header>
            <main class="content">
                {move || page_shown.get().then(|| view! { <Outlet/> })}
            </main>
        </div>
    }
}
