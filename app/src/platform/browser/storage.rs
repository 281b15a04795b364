//! Everything this client keeps in the browser: per tab (sessionStorage) the resume
//! token, the last preferences and the transport; per browser (localStorage) the
//! accepted terms and the "Hide my IP" choice.

use leptos::prelude::window;
use protocol::Preferences;

/// sessionStorage: the resume token. Per tab, it survives reloads of that tab.
const RESUME_KEY: &str = "letsmeet.resume";
/// sessionStorage: the last preferences, so a reload mid-chat knows the mode.
const PREFS_KEY: &str = "letsmeet.prefs";
/// sessionStorage: set while this tab uses the fallback transport.
const TRANSPORT_KEY: &str = "letsmeet.transport";
/// localStorage: the "Hide my IP" choice. It must hold across reloads and tabs, or a
/// reloaded chat would offer the stranger our address.
const RELAY_KEY: &str = "letsmeet.relay";
/// localStorage: the user confirmed they are 18+ and accept the rules.
const TERMS_KEY: &str = "letsmeet.terms";

fn session() -> Option<web_sys::Storage> {
    window().session_storage().ok().flatten()
}

fn local() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

pub fn load_token() -> Option<String> {
    session()?.get_item(RESUME_KEY).ok().flatten().filter(|t| protocol::ResumeToken::parse(t).is_some())
}

pub fn store_token(token: Option<&str>) {
    if let Some(s) = session() {
        let _ = match token {
            Some(t) => s.set_item(RESUME_KEY, t),
            None => s.remove_item(RESUME_KEY),
        };
    }
}

/// The preferences of this tab's last start, if any (and still valid).
pub fn load_prefs() -> Option<Preferences> {
    let text = session()?.get_item(PREFS_KEY).ok().flatten()?;
    serde_json::from_str::<Preferences>(&text).ok()?.normalize().ok()
}

pub fn store_prefs(prefs: &Preferences) {
    if let (Some(s), Ok(text)) = (session(), serde_json::to_string(prefs)) {
        let _ = s.set_item(PREFS_KEY, &text);
    }
}

pub fn load_fallback() -> bool {
    session().and_then(|s| s.get_item(TRANSPORT_KEY).ok().flatten()).as_deref() == Some("fallback")
}

pub fn store_fallback(on: bool) {
    if let Some(s) = session() {
        let _ = if on { s.set_item(TRANSPORT_KEY, "fallback") } else { s.remove_item(TRANSPORT_KEY) };
    }
}

/// A yes/no choice remembered in this browser, false when unset.
fn load_flag(key: &str) -> bool {
    local().and_then(|s| s.get_item(key).ok().flatten()).as_deref() == Some("yes")
}

fn store_flag(key: &str, on: bool) {
    if let Some(s) = local() {
        let _ = s.set_item(key, if on { "yes" } else { "no" });
    }
}

/// Whether the user chose "Hide my IP" (relay-only ICE).
pub fn load_relay_only() -> bool {
    load_flag(RELAY_KEY)
}

pub fn store_relay_only(relay_only: bool) {
    store_flag(RELAY_KEY, relay_only);
}

/// Whether the user has accepted the terms in this browser.
pub fn load_terms() -> bool {
    load_flag(TERMS_KEY)
}

pub fn store_terms(accepted: bool) {
    store_flag(TERMS_KEY, accepted);
}
