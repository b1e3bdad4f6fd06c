//! One target group: its targets and portals, the path state of each LUN on
//! each target (read again every 3 s), attached LUNs, CHAP, session
//! parameters, privileges, ACL rules (`group_acl`), the timeline of its LUNs'
//! path moves, and live connections.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map};

use super::chap_fields::ChapFields;
use super::connect_host::ConnectHost;
use super::group_acl::AclSection;
use super::group_settings::{PrivilegesSection, SessionSection};
use super::volumes::{can_change, MoveTimeline};
use crate::chart::{use_ticker, LiveActivity};
use crate::components::{saves, ActionError, Badge, ErrorBanner, FieldMessage, JsonForm};
use crate::error::ApiError;
use crate::format;
use crate::iscsi_fns::{SetAclAccess, SetGroupPrivileges, SetGroupSession};
use crate::model::storage::{format_size, GroupPageData, OtherPaths, PathState, PathView, TargetPaths, TargetView};
use crate::storage_fns::*;

#[derive(Clone, Copy)]
pub(super) struct GroupActions {
    pub running: ServerAction<SetGroupRunning>,
    pub chap: ServerAction<SetGroupChap>,
    pub acl_enabled: ServerAction<SetGroupAcl>,
    pub other_paths: ServerAction<SetGroupOtherPaths>,
    pub add_target: ServerAction<AddTarget>,
    pub remove_target: ServerAction<RemoveTarget>,
    pub attach: ServerAction<AttachLun>,
    pub detach: ServerAction<DetachLun>,
    pub add_acl: ServerAction<AddAclRule>,
    pub update_acl: ServerAction<UpdateAclRule>,
    pub acl_access: ServerAction<SetAclAccess>,
    pub delete_acl: ServerAction<DeleteAclRule>,
    pub session: ServerAction<SetGroupSession>,
    pub privileges: ServerAction<SetGroupPrivileges>,
    pub delete: ServerAction<DeleteGroup>,
}

impl GroupActions {
    /// Changes after each change to the group that went through.
    fn saved(&self) -> impl Fn() -> usize + Copy + Send + Sync + 'static {
        let saves = [
            saves(self.running),
            saves(self.chap),
            saves(self.acl_enabled),
            saves(self.other_paths),
            saves(self.add_target),
            saves(self.remove_target),
            saves(self.attach),
            saves(self.detach),
            saves(self.add_acl),
            saves(self.update_acl),
            saves(self.acl_access),
            saves(self.delete_acl),
            saves(self.session),
            saves(self.privileges),
        ];
        move || saves.iter().map(|m| m.get()).sum()
    }
}

#[component]
pub fn GroupPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let a = GroupActions {
        running: ServerAction::new(),
        chap: ServerAction::new(),
        acl_enabled: ServerAction::new(),
        other_paths: ServerAction::new(),
        add_target: ServerAction::new(),
        remove_target: ServerAction::new(),
        attach: ServerAction::new(),
        detach: ServerAction::new(),
        add_acl: ServerAction::new(),
        update_acl: ServerAction::new(),
        acl_access: ServerAction::new(),
        delete_acl: ServerAction::new(),
        session: ServerAction::new(),
        privileges: ServerAction::new(),
        delete: ServerAction::new(),
    };
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
        <GroupLoaded a/>
    }
}

/// The group, reloaded after each change that went through.
#[component]
fn GroupLoaded(a: GroupActions) -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let saved = a.saved();
    let group = Resource::new(move || (name(), saved()), |(n, _)| get_group_page(n));
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match group.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(data) => view! { <GroupView data a/> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// A portal for an address: IPv6 in brackets, the iSCSI port.
fn portal_of(address: &str) -> String {
    if address.contains(':') {
        format!("[{address}]:3260")
    } else {
        format!("{address}:3260")
    }
}

#[component]
fn GroupView(data: GroupPageData, a: GroupActions) -> impl IntoView {
    let GroupPageData { group: g, chap_users: users, nodes, free_volumes } = data;
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
    let live = live_paths(name.clone(), &g.targets);
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
                    view! {
                        <tr>
                            <td>{t.node.clone()}</td>
                            <td><code>{t.iqn.clone()}</code></td>
                            <td>{t.portals.join(", ")}</td>
                            <td>{t.tpg}</td>
                            <td data-testid="path-states"><LivePathStates live iqn=t.iqn.clone() paths=t.paths.clone()/></td>
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
            <LivePathsNote live/>
            <OtherPathsSetting group=name.clone() current=g.other_paths writer a/>
            {writer.then({ let name = name.clone(); move || view! {
                <JsonForm action=a.add_target attr:class="form form-row">
                    <input type="hidden" name="group" value=name.clone()/>
                    <label>"Node"<select name="node" required>
                        {nodes.iter().map(|n| view! { <option value=n.name.clone()>{n.name.clone()}</option> }).collect_view()}
                    </select></label>
                    <label>"Portals"<input type="text" name="portals" placeholder="ip:3260" list="portal-choices" required/></label>
                    <datalist id="portal-choices">
                        {nodes.iter().flat_map(|n| n.iscsi_addresses.iter().map(move |ip| {
                            let portal = portal_of(ip);
                            view! { <option value=portal.clone() label=format!("{portal} on {}", n.name)></option> }
                        })).collect_view()}
                    </datalist>
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
                    <label>"Volume"<select name="volume" required disabled=free_volumes.is_empty()>
                        {if free_volumes.is_empty() {
                            view! { <option value="">"No unattached volume"</option> }.into_any()
                        } else {
                            free_volumes.iter().map(|v| view! { <option value=v.clone()>{v.clone()}</option> }).collect_view().into_any()
                        }}
                    </select>
                        <FieldMessage value=a.attach.value() field="volume"/></label>
                    <label>"LUN id (empty: next free)"<input type="text" name="lun" size="4"/>
                        <FieldMessage value=a.attach.value() field="lun"/></label>
                    <button type="submit" class="btn btn-primary" disabled=free_volumes.is_empty()>"Attach"</button>
                </JsonForm>
                <ActionError value=a.attach.value()/>
            }})}
        </section>

        <section class="card">
            <h2>"CHAP"</h2>
            <p>"Mode: " <strong data-testid="chap-mode">{g.chap.mode.as_str()}</strong>
                {g.chap.user.clone().map(|u| view! { " · user " <strong>{u}</strong> })}
                {g.chap.mutual_user.clone().map(|u| view! { " · target answers as " <strong>{u}</strong> })}</p>
            {writer.then({ let (name, chap, users) = (name.clone(), g.chap.clone(), users.clone()); move || view! {
                <JsonForm action=a.chap attr:class="form form-row" attr:id="set-chap">
                    <input type="hidden" name="group" value=name.clone()/>
                    <ChapFields value=a.chap.value() users=users.clone() current=Some(chap.clone())/>
                    <button type="submit" class="btn">"Set CHAP"</button>
                </JsonForm>
                <ActionError value=a.chap.value()/>
            }})}
        </section>

        <GroupMoves group=name.clone()/>

        <SessionSection group=name.clone() session=g.session.clone() a writer/>
        <PrivilegesSection group=name.clone() privileges=g.privileges.clone() a writer/>
        <AclSection g=g.clone() a users writer/>

        <section class="card">
            <h2>"Activity per LUN"</h2>
            {if g.luns.is_empty() { view! { <p class="empty">"No LUNs attached."</p> }.into_any() } else {
                g.luns.iter().map(|l| view! {
                    <h3 class="small">"LUN " {l.lun} " · " {l.volume.clone()}</h3>
                    <LiveActivity volume=l.volume.clone()/>
                }).collect_view().into_any()
            }}
        </section>

        <ConnectHost g=g.clone()/>
        <Connections group=name.clone()/>
    }
}

/// How often the path states are read again.
const PATH_REFRESH_SECONDS: u64 = 3;

/// The path states of the group's targets, read again every few seconds:
/// the cluster moves a LUN's Active/Optimized path on its own (failover,
/// switchover, failback). Until the first refresh, the states that came
/// with the page.
fn live_paths(group: String, targets: &[TargetView]) -> LivePaths {
    let loaded: Vec<TargetPaths> =
        targets.iter().map(|t| TargetPaths { iqn: t.iqn.clone(), paths: t.paths.clone() }).collect();
    let tick = use_ticker(PATH_REFRESH_SECONDS);
    Resource::new(
        move || (group.clone(), tick.get()),
        move |(g, tick)| {
            let loaded = loaded.clone();
            async move {
                if tick == 0 {
                    Ok(loaded)
                } else {
                    get_group_paths(g).await
                }
            }
        },
    )
}

type LivePaths = Resource<Result<Vec<TargetPaths>, ApiError>>;

/// One target's cell of path states: only it is drawn again on a refresh,
/// so that nothing else of the page (a form being filled in) is. A refresh
/// that fails leaves the states last read; the note under the table says so.
#[component]
fn LivePathStates(live: LivePaths, iqn: String, paths: Vec<PathView>) -> impl IntoView {
    let last = StoredValue::new(paths);
    view! {
        <Transition fallback=move || path_states(last.get_value())>
            {move || {
                let iqn = iqn.clone();
                Suspend::new(async move {
                    if let Ok(all) = live.await {
                        let now = all.into_iter().find(|t| t.iqn == iqn).map(|t| t.paths).unwrap_or_default();
                        last.set_value(now);
                    }
                    path_states(last.get_value())
                })
            }}
        </Transition>
    }
}

fn path_states(paths: Vec<PathView>) -> AnyView {
    if paths.is_empty() {
        return view! { <span class="muted">"—"</span> }.into_any();
    }
    paths
        .into_iter()
        .map(|p| {
            let kind = if p.state == PathState::ActiveOptimized { "ok" } else { "muted" };
            view! { <span class="path-state" data-lun=p.lun>"LUN " {p.lun} " " <Badge kind=kind text=p.state.label()/></span> }
        })
        .collect_view()
        .into_any()
}

/// The state of each LUN's paths other than its Active/Optimized one, and
/// (for operators) the form that changes it.
#[component]
fn OtherPathsSetting(group: String, current: OtherPaths, writer: bool, a: GroupActions) -> impl IntoView {
    let choice = move |o: OtherPaths| view! { <option value=o.as_str() selected=current == o>{o.label()}</option> };
    view! {
        <p data-testid="other-paths">"Other paths: " <strong>{current.label()}</strong>
            <span class="muted small">" — Standby paths refuse I/O until they take over; Active/Non-optimized paths serve it through the primary's node, for initiators that send I/O down every path."</span>
        </p>
        {writer.then(move || view! {
            <JsonForm action=a.other_paths attr:class="form form-row" attr:id="other-paths">
                <input type="hidden" name="group" value=group.clone()/>
                <label>"Other paths"<select name="other_paths">
                    {choice(OtherPaths::Standby)}
                    {choice(OtherPaths::ActiveNonOptimized)}
                </select></label>
                <button type="submit" class="btn">"Save"</button>
            </JsonForm>
            <ActionError value=a.other_paths.value()/>
        })}
    }
}

/// Says that the path states are live, or why the last refresh failed.
#[component]
fn LivePathsNote(live: LivePaths) -> impl IntoView {
    let every = format!("Path states refresh every {PATH_REFRESH_SECONDS} s.");
    view! {
        <Transition fallback={ let every = every.clone(); move || view! { <p class="muted small">{every.clone()}</p> } }>
            {move || {
                let every = every.clone();
                Suspend::new(async move {
                    match live.await {
                        Ok(_) => view! { <p class="muted small" data-testid="paths-live">{every}</p> }.into_any(),
                        Err(e) => view! {
                            <p class="muted small" data-testid="paths-live">"Path states could not be refreshed; shown as last read."</p>
                            <ErrorBanner error=e/>
                        }.into_any(),
                    }
                })
            }}
        </Transition>
    }
}

/// When the primary of a volume of the group, and with it the
/// Active/Optimized path of its LUN, moved to another node; refreshed every
/// ten seconds, as a failover or failback happens on its own.
#[component]
fn GroupMoves(group: String) -> impl IntoView {
    let tick = use_ticker(10);
    let moves = Resource::new(move || (group.clone(), tick.get()), |(g, _)| get_group_moves(g));
    view! {
        <section class="card" data-testid="group-moves">
            <h2>"Failover timeline"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match moves.await {
                        Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                        Ok(list) => view! {
                            <MoveTimeline moves=list with_volume=true empty="No LUN's path has moved: no failover, switchover or failback yet."/>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
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
