//! This node, and the cluster, at a glance.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::{Badge, ErrorBanner};
use crate::format;
use crate::model::storage::format_size;
use crate::model::{ClusterHealth, NodeProblem, StorageCapacity};
use crate::server_fns::get_overview;

/// What of the stored configuration the node left out at start (or since),
/// and why; nothing when it serves everything.
#[component]
fn NotServed(problems: Vec<NodeProblem>) -> impl IntoView {
    (!problems.is_empty()).then(|| {
        view! {
            <section class="card" data-testid="node-problems">
                <h2>"Not served"</h2>
                <p class="muted">
                    "This node left these out of its stored configuration and serves everything else. "
                    "Fix the cause; the next change or restart tries them again."
                </p>
                <table class="table">
                    <thead>
                        <tr><th>"What"</th><th>"Why"</th></tr>
                    </thead>
                    <tbody>
                        {problems
                            .into_iter()
                            .map(|p| view! { <tr><td><code>{p.object}</code></td><td>{p.reason}</td></tr> })
                            .collect_view()}
                    </tbody>
                </table>
            </section>
        }
    })
}

/// The volumes' space: what they are promised against what they could use.
#[component]
fn CapacityCard(capacity: Option<StorageCapacity>) -> impl IntoView {
    let Some(c) = capacity else {
        return view! {
            <div class="card stat" data-testid="capacity">
                <div class="stat-label">"Volume space"</div>
                <div class="stat-value"><Badge kind="muted" text="unknown"/></div>
                <div class="stat-note">"cannot be measured now; see the node's log"</div>
            </div>
        }
        .into_any();
    };
    let backing = c.allocated_bytes.saturating_add(c.free_bytes);
    let badge = if c.overprovisioned() {
        view! { <Badge kind="warn" text="thin: over-provisioned"/> }
    } else {
        view! { <Badge kind="ok" text="fits"/> }
    };
    let ceiling = match c.max_overprovision_percent {
        Some(p) => format!("ceiling {p}%"),
        None => "no ceiling".to_string(),
    };
    view! {
        <div class="card stat" data-testid="capacity">
            <div class="stat-label">"Volume space"</div>
            <div class="stat-value">{badge}</div>
            <div class="stat-note">
                {format_size(c.provisioned_bytes)} " provisioned on " {format_size(backing)} " ("
                {format_size(c.allocated_bytes)} " held, " {format_size(c.free_bytes)} " free) · " {ceiling}
            </div>
        </div>
    }
    .into_any()
}

/// The cluster's health: nodes online, the leader, engines that left
/// something out.
#[component]
fn ClusterCard(cluster: ClusterHealth) -> impl IntoView {
    let badge = if cluster.healthy() {
        view! { <Badge kind="ok" text="healthy"/> }
    } else if cluster.leader.is_none() {
        view! { <Badge kind="bad" text="no leader"/> }
    } else {
        view! { <Badge kind="warn" text="degraded"/> }
    };
    let mut notes = vec![format!("{} of {} nodes online", cluster.online, cluster.nodes)];
    if cluster.maintenance > 0 {
        notes.push(format!("{} in maintenance", cluster.maintenance));
    }
    if cluster.offline > 0 {
        notes.push(format!("{} offline", cluster.offline));
    }
    if cluster.degraded_engines > 0 {
        notes.push(format!("{} with engine problems", cluster.degraded_engines));
    }
    notes.push(match &cluster.leader {
        Some(leader) => format!("leader {leader}"),
        None => "no leader".into(),
    });
    view! {
        <div class="card stat" data-testid="cluster-health">
            <div class="stat-label"><a href="/nodes">"Cluster"</a></div>
            <div class="stat-value">{badge}</div>
            <div class="stat-note">{notes.join(" · ")}</div>
        </div>
    }
}

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
                        let engine_badge = match o.engine.state.as_str() {
                            "running" => view! { <Badge kind="ok" text="running"/> },
                            "degraded" => view! { <Badge kind="warn" text="degraded"/> },
                            other => view! { <Badge kind="muted" text=other.to_string()/> },
                        };
                        let problems = o.engine.problems.clone();
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
                                <ClusterCard cluster=o.cluster.clone()/>
                                <CapacityCard capacity=o.capacity.clone()/>
                                <div class="card stat">
                                    <div class="stat-label">"Dashboard users"</div>
                                    <div class="stat-value">{o.users}</div>
                                    <div class="stat-note">"admins, operators and viewers"</div>
                                </div>
                            </section>
                            <NotServed problems/>
                        }
                        .into_any()
                    }
                }
            })}
        </Suspense>
    }
}
