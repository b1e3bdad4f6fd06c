//! The login page. The form sends JSON to the login server function, so it
//! works once the page is hydrated (the node refuses form-encoded posts).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;

use crate::components::{ActionError, FieldMessage, JsonForm};
use crate::server_fns::Login;

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let value = login.value();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(_)) = value.get() {
            navigate("/", Default::default());
        }
    });

    view! {
        <Title text="Log in"/>
        <main class="center-page">
            <div class="card narrow login-card">
                <div class="brand brand-large">
                    <span class="brand-mark">"P"</span>
                    <span>"Portico"</span>
                </div>
                <p class="muted">"iSCSI SAN management"</p>
                <ActionError value/>
                <JsonForm action=login attr:class="form" attr:id="login-form">
                    <label>
                        "User name"
                        <input type="text" name="username" autocomplete="username" required autofocus/>
                    </label>
                    <FieldMessage value field="username"/>
                    <label>
                        "Password"
                        <input type="password" name="password" autocomplete="current-password" required/>
                    </label>
                    <FieldMessage value field="password"/>
                    <button type="submit" class="btn btn-primary" disabled=move || login.pending().get()>
                        {move || if login.pending().get() { "Logging in…" } else { "Log in" }}
                    </button>
                </JsonForm>
            </div>
        </main>
    }
}
