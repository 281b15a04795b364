//! One module per screen.

mod chat;
mod landing;

pub use chat::Chat;
pub use landing::Landing;

use leptos::prelude::*;

/// Any path we do not serve.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <main class="mx-auto max-w-xl px-6 py-24 text-center">
            <h1 class="font-display text-5xl font-black">"Nobody here."</h1>
            <p class="mt-4 text-lg">"This page does not exist."</p>
            <a href="/" class="btn btn-primary mt-8 inline-block">"Back to Let'sMeet"</a>
        </main>
    }
}
