//! Small pieces the pages share: forms, error banners, field messages, badges.

use leptos::ev::SubmitEvent;
use leptos::form::FromFormData;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::model::Role;

/// A form whose fields go to a server function as JSON: what Leptos's
/// `ActionForm` does, without its form-encoded post. The node takes server
/// function calls as JSON only, because a page on another origin can post
/// form encoding (and `text/plain`) without asking, never JSON (see the
/// server's `csrf.rs`). Needs the page hydrated, like every other button.
#[component]
pub fn JsonForm<ServFn>(action: ServerAction<ServFn>, children: Children) -> impl IntoView
where
    ServFn: ServerFn<Error = ApiError> + DeserializeOwned + Clone + Send + Sync + 'static,
    ServFn::Output: Send + Sync + 'static,
{
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        match ServFn::from_event(&ev) {
            Ok(input) => {
                action.dispatch(input);
            }
            Err(e) => {
                action.value().set(Some(Err(ApiError::new(400, format!("The form cannot be read: {e}")))));
            }
        }
    };
    // `method="post"`: before hydration a submit must not put the fields
    // (passwords) into a URL; the node refuses the form-encoded post.
    view! {
        <form method="post" action=ServFn::url() on:submit=on_submit>
            {children()}
        </form>
    }
}

/// Counts the successful runs of `action`: a resource that depends on it
/// reloads after a change, not after a refusal, which would redraw the
/// form being corrected and lose what was typed in it. Counted by an
/// effect, so in the browser only; the server renders each page once.
pub fn saves<ServFn>(action: ServerAction<ServFn>) -> ReadSignal<usize>
where
    ServFn: ServerFn<Error = ApiError> + Clone + Send + Sync + 'static,
    ServFn::Output: Clone + Send + Sync + 'static,
{
    let (count, set_count) = signal(0usize);
    // Every run that ends sets the value, so this runs once per result.
    Effect::new(move |_| {
        if let Some(Ok(_)) = action.value().get() {
            set_count.update(|n| *n += 1);
        }
    });
    count
}

/// False on the server and while the page hydrates, true from then on: for
/// parts that are drawn in the browser only.
pub fn in_browser() -> ReadSignal<bool> {
    let (on, set_on) = signal(false);
    Effect::new(move |_| set_on.set(true));
    on
}

/// A readable banner for a failed request.
#[component]
pub fn ErrorBanner(error: ApiError) -> impl IntoView {
    let title = match error.status {
        401 => "Not logged in",
        403 => "Not allowed",
        404 => "Not found",
        409 => "Refused",
        422 => "Check the form",
        429 => "Too many attempts",
        _ => "Error",
    };
    view! {
        <div class="banner banner-error" role="alert">
            <strong>{title}</strong>
            " "
            <span class="banner-message">{error.message}</span>
        </div>
    }
}

/// Shows the error of the last run of a server action, if it failed.
#[component]
pub fn ActionError<T, V>(value: V) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    V: Get<Value = Option<Result<T, ApiError>>> + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Err(e)) if e.fields.is_empty() => Some(view! { <ErrorBanner error=e/> }),
        _ => None,
    }
}

/// The message for one form field from the last failed submission.
#[component]
pub fn FieldMessage<T, V>(value: V, field: &'static str) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    V: Get<Value = Option<Result<T, ApiError>>> + Send + Sync + 'static,
{
    move || {
        value.get().and_then(|r| r.err()).and_then(|e| e.field(field).map(str::to_string)).map(|msg| {
            view! { <p class="field-error" data-field=field>{msg}</p> }
        })
    }
}

#[component]
pub fn RoleBadge(role: Role) -> impl IntoView {
    let class = format!("badge badge-role-{}", role.as_str());
    view! { <span class=class>{role.as_str()}</span> }
}

/// A coloured badge: `kind` is one of ok, warn, bad, muted.
#[component]
pub fn Badge(kind: &'static str, #[prop(into)] text: String) -> impl IntoView {
    let class = format!("badge badge-{kind}");
    view! { <span class=class>{text}</span> }
}
