//! Target groups: the list, and creating a group with its first target.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use super::volumes::can_change;
use crate::components::{ActionError, Badge, ErrorBanner, FieldMessage, JsonForm};
use crate::model::storage::{GroupsPageData, TargetGroupView, IQN_PREFIX};
use crate::storage_fns::{get_groups_page, CreateGroup};

/// The page draws from one answer under one `<Transition/>`: with several
/// boundaries under the layout's own, the server sent them in whatever order
/// their data came, and the browser's hydration failed on some loads.
#[component]
pub fn GroupsPage() -> impl IntoView {
    let create = ServerAction::<CreateGroup>::new();
    let page = Resource::new(move || create.version().get(), |_| get_groups_page());
    let writer = can_change();
    view! {
        <Title text="Target groups"/>
        <div class="page-head">
            <h1>"Target groups"</h1>
            <p class="muted">"Targets on different nodes that export the same LUNs; ALUA tells initiators which path to use."</p>
        </div>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(GroupsPageData { groups, nodes, chap_users }) => view! {
                        <GroupList groups/>
                        {writer.then(|| view! { <NewGroup create nodes chap_users/> })}
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn GroupList(groups: Vec<TargetGroupView>) -> impl IntoView {
    if groups.is_empty() {
        return view! { <p class="empty">"No target groups yet."</p> }.into_any();
    }
    view! {
        <div class="table-wrap"><table class="table" data-testid="groups-table">
            <thead><tr><th>"Name"</th><th>"State"</th><th>"Targets"</th><th>"LUNs"</th><th>"CHAP"</th><th>"ACL"</th></tr></thead>
            <tbody>{groups.into_iter().map(|g| {
                let kind = if g.state == "running" { "ok" } else { "muted" };
                let href = format!("/target-groups/{}", g.name);
                let link = href.clone();
                let gname = g.name.clone();
                view! {
                    <tr data-group=href.clone()>
                        <td><A href=link><strong>{gname.clone()}</strong></A></td>
                        <td><Badge kind text=g.state.clone()/></td>
                        <td>{g.targets.iter().map(|t| format!("{} ({})", t.node, t.portals.join(", "))).collect::<Vec<_>>().join("; ")}</td>
                        <td>{g.luns.len()}</td>
                        <td>{g.chap.mode.as_str()}</td>
                        <td>{if g.acl_enabled { format!("on, {} rules", g.acl.len()) } else { "off".into() }}</td>
                    </tr>
                }
            }).collect_view()}</tbody>
        </table></div>
    }.into_any()
}

#[component]
fn NewGroup(create: ServerAction<CreateGroup>, nodes: Vec<String>, chap_users: Vec<String>) -> impl IntoView {
    let options =
        |names: &[String]| names.iter().map(|n| view! { <option value=n.clone()>{n.clone()}</option> }).collect_view();
    view! {
        <section class="card">
            <h2>"New target group"</h2>
            <JsonForm action=create attr:class="form form-grid" attr:id="create-group">
                <label>"Name"<input type="text" name="name" required maxlength="63" placeholder="esxi"/>
                    <FieldMessage value=create.value() field="name"/></label>
                <label>"Node of the first target"
                    <select name="node">{options(&nodes)}</select>
                    <FieldMessage value=create.value() field="targets[0].node"/></label>
                <label>"Portals (ip:port, comma separated)"<input type="text" name="portals" placeholder="127.0.0.1:3260"/>
                    <FieldMessage value=create.value() field="targets[0].portals"/></label>
                <label>{format!("IQN suffix (after {IQN_PREFIX}:)")}<input type="text" name="iqn_suffix" placeholder="default: <group>.<node>"/>
                    <FieldMessage value=create.value() field="targets[0].iqn"/></label>
                <label>"CHAP"
                    <select name="chap_mode">
                        <option value="none">"none"</option>
                        <option value="one-way">"one-way"</option>
                        <option value="mutual">"mutual"</option>
                    </select>
                    <FieldMessage value=create.value() field="chap.mode"/></label>
                <label>"CHAP user"
                    <select name="chap_user"><option value="">"—"</option>{options(&chap_users)}</select>
                    <FieldMessage value=create.value() field="chap.user"/></label>
                <label>"Mutual CHAP user (target)"
                    <select name="mutual_user"><option value="">"—"</option>{options(&chap_users)}</select>
                    <FieldMessage value=create.value() field="chap.mutual_user"/></label>
                <div class="form-actions"><button type="submit" class="btn btn-primary">"Create group"</button></div>
            </JsonForm>
            <ActionError value=create.value()/>
        </section>
    }
}
