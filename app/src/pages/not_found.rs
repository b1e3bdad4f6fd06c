use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found"/>
        <main class="center-page">
            <div class="card narrow">
                <h1>"Page not found"</h1>
                <p>"There is no page at this address."</p>
                <A href="/">"Back to the overview"</A>
            </div>
        </main>
    }
}
