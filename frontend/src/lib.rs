//! The browser entry point: a thin cdylib that hydrates the server-rendered page.
//! Everything else lives in the `app` crate.

// Leptos view types nest deeply.
#![recursion_limit = "256"]

use wasm_bindgen::prelude::wasm_bindgen;

/// Called by the generated JS loader once the WASM module is instantiated.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
