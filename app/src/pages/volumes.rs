//! Volumes: create, grow, set limits and the write-cache policy, delete;
//! for a replicated volume, move its Active/Optimized path to another node
//! and choose whether it fails back; each volume's timeline of moves.

use leptos::prelude::*;
use leptos_meta::Title;

use super::reservations::ReservationsCard;
use crate::chart::LiveActivity;
use crate::components::{saves, ActionError, Badge, ErrorBanner, FieldMessage, JsonForm};
use crate::format;
use crate::model::storage::{format_size, VolumeCopy, VolumeMove, VolumeView, VolumesPageData, WriteCache};
use crate::model::{Me, Role};
use crate::storage_fns::{
    get_volume_moves, get_volumes_page, CreateVolume, DeleteVolume, MovePrimary, SetAutoFailback, UpdateVolume,
};

/// Whether the current user may change storage objects (the server checks again).
pub fn can_change() -> bool {
    use_context::<Me>().is_some_and(|m| m.role.allows(Role::Operator))
}

#[component]
pub fn VolumesPage() -> impl IntoView {
    let create = ServerAction::<CreateVolume>::new();
    let update = ServerAction::<UpdateVolume>::new();
    let delete = ServerAction::<DeleteVolume>::new();
    let paths =
        PathActions { move_primary: ServerAction::new(), failback: ServerAction::new(), open: RwSignal::new(None) };
    let (moved, failback_set) = (saves(paths.move_primary), saves(paths.failback));
    let page = Resource::new(
        move || {
            (create.version().get(), update.version().get(), delete.version().get(), moved.get(), failback_set.get())
        },
        |_| get_volumes_page(),
    );
    let editing = RwSignal::new(None::<String>);
    let writer = can_change();

    view! {
        <Title text="Volumes"/>
        <div class="page-head">
            <h1>"Volumes"</h1>
            <p class="muted">"Block devices with their own redundancy, exported as LUNs of a target group."</p>
        </div>
        <ActionError value=delete.value()/>
        <ActionError value=update.value()/>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(VolumesPageData { volumes, nodes }) => view! {
                        <VolumeList list=volumes writer update delete editing paths/>
                        {writer.then(|| view! { <NewVolumeForm create nodes/> })}
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn VolumeList(
    list: Vec<VolumeView>,
    writer: bool,
    update: ServerAction<UpdateVolume>,
    delete: ServerAction<DeleteVolume>,
    editing: RwSignal<Option<String>>,
    paths: PathActions,
) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="empty">"No volumes yet."</p> }.into_any();
    }
    let charts: Vec<String> = list.iter().map(|v| v.name.clone()).collect();
    view! {
        <div class="table-wrap">
            <table class="table" data-testid="volumes-table">
                <thead><tr>
                    <th>"Name"</th><th>"Size"</th><th>"Block"</th><th>"State"</th><th>"Node"</th><th>"Attached to"</th>
                    <th>"Write cache"</th><th>"Limits"</th><th>"WWN"</th><th class="actions-col"></th>
                </tr></thead>
                <tbody>
                    {list.into_iter().map(|v| view! { <VolumeRow v writer update delete editing paths/> }).collect_view()}
                </tbody>
            </table>
        </div>
        <ReservationsCard/>
        <section class="card">
            <h2>"Activity"</h2>
            {charts.into_iter().map(|name| view! {
                <h3 class="small">{name.clone()}</h3>
                <LiveActivity volume=name/>
            }).collect_view()}
        </section>
    }
    .into_any()
}

/// The new-volume form; the node is the cluster's choice unless one is picked.
#[component]
fn NewVolumeForm(create: ServerAction<CreateVolume>, nodes: Vec<String>) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"New volume"</h2>
            <JsonForm action=create attr:class="form form-grid" attr:id="create-volume">
                <label>"Name"<input type="text" name="name" required maxlength="63" placeholder="vol1"/>
                    <FieldMessage value=create.value() field="name"/></label>
                <label>"Size"<input type="text" name="size" required placeholder="1GiB"/>
                    <FieldMessage value=create.value() field="size"/></label>
                <label>"Block size"
                    <select name="block_size"><option value="512">"512 bytes"</option><option value="4096">"4096 bytes"</option></select>
                    <FieldMessage value=create.value() field="block_size"/></label>
                <label>"Node"
                    <select name="node" aria-label="Node">
                        <option value="">"automatic: the online node with the most room"</option>
                        {nodes.into_iter().map(|n| view! { <option value=n.clone()>{n.clone()}</option> }).collect_view()}
                    </select>
                    <FieldMessage value=create.value() field="node"/></label>
                <label>"Copies"
                    <select name="replicas" aria-label="Copies">
                        <option value="1">"1: on one node"</option>
                        <option value="2">"2: written synchronously to two nodes"</option>
                        <option value="3">"3: written synchronously to three nodes"</option>
                    </select>
                    <FieldMessage value=create.value() field="replicas"/></label>
                <WriteCacheChoice current=None/>
                <FieldMessage value=create.value() field="write_cache"/>
                <div class="form-actions"><button type="submit" class="btn btn-primary">"Create volume"</button></div>
            </JsonForm>
            <ActionError value=create.value()/>
        </section>
    }
}

#[component]
fn VolumeRow(
    v: VolumeView,
    writer: bool,
    update: ServerAction<UpdateVolume>,
    delete: ServerAction<DeleteVolume>,
    editing: RwSignal<Option<String>>,
    paths: PathActions,
) -> impl IntoView {
    let name = v.name.clone();
    let attached = match (&v.attached_to, v.lun) {
        (Some(g), Some(l)) => view! { <a href=format!("/target-groups/{g}")>{g.clone()}</a> " · LUN " {l} }.into_any(),
        _ => view! { <span class="muted">"—"</span> }.into_any(),
    };
    let limits = match (v.iops_limit, v.mbps_limit) {
        (None, None) => "none".to_string(),
        (i, m) => format!(
            "{} · {}",
            i.map(|i| format!("{i} IOPS")).unwrap_or_else(|| "— IOPS".into()),
            m.map(|m| format!("{m} MB/s")).unwrap_or_else(|| "— MB/s".into())
        ),
    };
    let state_kind = if v.state == "healthy" { "ok" } else { "warn" };
    let open_name = name.clone();
    let is_open = {
        let name = name.clone();
        move || editing.get().as_deref() == Some(name.as_str())
    };
    let delete_name = name.clone();
    let form_name = name.clone();
    let copies = 1 + v.copies.len() as u8;
    let details_name = name.clone();
    let showing = {
        let name = name.clone();
        move || paths.open.get().as_deref() == Some(name.as_str())
    };
    let details = v.clone();
    view! {
        <tr data-volume=name.clone()>
            <td><strong>{name.clone()}</strong><div class="muted small">"since " {format::timestamp(&v.created_at)}</div></td>
            <td class="nowrap">{format_size(v.size)}</td>
            <td>{v.block_size}</td>
            <td><Badge kind=state_kind text=v.state.clone()/></td>
            <td data-testid="volume-node">
                {v.node.clone()}
                {(!v.copies.is_empty()).then(|| view! { <span class="muted small">" (primary)"</span> })}
                {v.copies.iter().map(|c| view! { <CopyLine copy=c.clone()/> }).collect_view()}
            </td>
            <td>{attached}</td>
            <td class="nowrap" data-testid="write-cache">
                {v.write_cache.as_str()}
                <div class="muted small">{match v.wce {
                    Some(true) => "initiators see WCE on",
                    Some(false) => "initiators see WCE off",
                    None => "not served",
                }}</div>
            </td>
            <td class="nowrap">{limits}</td>
            <td><code class="small">{v.wwn.clone()}</code></td>
            <td class="actions-col">
                <div class="row-actions">
                    <button class="btn btn-small" aria-expanded={
                        let showing = showing.clone();
                        move || showing().to_string()
                    } on:click=move |_| paths.toggle(&details_name)>
                        "Paths and failover"
                    </button>
                    {writer.then(|| view! {
                        <button class="btn btn-small" on:click=move |_| editing.set(Some(open_name.clone()))>"Grow / limits / copies"</button>
                        <button class="btn btn-small btn-danger" on:click=move |_| {
                            let q = format!("Delete the volume {delete_name} and all its data?");
                            if window().confirm_with_message(&q).unwrap_or(false) {
                                delete.dispatch(DeleteVolume { name: delete_name.clone() });
                            }
                        }>"Delete"</button>
                    })}
                </div>
                {writer.then(|| view! {
                    <Show when=is_open.clone()>
                        {
                            let n = form_name.clone();
                            view! {
                                <JsonForm action=update attr:class="form inline-form">
                                    <input type="hidden" name="name" value=n/>
                                    <input type="text" name="size" placeholder="new size, e.g. 2GiB" aria-label="New size"/>
                                    <input type="text" name="iops_limit" placeholder="IOPS limit" aria-label="IOPS limit" size="8"/>
                                    <input type="text" name="mbps_limit" placeholder="MB/s limit" aria-label="MB/s limit" size="8"/>
                                    <WriteCacheChoice current=Some(v.write_cache)/>
                                    <select name="replicas" aria-label="Copies">
                                        {(1..=3u8).map(|n| view! {
                                            <option value=n.to_string() selected=n == copies>{format!("{n} {}", if n == 1 { "copy" } else { "copies" })}</option>
                                        }).collect_view()}
                                    </select>
                                    <button type="submit" class="btn btn-small btn-primary">"Apply"</button>
                                    <button type="button" class="btn btn-small btn-ghost" on:click=move |_| editing.set(None)>"Close"</button>
                                    <FieldMessage value=update.value() field="size"/>
                                    <FieldMessage value=update.value() field="replicas"/>
                                </JsonForm>
                            }
                        }
                    </Show>
                })}
            </td>
        </tr>
        {move || showing().then(|| view! {
            <tr data-volume-details=details.name.clone()>
                <td colspan="10"><VolumePaths v=details.clone() writer paths/></td>
            </tr>
        })}
    }
    .into_any()
}

/// The path actions of the page, and whose panel is open: at page level,
/// so that the answer to a move outlives the reload it causes.
#[derive(Clone, Copy)]
struct PathActions {
    move_primary: ServerAction<MovePrimary>,
    failback: ServerAction<SetAutoFailback>,
    /// The volume whose paths and timeline are shown.
    open: RwSignal<Option<String>>,
}

impl PathActions {
    /// Opens the panel of `volume`, or closes it; an answer about another
    /// volume is not shown there.
    fn toggle(&self, volume: &str) {
        let open = self.open.get_untracked().as_deref() != Some(volume);
        self.move_primary.value().set(None);
        self.failback.value().set(None);
        self.open.set(open.then(|| volume.to_string()));
    }
}

/// A volume's paths: where its primary (the Active/Optimized path of its
/// LUN) is, where it fails back to, the move to another in-sync copy's
/// node, and its timeline of moves.
#[component]
fn VolumePaths(v: VolumeView, writer: bool, paths: PathActions) -> impl IntoView {
    let name = v.name.clone();
    let moves = Resource::new(
        {
            let name = name.clone();
            move || name.clone()
        },
        get_volume_moves,
    );
    let timeline = view! {
        <h3 class="small">"Timeline"</h3>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match moves.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(list) => view! {
                        <MoveTimeline moves=list with_volume=false empty="Its primary has not moved: no failover, switchover or failback yet."/>
                    }.into_any(),
                }
            })}
        </Transition>
    };
    if v.copies.is_empty() {
        return view! {
            <div class="volume-paths" data-testid="volume-paths">
                <p class="muted" data-testid="paths-state">
                    "One copy, on " {v.node.clone()} ": its path cannot move to another node. "
                    "With two or three copies (Grow / limits / copies), it fails over when its node goes offline."
                </p>
                {timeline}
            </div>
        }
        .into_any();
    }
    // The nodes a switchover may go to: those keeping a copy in sync.
    let targets: Vec<String> =
        v.copies.iter().filter(|c| c.in_sync && c.node != v.node).map(|c| c.node.clone()).collect();
    let auto = v.auto_failback;
    view! {
        <div class="volume-paths" data-testid="volume-paths">
            <p data-testid="paths-state">
                "Primary (Active/Optimized path): " <strong>{v.node.clone()}</strong>
                " · preferred node: " <strong>{v.preferred_node.clone().unwrap_or_else(|| "none".into())}</strong>
                " · automatic failback: " <strong>{if auto { "on" } else { "off" }}</strong>
            </p>
            <p class="muted small">
                "With automatic failback on, the primary returns to the preferred node once that node has been \
                 online with its copy in sync for a while."
            </p>
            {writer.then(|| view! { <MoveForm name=name.clone() targets paths/> })}
            {writer.then(|| {
                let name = name.clone();
                view! {
                    <div class="form-row">
                        <button class="btn btn-small" disabled=move || paths.failback.pending().get() on:click=move |_| {
                            paths.failback.dispatch(SetAutoFailback { name: name.clone(), on: !auto });
                        }>{if auto { "Turn automatic failback off" } else { "Turn automatic failback on" }}</button>
                    </div>
                    {move || paths.failback.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBanner error=e/> })}
                }
            })}
            {timeline}
        </div>
    }
    .into_any()
}

/// The move of a volume's primary to a node with an in-sync copy, asked
/// for after a confirmation; says how it went.
#[component]
fn MoveForm(name: String, targets: Vec<String>, paths: PathActions) -> impl IntoView {
    let outcome = move || {
        paths.move_primary.value().get().map(|r| match r {
            Ok(node) => view! {
                <div class="banner banner-ok" role="status">
                    "Switchover done: " {node} " holds the primary now, and its path is Active/Optimized."
                </div>
            }
            .into_any(),
            Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
        })
    };
    if targets.is_empty() {
        return view! {
            <p class="muted" data-testid="no-move">"No other node keeps a copy in sync now: the path cannot move."</p>
            {outcome}
        }
        .into_any();
    }
    let chosen = RwSignal::new(targets[0].clone());
    let pending = paths.move_primary.pending();
    view! {
        <div class="form form-row" data-testid="move-primary">
            <label>"Move the Active/Optimized path to"
                <select name="node" aria-label="Move the path to" on:change=move |ev| chosen.set(event_target_value(&ev))>
                    {targets.into_iter().map(|n| view! { <option value=n.clone()>{n.clone()}</option> }).collect_view()}
                </select>
            </label>
            <button class="btn" disabled=move || pending.get() on:click=move |_| {
                let node = chosen.get_untracked();
                let q = format!(
                    "Move the primary of {name} to {node}? Its path there becomes Active/Optimized; \
                     initiators retry what is in flight on it."
                );
                if window().confirm_with_message(&q).unwrap_or(false) {
                    paths.move_primary.dispatch(MovePrimary { name: name.clone(), node });
                }
            }>{move || if pending.get() { "Moving…" } else { "Move path" }}</button>
        </div>
        {outcome}
    }
    .into_any()
}

/// How long a move held I/O, as the timeline shows it.
fn held(ms: Option<u64>) -> String {
    match ms {
        None => "—".to_string(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// Moves of primaries, newest first: a volume's, or (`with_volume`) those
/// of a group's volumes.
#[component]
pub(super) fn MoveTimeline(moves: Vec<VolumeMove>, with_volume: bool, empty: &'static str) -> impl IntoView {
    if moves.is_empty() {
        return view! { <p class="empty" data-testid="moves-empty">{empty}</p> }.into_any();
    }
    view! {
        <div class="table-wrap"><table class="table" data-testid="moves-table">
            <thead><tr>
                <th>"When"</th>{with_volume.then(|| view! { <th>"Volume"</th> })}<th>"Kind"</th><th>"From → to"</th><th>"I/O held"</th><th>"Cause"</th>
            </tr></thead>
            <tbody>{moves.into_iter().map(|m| {
                let kind = match m.kind.as_str() {
                    "failover" => "warn",
                    "failback" => "ok",
                    _ => "muted",
                };
                view! {
                    <tr>
                        <td class="nowrap">{format::timestamp(&m.at)}</td>
                        {with_volume.then(|| view! { <td>{m.volume.clone()}</td> })}
                        <td><Badge kind text=m.kind.clone()/></td>
                        <td class="nowrap">{m.from_node.clone()} " → " {m.to_node.clone()}
                            <div class="muted small">"epoch " {m.epoch}</div></td>
                        <td class="nowrap">{held(m.held_ms)}</td>
                        <td>{m.cause.clone()}</td>
                    </tr>
                }
            }).collect_view()}</tbody>
        </table></div>
    }
    .into_any()
}

/// One other copy of a replicated volume: its node, and how it stands.
#[component]
fn CopyLine(copy: VolumeCopy) -> impl IntoView {
    let how = match (copy.link.as_deref(), copy.in_sync) {
        (Some("resyncing" | "catching-up"), _) if copy.copied_bytes + copy.left_bytes > 0 => format!(
            "resyncing: {} of {} copied, {}/s",
            format_size(copy.copied_bytes),
            format_size(copy.copied_bytes + copy.left_bytes),
            format_size(copy.resync_rate)
        ),
        (Some(link), _) => link.replace('-', " "),
        (None, true) => "in sync".into(),
        (None, false) => "out of sync".into(),
    };
    view! {
        <div class="small" data-testid="volume-copy" data-node=copy.node.clone()>
            {copy.node.clone()} <span class="muted">" · " {how}</span>
        </div>
    }
}

/// The write-cache policy as a choice, with what each costs on a power cut
/// and a warning while write-back is chosen. With `current`, the choice
/// starts there (a change applies live; initiators are told).
#[component]
fn WriteCacheChoice(current: Option<WriteCache>) -> impl IntoView {
    let chosen = RwSignal::new(current.unwrap_or_default());
    view! {
        <label>"Write cache"
            <select name="write_cache" aria-label="Write cache" on:change=move |ev| {
                if let Some(w) = WriteCache::parse(&event_target_value(&ev)) {
                    chosen.set(w);
                }
            }>
                {WriteCache::ALL.into_iter().map(|w| view! {
                    <option value=w.as_str() selected=move || chosen.get() == w>{w.as_str()}</option>
                }).collect_view()}
            </select>
            <span class="muted small">{move || chosen.get().meaning()}</span>
            <Show when=move || chosen.get() == WriteCache::WriteBack>
                <span class="banner banner-warn small" role="note">
                    "Write-back: only for initiators that flush (Linux, Windows) or hardware with power protection. \
                     VMware ESXi does not flush: a power cut loses writes it was told were done."
                </span>
            </Show>
        </label>
    }
}
