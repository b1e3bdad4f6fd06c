//! Nodes and the traffic their network interfaces carry.

use leptos::prelude::*;
use leptos_meta::Title;

use super::volumes::can_change;
use crate::components::{ActionError, Badge, ErrorBanner, JsonForm};
use crate::format;
use crate::model::{Me, Role};
use crate::storage_fns::{
    list_join_tokens, list_nodes, CreateJoinToken, RemoveNode, RevokeJoinToken, SetMaintenance, SetTraffic,
};

#[component]
pub fn NodesPage() -> impl IntoView {
    let traffic = ServerAction::<SetTraffic>::new();
    let maintenance = ServerAction::<SetMaintenance>::new();
    let remove = ServerAction::<RemoveNode>::new();
    view! {
        <Title text="Nodes"/>
        <div class="page-head">
            <h1>"Nodes"</h1>
            <p class="muted">"A portal must be on an interface that carries iSCSI traffic."</p>
        </div>
        <ActionError value=traffic.value()/>
        <ActionError value=maintenance.value()/>
        <ActionError value=remove.value()/>
        {use_context::<Me>().is_some_and(|m| m.role == Role::Admin).then(JoinTokenCard)}
        <NodesLoaded traffic maintenance remove/>
    }
}

/// The nodes, reloaded after each change that went through.
#[component]
fn NodesLoaded(
    traffic: ServerAction<SetTraffic>,
    maintenance: ServerAction<SetMaintenance>,
    remove: ServerAction<RemoveNode>,
) -> impl IntoView {
    let nodes = Resource::new(
        move || (traffic.version().get(), maintenance.version().get(), remove.version().get()),
        |_| list_nodes(),
    );
    let writer = can_change();
    let admin = use_context::<Me>().is_some_and(|m| m.role == Role::Admin);
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match nodes.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(list) => list.into_iter().map(|n| {
                        let node = n.name.clone();
                        let kind = if n.state == "online" { "ok" } else { "warn" };
                        view! {
                            <section class="card">
                                <h2>{n.name.clone()} " " <Badge kind text=n.state.clone()/> {n.is_local.then(|| view! { " " <Badge kind="muted" text="this node"/> })}</h2>
                                {writer.then(|| {
                                    let on = n.state != "maintenance";
                                    let node = node.clone();
                                    view! {
                                        <button type="button" class="btn btn-small"
                                            on:click=move |_| { maintenance.dispatch(SetMaintenance { node: node.clone(), on }); }>
                                            {if on { "Enter maintenance" } else { "Leave maintenance" }}
                                        </button>
                                    }
                                })}
                                {(admin && !n.is_local).then(|| {
                                    let node = node.clone();
                                    view! {
                                        " "
                                        <button type="button" class="btn btn-small btn-danger" on:click=move |_| {
                                            let q = format!("Remove the node {node} from the cluster? It must hold no volumes or targets.");
                                            if window().confirm_with_message(&q).unwrap_or(false) {
                                                remove.dispatch(RemoveNode { node: node.clone() });
                                            }
                                        }>"Remove from the cluster"</button>
                                    }
                                })}
                                <p class="muted small">
                                    "last state change " {format::timestamp(&n.last_heartbeat)}
                                    {n.raft_id.map(|id| view! { " · Raft node " {id} })}
                                    {n.raft_role.clone().map(|r| view! { " · " {r} })}
                                    {match (n.raft_id, n.applied_index) {
                                        (Some(_), Some(i)) => view! { " · applied index " {i} }.into_any(),
                                        (Some(_), None) => view! { " · " <strong>"not answering"</strong> }.into_any(),
                                        _ => ().into_any(),
                                    }}
                                    {n.last_contact_ms.filter(|ms| *ms > 0).map(|ms| view! { " · last heartbeat answered " {format!("{:.1}", ms as f64 / 1000.0)} " s ago" })}
                                    {n.cluster_addr.clone().map(|a| view! { " · cluster address " {a} })}
                                </p>
                                {(!n.engine_problems.is_empty()).then(|| view! {
                                    <div class="banner banner-warn" data-testid="engine-problems">
                                        <strong>"Its engine left out:"</strong>
                                        <ul>{n.engine_problems.clone().into_iter().map(|p| view! {
                                            <li><code>{p.object}</code> " — " {p.reason}</li>
                                        }).collect_view()}</ul>
                                    </div>
                                })}
                                <div class="table-wrap"><table class="table">
                                    <thead><tr><th>"Interface"</th><th>"Addresses"</th><th>"Traffic"</th></tr></thead>
                                    <tbody>{n.interfaces.into_iter().map(|i| {
                                        let node = node.clone();
                                        let types = i.traffic_types.join(", ");
                                        view! {
                                            <tr>
                                                <td><strong>{i.name.clone()}</strong></td>
                                                <td>{i.addresses.join(", ")}</td>
                                                <td>{if writer {
                                                    view! {
                                                        <JsonForm action=traffic attr:class="form inline-form">
                                                            <input type="hidden" name="node" value=node/>
                                                            <input type="hidden" name="interface" value=i.name.clone()/>
                                                            <input type="text" name="traffic_types" value=types aria-label="Traffic types"/>
                                                            <button type="submit" class="btn btn-small">"Save"</button>
                                                        </JsonForm>
                                                    }.into_any()
                                                } else {
                                                    view! { <span>{types}</span> }.into_any()
                                                }}</td>
                                            </tr>
                                        }
                                    }).collect_view()}</tbody>
                                </table></div>
                            </section>
                        }
                    }).collect_view().into_any(),
                }
            })}
        </Transition>
    }
}

/// Admins create a join token here for a new node, shown this once, and
/// see and revoke the tokens not used yet.
#[allow(non_snake_case)]
fn JoinTokenCard() -> impl IntoView {
    let create = ServerAction::<CreateJoinToken>::new();
    let revoke = ServerAction::<RevokeJoinToken>::new();
    let open = Resource::new(move || (create.version().get(), revoke.version().get()), |_| list_join_tokens());
    view! {
        <section class="card" data-testid="join-token">
            <h2>"Add a node"</h2>
            <p class="muted">
                "A join token lets one new node join this cluster within an hour. "
                "Start the new node with an empty data directory and the command below."
            </p>
            <ActionError value=create.value()/>
            <ActionError value=revoke.value()/>
            <button type="button" class="btn" on:click=move |_| { create.dispatch(CreateJoinToken {}); }>
                "Create a join token"
            </button>
            {move || create.value().get().and_then(Result::ok).map(|t| view! {
                <p class="small">"Expires " {format::timestamp(&t.expires_at)} ". It is shown only now."</p>
                <pre class="code-block">{format!("PORTICO_JOIN_TOKEN={} \\\n  {}", t.token, t.command)}</pre>
            })}
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match open.await {
                        Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="small muted">"No join token is waiting to be used."</p> }.into_any(),
                        Ok(list) => view! {
                            <h3>"Not used yet"</h3>
                            <table class="table" data-testid="join-tokens">
                                <thead>
                                    <tr><th>"Id"</th><th>"Created by"</th><th>"Expires"</th><th class="actions-col"></th></tr>
                                </thead>
                                <tbody>
                                    {list.into_iter().map(|t| {
                                        let id = t.id.clone();
                                        view! {
                                            <tr>
                                                <td><code>{t.id}</code></td>
                                                <td>{t.created_by}</td>
                                                <td>{format::timestamp(&t.expires_at)}</td>
                                                <td class="actions-col">
                                                    <button type="button" class="btn btn-small btn-danger" on:click=move |_| {
                                                        revoke.dispatch(RevokeJoinToken { id: id.clone() });
                                                    }>"Revoke"</button>
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}
