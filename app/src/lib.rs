//! Let'sMeet web UI.
//!
//! The same components render on the server (feature `ssr`) and hydrate in the
//! browser (feature `hydrate`). Everything that needs a browser sits behind
//! [`platform`], chosen once there; nothing else carries a `cfg`.
//!
//! Layout:
//! - [`pages`]: one module per screen.
//! - [`components`]: pieces shared between screens.
//! - [`engine`]: the client engine: state shared through context, and its actions.
//! - [`platform`]: the browser (signaling connection, media, moderation frames, storage,
//!   DOM helpers), or a stub that does nothing on the server.
//! - [`interests`]: the interest list rules shared by the inputs and their tests.
//! - [`country`]: country names.

// Leptos view types nest deeply.
#![recursion_limit = "256"]

pub mod components;
pub mod country;
pub mod engine;
pub mod interests;
pub mod pages;
pub mod platform;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <meta
                    name="description"
                    content="Random video and text chat with strangers: peer to peer, anonymous, fast."
                />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body class="bg-paper text-ink font-body antialiased">
                <App />
            </body>
        </html>
    }
}

/// The application root: meta tags, the client engine and the routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let engine = engine::Engine::provide();
    // Runs in the browser only, once the page is interactive: tests and scripts wait
    // for this marker before they click.
    Effect::new(move |_| {
        engine.connect();
        platform::mark_hydrated();
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/letsmeet.css" />
        <Title text="Let'sMeet — talk to strangers" />
        <Router>
            <Routes fallback=|| view! { <pages::NotFound /> }>
                <Route path=path!("/") view=pages::Landing />
                <Route path=path!("/chat") view=pages::Chat />
            </Routes>
        </Router>
    }
}
