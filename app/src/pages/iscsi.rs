//! iSCSI settings of the whole cluster: CHAP on discovery sessions (with a
//! warning while discovery is open), and what SendTargets tells each
//! initiator.

use leptos::prelude::*;
use leptos_meta::Title;

use super::chap_fields::ChapFields;
use super::volumes::can_change;
use crate::components::{saves, ActionError, ErrorBanner, JsonForm};
use crate::iscsi_fns::{get_discovery_with_chap_users, SetDiscovery};
use crate::model::discovery::DiscoverySettings;

#[component]
pub fn IscsiPage() -> impl IntoView {
    let set = ServerAction::<SetDiscovery>::new();
    view! {
        <Title text="iSCSI settings"/>
        <div class="page-head">
            <h1>"iSCSI settings"</h1>
            <p class="muted">"These apply to every portal of every node; a change reaches new discovery sessions at once."</p>
        </div>
        <section class="card">
            <h2>"Discovery"</h2>
            <ActionError value=set.value()/>
            <Discovery set/>
        </section>
        <section class="card">
            <h2>"What discovery shows"</h2>
            <p>"A host that asks a portal for its targets (SendTargets) is told each target it may reach, with all of the target's portals:"</p>
            <ul>
                <li>"A target whose group has its ACL on is listed only to the initiators in that ACL; other hosts do not learn it exists."</li>
                <li>"A target whose group asks for CHAP is still listed, as RFC 7143 allows: the host must then log in to it with the group's CHAP secret (or its own, if its ACL rule has one)."</li>
                <li>"A target whose group has its ACL off is listed to every host that may open a discovery session."</li>
            </ul>
        </section>
    }
}

/// The discovery setting and its form.
#[component]
fn Discovery(set: ServerAction<SetDiscovery>) -> impl IntoView {
    let saved = saves(set);
    let discovery = Resource::new(move || saved.get(), |_| get_discovery_with_chap_users());
    let writer = can_change();
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match discovery.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok((d, users)) => {
                        let current = d.chap.clone();
                        view! {
                            <DiscoveryState d/>
                            {writer.then(|| view! {
                                <JsonForm action=set attr:class="form form-grid" attr:id="set-discovery">
                                    <ChapFields value=set.value() users=users.clone() current=Some(current.clone())/>
                                    <div class="form-actions"><button type="submit" class="btn btn-primary">"Save discovery CHAP"</button></div>
                                </JsonForm>
                            })}
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

#[component]
fn DiscoveryState(d: DiscoverySettings) -> impl IntoView {
    if d.is_open() {
        view! {
            <div class="banner banner-warn" role="alert" data-testid="discovery-open">
                <strong>"Discovery is open."</strong>
                " Any host that reaches a portal can open a discovery session and learn the names and portals of every target whose ACL is off or lets it in. Turn on CHAP so that only hosts that know the discovery secret can."
            </div>
        }
        .into_any()
    } else {
        let chap = d.chap;
        view! {
            <p data-testid="discovery-chap">"Discovery sessions need CHAP: "
                <strong>{chap.mode.as_str()}</strong>
                {chap.user.map(|u| view! { " · initiators log in as " <strong>{u}</strong> })}
                {chap.mutual_user.map(|u| view! { " · the target answers as " <strong>{u}</strong> })}</p>
        }
        .into_any()
    }
}
