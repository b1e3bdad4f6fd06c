//! The audit log of the whole cluster: who did what, through which node, when, newest first.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use crate::components::{Badge, ErrorBanner};
use crate::format;
use crate::model::AuditResult;
use crate::server_fns::get_audit;

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let page = move || query.read().get("page").and_then(|p| p.parse::<u32>().ok()).unwrap_or(1).max(1);
    let entries = Resource::new(page, get_audit);

    view! {
        <Title text="Audit log"/>
        <div class="page-head">
            <h1>"Audit log"</h1>
            <p class="muted">"Every change and every login, newest first."</p>
        </div>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match entries.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(p) => {
                        let pages = p.total.div_ceil(u64::from(p.per_page)).max(1) as u32;
                        view! {
                            <div class="table-wrap">
                                <table class="table" data-testid="audit-table">
                                    <thead>
                                        <tr><th>"Time"</th><th>"User"</th><th>"Action"</th><th>"Object"</th><th>"Result"</th><th>"Node"</th><th>"From"</th><th>"Detail"</th></tr>
                                    </thead>
                                    <tbody>
                                        {p.entries.into_iter().map(|e| {
                                            let badge = match e.result {
                                                AuditResult::Success => view! { <Badge kind="ok" text="success"/> },
                                                AuditResult::Failure => view! { <Badge kind="bad" text="failure"/> },
                                                AuditResult::Denied => view! { <Badge kind="warn" text="denied"/> },
                                            };
                                            view! {
                                                <tr>
                                                    <td class="nowrap">{format::timestamp(&e.time)}</td>
                                                    <td>{e.user}</td>
                                                    <td><code>{e.action}</code></td>
                                                    <td>{e.object}</td>
                                                    <td>{badge}</td>
                                                    <td>{e.node}</td>
                                                    <td class="muted">{e.source.unwrap_or_default()}</td>
                                                    <td class="muted">{e.detail.unwrap_or_default()}</td>
                                                </tr>
                                            }
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                            <nav class="pager" aria-label="Pages">
                                {(p.page > 1).then(|| view! { <A href=format!("/audit?page={}", p.page - 1)>"← Newer"</A> })}
                                <span class="muted">"Page " {p.page} " of " {pages} " · " {p.total} " entries"</span>
                                {(p.page < pages).then(|| view! { <A href=format!("/audit?page={}", p.page + 1)>"Older →"</A> })}
                            </nav>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}
