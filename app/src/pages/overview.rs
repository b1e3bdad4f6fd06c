//! This node at a glance.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::{Badge, ErrorBanner};
use crate::format;
use crate::server_fns::get_overview;

#[component]
pub fn OverviewPage() -> impl IntoView {
    let overview = Resource::new(|| (), |_| get_overview());
    view! {
        <Title text="Overview"/>
        <div class="page-head">
            <h1>"Overview"</h1>
        </div>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(o) => {
                        let engine_badge = if o.engine.state == "running" {
                            view! { <Badge kind="ok" text="running"/> }
                        } else {
                            view! { <Badge kind="muted" text=o.engine.state.clone()/> }
                        };
                        view! {
                            <section class="cards">
                                <div class="card stat">
                                    <div class="stat-label">"Node"</div>
                                    <div class="stat-value" data-testid="node-name">{o.node_name.clone()}</div>
                                    <div class="stat-note">"Portico " {o.version.clone()}</div>
                                </div>
                                <div class="card stat">
                                    <div class="stat-label">"Uptime"</div>
                                    <div class="stat-value">{format::duration(o.uptime_seconds)}</div>
                                    <div class="stat-note">"since " {format::timestamp(&o.started_at)}</div>
                                </div>
                                <div class="card stat">
                                    <div class="stat-label">"iSCSI engine"</div>
                                    <div class="stat-value">{engine_badge}</div>
                                    <div class="stat-note">
                                        {o.engine.targets} " targets · " {o.engine.portals} " portals · "
                                        {o.engine.sessions} " sessions"
                                    </div>
                                </div>
                                <div class="card stat">
                                    <div class="stat-label">"Dashboard users"</div>
                                    <div class="stat-value">{o.users}</div>
                                    <div class="stat-note">"admins, operators and viewers"</div>
                                </div>
                            </section>
                        }
                        .into_any()
                    }
                }
            })}
        </Suspense>
    }
}
