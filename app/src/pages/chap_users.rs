//! CHAP users: names and secrets initiators and targets authenticate with.

use leptos::prelude::*;
use leptos_meta::Title;

use super::volumes::can_change;
use crate::components::{ActionError, ErrorBanner, FieldMessage, JsonForm};
use crate::format;
use crate::storage_fns::{list_chap_users, CreateChapUser, DeleteChapUser, SetChapSecret};

#[component]
pub fn ChapUsersPage() -> impl IntoView {
    let create = ServerAction::<CreateChapUser>::new();
    let secret = ServerAction::<SetChapSecret>::new();
    let delete = ServerAction::<DeleteChapUser>::new();
    let users = Resource::new(
        move || (create.version().get(), secret.version().get(), delete.version().get()),
        |_| list_chap_users(),
    );
    let writer = can_change();
    view! {
        <Title text="CHAP users"/>
        <div class="page-head">
            <h1>"CHAP users"</h1>
            <p class="muted">"Secrets are stored encrypted and never shown again after they are set."</p>
        </div>
        <ActionError value=delete.value()/>
        <ActionError value=secret.value()/>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match users.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No CHAP users yet."</p> }.into_any(),
                    Ok(list) => view! {
                        <div class="table-wrap"><table class="table" data-testid="chap-table">
                            <thead><tr><th>"Name"</th><th>"Description"</th><th>"Used by"</th><th>"Created"</th><th class="actions-col"></th></tr></thead>
                            <tbody>{list.into_iter().map(|u| {
                                let name = u.name.clone();
                                let del = name.clone();
                                let used = if u.used_by.is_empty() { "—".to_string() } else { u.used_by.join(", ") };
                                view! {
                                    <tr data-chap=name.clone()>
                                        <td><strong>{name.clone()}</strong></td>
                                        <td>{u.description.clone().unwrap_or_default()}</td>
                                        <td>{used}</td>
                                        <td class="nowrap">{format::timestamp(&u.created_at)}</td>
                                        <td class="actions-col">{writer.then({ let name = name.clone(); move || view! {
                                            <JsonForm action=secret attr:class="form inline-form">
                                                <input type="hidden" name="name" value=name.clone()/>
                                                <input type="password" name="secret" placeholder="new secret" aria-label="New secret" minlength="12" maxlength="16" required autocomplete="new-password"/>
                                                <button type="submit" class="btn btn-small">"Set secret"</button>
                                                <button type="button" class="btn btn-small btn-danger" on:click=move |_| {
                                                    if window().confirm_with_message(&format!("Delete the CHAP user {del}?")).unwrap_or(false) {
                                                        delete.dispatch(DeleteChapUser { name: del.clone() });
                                                    }
                                                }>"Delete"</button>
                                            </JsonForm>
                                        }})}</td>
                                    </tr>
                                }
                            }).collect_view()}</tbody>
                        </table></div>
                    }.into_any(),
                }
            })}
        </Transition>
        {writer.then(move || view! {
            <section class="card">
                <h2>"New CHAP user"</h2>
                <JsonForm action=create attr:class="form form-grid" attr:id="create-chap">
                    <label>"Name"<input type="text" name="name" required maxlength="63"/>
                        <FieldMessage value=create.value() field="name"/></label>
                    <label>"Secret (12–16 characters)"<input type="password" name="secret" required minlength="12" maxlength="16" autocomplete="new-password"/>
                        <FieldMessage value=create.value() field="secret"/></label>
                    <label>"Description"<input type="text" name="description" maxlength="200"/>
                        <FieldMessage value=create.value() field="description"/></label>
                    <div class="form-actions"><button type="submit" class="btn btn-primary">"Create CHAP user"</button></div>
                </JsonForm>
                <ActionError value=create.value()/>
            </section>
        })}
    }
}
