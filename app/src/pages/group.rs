//! One target group: its targets and portals, the path state of each LUN on
//! each target, attached LUNs, ACL rules, CHAP, and live connections.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map};

use super::volumes::can_change;
use crate::chart::{use_ticker, LiveActivity};
use crate::components::{ActionError, Badge, ErrorBanner, FieldMessage, JsonForm};
use crate::format;
use crate::model::storage::{format_size, PathState, TargetGroupView};
use crate::storage_fns::*;

#[derive(Clone, Copy)]
struct GroupActions {
    running: ServerAction<SetGroupRunning>,
    chap: ServerAction<SetGroupChap>,
    acl_enabled: ServerAction<SetGroupAcl>,
    add_target: ServerAction<AddTarget>,
    remove_target: ServerAction<RemoveTarget>,
    attach: ServerAction<AttachLun>,
    detach: ServerAction<DetachLun>,
    add_acl: ServerAction<AddAclRule>,
    update_acl: ServerAction<UpdateAclRule>,
    delete_acl: ServerAction<DeleteAclRule>,
    delete: ServerAction<DeleteGroup>,
}

#[component]
pub fn GroupPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let a = GroupActions {
        running: ServerAction::new(),
        chap: ServerAction::new(),
        acl_enabled: ServerAction::new(),
        add_target: ServerAction::new(),
        remove_target: ServerAction::new(),
        attach: ServerAction::new(),
        detach: ServerAction::new(),
        add_acl: ServerAction::new(),
        update_acl: ServerAction::new(),
        delete_acl: ServerAction::new(),
        delete: ServerAction::new(),
    };
    let version = move || {
        (
            a.running.version().get(),
            a.chap.version().get(),
            a.acl_enabled.version().get(),
            a.add_target.version().get(),
            a.remove_target.version().get(),
            a.attach.version().get(),
            a.detach.version().get(),
            a.add_acl.version().get(),
            a.update_acl.version().get(),
            a.delete_acl.version().get(),
        )
    };
    let group = Resource::new(move || (name(), version()), |(n, _)| get_group(n));
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(())) = a.delete.value().get() {
            navigate("/target-groups", Default::default());
        }
    });

    view! {
        <Title text=move || format!("Target group {}", name())/>
        <ActionError value=a.running.value()/>
        <ActionError value=a.remove_target.value()/>
        <ActionError value=a.detach.value()/>
        <ActionError value=a.delete_acl.value()/>
        <ActionError value=a.update_acl.value()/>
        <ActionError value=a.acl_enabled.value()/>
        <ActionError value=a.delete.value()/>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match group.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(g) => view! { <GroupView g a/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn GroupView(g: TargetGroupView, a: GroupActions) -> impl IntoView {
    let writer = can_change();
    let name = g.name.clone();
    let running = g.state == "running";
    let state_badge = if running {
        view! { <Badge kind="ok" text="running"/> }
    } else {
        view! { <Badge kind="muted" text="stopped"/> }
    };
    let toggle_name = name.clone();
    let delete_name = name.clone();
    let has_luns = !g.luns.is_empty();
    view! {
        <div class="page-head page-head-row">
            <div>
                <h1>{name.clone()} " " {state_badge}</h1>
                <p class="muted">"Created " {format::timestamp(&g.created_at)}</p>
            </div>
            {writer.then(move || view! {
                <div class="row-actions">
                    <button class="btn" on:click=move |_| { a.running.dispatch(SetGroupRunning { name: toggle_name.clone(), running: !running }); }>
                        {if running { "Stop" } else { "Start" }}
                    </button>
                    <button class="btn btn-danger" on:click=move |_| {
                        let q = if has_luns { format!("{delete_name} has LUNs attached. Detach them and delete the group?") } else { format!("Delete the target group {delete_name}?") };
                        if window().confirm_with_message(&q).unwrap_or(false) {
                            a.delete.dispatch(DeleteGroup { name: delete_name.clone(), force: has_luns });
                        }
                    }>"Delete group"</button>
                </div>
            })}
        </div>

        <section class="card">
            <h2>"Targets and portals"</h2>
            <div class="table-wrap"><table class="table" data-testid="targets-table">
                <thead><tr><th>"Node"</th><th>"IQN"</th><th>"Portals"</th><th>"TPG"</th><th>"Path state per LUN"</th><th class="actions-col"></th></tr></thead>
                <tbody>{g.targets.iter().map(|t| {
                    let iqn = t.iqn.clone();
                    let group = name.clone();
                    let states = if t.paths.is_empty() { view! { <span class="muted">"—"</span> }.into_any() } else {
                        t.paths.iter().map(|p| {
                            let kind = if p.state == PathState::ActiveOptimized { "ok" } else { "muted" };
                            view! { <span class="path-state">"LUN " {p.lun} " " <Badge kind=kind text=p.state.label()/></span> }
                        }).collect_view().into_any()
                    };
                    view! {
                        <tr>
                            <td>{t.node.clone()}</td>
                            <td><code>{t.iqn.clone()}</code></td>
                            <td>{t.portals.join(", ")}</td>
                            <td>{t.tpg}</td>
                            <td>{states}</td>
                            <td class="actions-col">{writer.then(move || view! {
                                <button class="btn btn-small btn-danger" on:click=move |_| {
                                    if window().confirm_with_message(&format!("Remove the target {iqn}? Initiators using it lose this path.")).unwrap_or(false) {
                                        a.remove_target.dispatch(RemoveTarget { group: group.clone(), iqn: iqn.clone(), force: true });
                                    }
                                }>"Remove"</button>
                            })}</td>
                        </tr>
                    }
                }).collect_view()}</tbody>
            </table></div>
            {writer.then({ let name = name.clone(); move || view! {
                <JsonForm action=a.add_target attr:class="form form-row">
                    <input type="hidden" name="group" value=name.clone()/>
                    <label>"Node"<input type="text" name="node" required/></label>
                    <label>"Portals"<input type="text" name="portals" placeholder="ip:3260" required/></label>
                    <label>"IQN suffix"<input type="text" name="iqn_suffix" placeholder="default: <group>.<node>"/></label>
                    <button type="submit" class="btn">"Add target"</button>
                </JsonForm>
                <ActionError value=a.add_target.value()/>
            }})}
        </section>

        <section class="card">
            <h2>"LUNs"</h2>
            {if g.luns.is_empty() { view! { <p class="empty">"No LUNs attached."</p> }.into_any() } else { view! {
                <div class="table-wrap"><table class="table" data-testid="luns-table">
                    <thead><tr><th>"LUN"</th><th>"Volume"</th><th>"Size"</th><th class="actions-col"></th></tr></thead>
                    <tbody>{g.luns.iter().map(|l| {
                        let group = name.clone();
                        let lun = l.lun;
                        view! {
                            <tr data-lun=l.lun>
                                <td>{l.lun}</td><td>{l.volume.clone()}</td><td>{format_size(l.size)}</td>
                                <td class="actions-col">{writer.then(move || view! {
                                    <button class="btn btn-small btn-danger" on:click=move |_| {
                                        if window().confirm_with_message(&format!("Detach LUN {lun}? Initiators lose access to it.")).unwrap_or(false) {
                                            a.detach.dispatch(DetachLun { group: group.clone(), lun });
                                        }
                                    }>"Detach"</button>
                                })}</td>
                            </tr>
                        }
                    }).collect_view()}</tbody>
                </table></div>
            }.into_any() }}
            {writer.then({ let name = name.clone(); move || view! {
                <JsonForm action=a.attach attr:class="form form-row" attr:id="attach-lun">
                    <input type="hidden" name="group" value=name.clone()/>
                    <label>"Volume"<input type="text" name="volume" required/>
                        <FieldMessage value=a.attach.value() field="volume"/></label>
                    <label>"LUN id (empty: next free)"<input type="text" name="lun" size="4"/>
                        <FieldMessage value=a.attach.value() field="lun"/></label>
                    <button type="submit" class="btn btn-primary">"Attach"</button>
                </JsonForm>
                <ActionError value=a.attach.value()/>
            }})}
        </section>

        <section class="card">
            <h2>"CHAP"</h2>
            <p>"Mode: " <strong data-testid="chap-mode">{g.chap.mode.as_str()}</strong>
                {g.chap.user.clone().map(|u| view! { " · user " <strong>{u}</strong> })}
                {g.chap.mutual_user.clone().map(|u| view! { " · target answers as " <strong>{u}</strong> })}</p>
            {writer.then({ let name = name.clone(); move || view! {
                <JsonForm action=a.chap attr:class="form form-row" attr:id="set-chap">
                    <input type="hidden" name="group" value=name.clone()/>
                    <label>"Mode"<select name="chap_mode">
                        <option value="none">"none"</option><option value="one-way">"one-way"</option><option value="mutual">"mutual"</option>
                    </select></label>
                    <label>"CHAP user"<input type="text" name="chap_user"/>
                        <FieldMessage value=a.chap.value() field="chap.user"/></label>
                    <label>"Mutual user"<input type="text" name="mutual_user"/>
                        <FieldMessage value=a.chap.value() field="chap.mutual_user"/></label>
                    <button type="submit" class="btn">"Set CHAP"</button>
                </JsonForm>
                <ActionError value=a.chap.value()/>
            }})}
        </section>

        <section class="card">
            <h2>"Access control " {if g.acl_enabled { view! { <Badge kind="ok" text="on"/> } } else { view! { <Badge kind="muted" text="off — every initiator may log in"/> } }}</h2>
            {writer.then(|| {
                let group = name.clone();
                let enabled = g.acl_enabled;
                view! {
                    <button class="btn btn-small" on:click=move |_| { a.acl_enabled.dispatch(SetGroupAcl { group: group.clone(), enabled: !enabled }); }>
                        {if enabled { "Turn ACL off" } else { "Turn ACL on" }}
                    </button>
                }
            })}
            <div class="table-wrap"><table class="table" data-testid="acl-table">
                <thead><tr><th>"Initiator"</th><th>"Alias"</th><th>"LUNs"</th><th class="actions-col"></th></tr></thead>
                <tbody>{g.acl.iter().map(|r| {
                    let group = name.clone();
                    let initiator = r.initiator.clone();
                    view! {
                        <tr>
                            <td><code>{r.initiator.clone()}</code></td>
                            <td>{r.alias.clone().unwrap_or_default()}</td>
                            <td>{
                                let shown = r.luns.as_ref().map(|l| l.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
                                let (group, initiator) = (group.clone(), initiator.clone());
                                if writer {
                                    view! {
                                        <JsonForm action=a.update_acl attr:class="form inline-form">
                                            <input type="hidden" name="group" value=group.clone()/>
                                            <input type="hidden" name="initiator" value=initiator.clone()/>
                                            <input type="text" name="luns" value=shown.unwrap_or_default() placeholder="all" size="8" aria-label="Allowed LUNs"/>
                                            <button type="submit" class="btn btn-small">"Set LUNs"</button>
                                        </JsonForm>
                                    }.into_any()
                                } else {
                                    view! { <span>{shown.unwrap_or_else(|| "all".into())}</span> }.into_any()
                                }
                            }</td>
                            <td class="actions-col">{writer.then(move || view! {
                                <button class="btn btn-small btn-danger" on:click=move |_| {
                                    if window().confirm_with_message(&format!("Remove the rule for {initiator}?")).unwrap_or(false) {
                                        a.delete_acl.dispatch(DeleteAclRule { group: group.clone(), initiator: initiator.clone() });
                                    }
                                }>"Remove"</button>
                            })}</td>
                        </tr>
                    }
                }).collect_view()}</tbody>
            </table></div>
            {writer.then({ let name = name.clone(); move || view! {
                <JsonForm action=a.add_acl attr:class="form form-row">
                    <input type="hidden" name="group" value=name.clone()/>
                    <label>"Initiator IQN"<input type="text" name="initiator" required/>
                        <FieldMessage value=a.add_acl.value() field="initiator"/></label>
                    <label>"Alias"<input type="text" name="alias"/></label>
                    <label>"LUNs (empty: all)"<input type="text" name="luns" placeholder="0, 1"/>
                        <FieldMessage value=a.add_acl.value() field="luns"/></label>
                    <button type="submit" class="btn">"Add rule"</button>
                </JsonForm>
                <ActionError value=a.add_acl.value()/>
            }})}
        </section>

        <section class="card">
            <h2>"Activity per LUN"</h2>
            {if g.luns.is_empty() { view! { <p class="empty">"No LUNs attached."</p> }.into_any() } else {
                g.luns.iter().map(|l| view! {
                    <h3 class="small">"LUN " {l.lun} " · " {l.volume.clone()}</h3>
                    <LiveActivity volume=l.volume.clone()/>
                }).collect_view().into_any()
            }}
        </section>

        <Connections group=name.clone()/>
    }
}

/// Live sessions, refreshed every five seconds without reloading the page.
#[component]
fn Connections(group: String) -> impl IntoView {
    let tick = use_ticker(5);
    let conns = Resource::new(move || (group.clone(), tick.get()), |(g, _)| group_connections(g));
    view! {
        <section class="card">
            <h2>"Connections"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match conns.await {
                        Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="empty">"No initiator is connected."</p> }.into_any(),
                        Ok(list) => view! {
                            <div class="table-wrap"><table class="table" data-testid="connections-table">
                                <thead><tr><th>"Initiator"</th><th>"Address"</th><th>"Target"</th><th>"Portal"</th><th>"Since"</th></tr></thead>
                                <tbody>{list.into_iter().map(|c| view! {
                                    <tr><td><code>{c.initiator}</code></td><td>{c.address}</td><td><code>{c.target}</code></td><td>{c.portal}</td><td class="nowrap">{format::timestamp(&c.since)}</td></tr>
                                }).collect_view()}</tbody>
                            </table></div>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}
