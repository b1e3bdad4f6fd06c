//! Dashboard users (administrators only; the server refuses everyone else).

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::{ActionError, Badge, ErrorBanner, FieldMessage, JsonForm};
use crate::format;
use crate::model::{Me, Role, UserView};
use crate::server_fns::{list_users, CreateUser, DeleteUser, ResetPassword, SetUserEnabled, SetUserRole};

#[derive(Clone, Copy)]
struct UserActions {
    role: ServerAction<SetUserRole>,
    enabled: ServerAction<SetUserEnabled>,
    reset: ServerAction<ResetPassword>,
    delete: ServerAction<DeleteUser>,
    /// The user whose password is being reset, if any.
    resetting: RwSignal<Option<String>>,
}

#[component]
pub fn UsersPage() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let actions = UserActions {
        role: ServerAction::new(),
        enabled: ServerAction::new(),
        reset: ServerAction::new(),
        delete: ServerAction::new(),
        resetting: RwSignal::new(None),
    };
    let users = Resource::new(
        move || {
            (
                create.version().get(),
                actions.role.version().get(),
                actions.enabled.version().get(),
                actions.reset.version().get(),
                actions.delete.version().get(),
            )
        },
        |_| list_users(),
    );
    let created = create.value();
    let me = use_context::<Me>();

    view! {
        <Title text="Users"/>
        <div class="page-head">
            <h1>"Users"</h1>
            <p class="muted">"Who may use this dashboard and the API, and with which role."</p>
        </div>
        <ActionError value=actions.role.value()/>
        <ActionError value=actions.enabled.value()/>
        <ActionError value=actions.delete.value()/>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                let me = me.clone();
                Suspend::new(async move {
                match users.await {
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                    Ok(list) => {
                        view! {
                            <div class="table-wrap">
                                <table class="table" data-testid="users-table">
                                    <thead>
                                        <tr>
                                            <th>"User"</th>
                                            <th>"Role"</th>
                                            <th>"State"</th>
                                            <th>"Created"</th>
                                            <th>"Last login"</th>
                                            <th class="actions-col">"Actions"</th>
                                        </tr>
                                    </thead>
                                    <tbody>
                                        {list
                                            .into_iter()
                                            .map(|u| {
                                                let is_me = me.as_ref().is_some_and(|m| m.username == u.username);
                                                view! { <UserRow user=u is_me actions/> }
                                            })
                                            .collect_view()}
                                    </tbody>
                                </table>
                            </div>
                            <section class="card">
                                <h2>"Add a user"</h2>
                                {move || {
                                    created
                                        .get()
                                        .and_then(|r| r.ok())
                                        .map(|u| {
                                            view! {
                                                <div class="banner banner-ok" role="status">
                                                    "User " <strong>{u.username}</strong> " created."
                                                </div>
                                            }
                                        })
                                }}
                                <ActionError value=created/>
                                <JsonForm action=create attr:class="form form-grid" attr:id="create-user">
                                    <label>
                                        "User name"
                                        <input type="text" name="username" required maxlength="32" autocomplete="off"/>
                                        <FieldMessage value=created field="username"/>
                                    </label>
                                    <label>
                                        "Password"
                                        <input type="password" name="password" required minlength="8" autocomplete="new-password"/>
                                        <FieldMessage value=created field="password"/>
                                    </label>
                                    <label>
                                        "Role"
                                        <select name="role">
                                            <option value="viewer">"viewer — read only"</option>
                                            <option value="operator">"operator — storage objects"</option>
                                            <option value="admin">"admin — everything"</option>
                                        </select>
                                        <FieldMessage value=created field="role"/>
                                    </label>
                                    <div class="form-actions">
                                        <button type="submit" class="btn btn-primary">"Create user"</button>
                                    </div>
                                </JsonForm>
                            </section>
                        }
                        .into_any()
                    }
                }
            })}}
        </Suspense>
    }
}

#[component]
fn UserRow(user: UserView, is_me: bool, actions: UserActions) -> impl IntoView {
    let name = user.username.clone();
    let state = if user.enabled {
        view! { <Badge kind="ok" text="enabled"/> }
    } else {
        view! { <Badge kind="muted" text="disabled"/> }
    };
    let role_select = {
        let name = name.clone();
        let current = user.role;
        view! {
            <select
                aria-label="Role"
                on:change=move |ev| {
                    actions.role.dispatch(SetUserRole { username: name.clone(), role: event_target_value(&ev) });
                }
            >
                {Role::ALL
                    .into_iter()
                    .map(|r| view! { <option value=r.as_str() selected=r == current>{r.as_str()}</option> })
                    .collect_view()}
            </select>
        }
    };
    let toggle = {
        let name = name.clone();
        let enabled = user.enabled;
        view! {
            <button
                class="btn btn-small"
                on:click=move |_| {
                    actions.enabled.dispatch(SetUserEnabled { username: name.clone(), enabled: !enabled });
                }
            >
                {if enabled { "Disable" } else { "Enable" }}
            </button>
        }
    };
    let delete = {
        let name = name.clone();
        view! {
            <button
                class="btn btn-small btn-danger"
                on:click=move |_| {
                    let question = format!("Delete the user {name}? This cannot be undone.");
                    if window().confirm_with_message(&question).unwrap_or(false) {
                        actions.delete.dispatch(DeleteUser { username: name.clone() });
                    }
                }
            >
                "Delete"
            </button>
        }
    };
    let reset_open = {
        let name = name.clone();
        move || actions.resetting.get().as_deref() == Some(name.as_str())
    };
    let open_reset = {
        let name = name.clone();
        move |_| actions.resetting.set(Some(name.clone()))
    };
    let reset_value = actions.reset.value();
    let hidden_name = name.clone();
    view! {
            <tr data-user=name.clone()>
                <td>
                    <strong>{name.clone()}</strong>
                    {is_me.then(|| view! { <span class="muted">" (you)"</span> })}
                </td>
                <td>{role_select}</td>
                <td>{state}</td>
                <td class="nowrap">{format::timestamp(&user.created_at)}</td>
                <td class="nowrap">{user.last_login_at.as_deref().map(format::timestamp).unwrap_or_else(|| "never".into())}</td>
                <td class="actions-col">
                    <div class="row-actions">
                        {toggle}
                        <button class="btn btn-small" on:click=open_reset>"Reset password"</button>
                        {delete}
                    </div>
                    <Show when=reset_open.clone()>
    {
     let n = hidden_name.clone();
     view! {
                        <JsonForm action=actions.reset attr:class="form inline-form">
                            <input type="hidden" name="username" value=n/>
                            <input type="password" name="password" placeholder="New password" minlength="8" required autocomplete="new-password"/>
                            <button type="submit" class="btn btn-small btn-primary">"Set"</button>
                            <button type="button" class="btn btn-small btn-ghost" on:click=move |_| actions.resetting.set(None)>"Cancel"</button>
                            <FieldMessage value=reset_value field="password"/>
                        </JsonForm>
                    }
    }
    </Show>
                </td>
            </tr>
        }
}
