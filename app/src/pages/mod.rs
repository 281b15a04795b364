//! One module per screen.

mod chat;
mod landing;

pub use chat::Chat;
pub use landing::Landing;

use leptos::prelude::*;

/// What a ban means for the user: until when, in their own time, and why.
fn ban_text(reason: &str, until: &str) -> String {
    let until = local_time(until);
    match reason.trim().trim_end_matches('.') {
        "" => format!("You can't chat right now: this connection is banned until {until}."),
        reason => format!("You can't chat right now: this connection is banned until {until}. Reason: {reason}."),
    }
}

/// An RFC 3339 time in the reader's language and time zone ("25 Nov 2026, 09:30");
/// as it is on the server, or when the browser cannot read it.
fn local_time(rfc3339: &str) -> String {
    crate::platform::local_time(rfc3339).unwrap_or_else(|| rfc3339.to_string())
}

/// Any path we do not serve.
#[component]
pub fn NotFound() -> impl IntoView {
    crate::platform::respond_not_found();
    view! {
        <main class="mx-auto max-w-xl px-6 py-24 text-center">
            <h1 class="font-display text-5xl font-black">"Nobody here."</h1>
            <p class="mt-4 text-lg">"This page does not exist."</p>
            <a href="/" class="btn btn-primary mt-8 inline-block">"Back to Let'sMeet"</a>
        </main>
    }
}
