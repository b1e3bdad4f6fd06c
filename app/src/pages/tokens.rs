//! API tokens of the current user, for scripts.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::{ActionError, ErrorBanner, FieldMessage, JsonForm};
use crate::format;
use crate::server_fns::{list_tokens, CreateToken, RevokeToken};

#[component]
pub fn TokensPage() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = Resource::new(move || (create.version().get(), revoke.version().get()), |_| list_tokens());
    let created = create.value();

    view! {
        <Title text="API tokens"/>
        <div class="page-head">
            <h1>"API tokens"</h1>
            <p class="muted">
                "A token acts as you, with your role, or as a viewer if it is read-only. Send it as "
                <code>"Authorization: Bearer TOKEN"</code> "."
            </p>
        </div>
        {move || {
            created.get().and_then(|r| r.ok()).map(|t| {
                view! {
                    <div class="banner banner-ok" role="status">
                        <p>"Token " <strong>{t.name}</strong> " created. Copy it now: it is not shown again."</p>
                        <code class="secret" data-testid="new-token">{t.token}</code>
                    </div>
                }
            })
        }}
        <ActionError value=revoke.value()/>
        <section class="card">
            <h2>"New token"</h2>
            <JsonForm action=create attr:class="form form-row">
                <label>
                    "Name"
                    <input type="text" name="name" placeholder="backup script" maxlength="64" required/>
                    <FieldMessage value=created field="name"/>
                </label>
                <label>
                    "Expires"
                    <select name="expires">
                        <option value="30">"in 30 days"</option>
                        <option value="90" selected>"in 90 days"</option>
                        <option value="365">"in a year"</option>
                        <option value="never">"never (until revoked)"</option>
                    </select>
                    <FieldMessage value=created field="expires_in_days"/>
                </label>
                <label>
                    "May"
                    <select name="scope">
                        <option value="full" selected>"do what you may"</option>
                        <option value="read-only">"only read"</option>
                    </select>
                    <FieldMessage value=created field="read_only"/>
                </label>
                <button type="submit" class="btn btn-primary">"Create token"</button>
            </JsonForm>
        </section>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match tokens.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No tokens yet."</p> }.into_any(),
                    Ok(list) => view! {
                        <div class="table-wrap">
                            <table class="table">
                                <thead>
                                    <tr><th>"Name"</th><th>"Owner"</th><th>"May"</th><th>"Created"</th><th>"Last used"</th><th>"Expires"</th><th class="actions-col"></th></tr>
                                </thead>
                                <tbody>
                                    {list.into_iter().map(|t| {
                                        let id = t.id;
                                        let name = t.name.clone();
                                        view! {
                                            <tr>
                                                <td>{t.name}</td>
                                                <td>{t.owner}</td>
                                                <td>{if t.read_only { "read only" } else { "what its owner may" }}</td>
                                                <td>{format::timestamp(&t.created_at)}</td>
                                                <td>{t.last_used_at.as_deref().map(format::timestamp).unwrap_or_else(|| "never".into())}</td>
                                                <td>{t.expires_at.as_deref().map(format::timestamp).unwrap_or_else(|| "when revoked".into())}</td>
                                                <td class="actions-col">
                                                    <button class="btn btn-small btn-danger" on:click=move |_| {
                                                        let q = format!("Revoke the token {name}? Scripts using it stop working.");
                                                        if window().confirm_with_message(&q).unwrap_or(false) {
                                                            revoke.dispatch(RevokeToken { id });
                                                        }
                                                    }>"Revoke"</button>
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}
