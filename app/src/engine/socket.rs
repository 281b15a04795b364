//! The signaling WebSocket (browser only): connects, resumes with the tab's token from
//! sessionStorage (sent in the first message, `hello`), and reconnects with exponential backoff and jitter.

use super::{Engine, Link};
use leptos::prelude::*;
use protocol::{ClientMsg, ServerMsg, close};
use std::cell::RefCell;
use std::time::Duration;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// sessionStorage key of the resume token: per tab, survives reloads of that tab.
const RESUME_KEY: &str = "letsmeet.resume";
/// sessionStorage key of the last preferences, so a reload mid-chat knows the mode.
const PREFS_KEY: &str = "letsmeet.prefs";
/// localStorage key of the "Hide my IP" choice: it must hold across reloads and tabs,
/// or a reloaded chat would offer the stranger our address.
const RELAY_KEY: &str = "letsmeet.relay";
const BACKOFF_BASE_MS: f64 = 500.0;
const BACKOFF_MAX_MS: f64 = 15_000.0;

/// The live socket and the handlers attached to it (dropped together).
struct Live {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut(web_sys::Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

/// Most intents (join/next/stop) held while the socket is not open.
const PENDING_LIMIT: usize = 8;

thread_local! {
    static LIVE: RefCell<Option<Live>> = const { RefCell::new(None) };
    /// Intents sent before the socket was open (e.g. Start clicked while the page was
    /// still connecting), delivered after the next `welcome`.
    static PENDING: RefCell<Vec<ClientMsg>> = const { RefCell::new(Vec::new()) };
}

/// Sends a message if the socket is open. Otherwise a join/next/stop waits for the
/// next `welcome`; per-match messages are dropped (that match's state is re-sent on
/// resume, and the page shows that it is reconnecting).
pub(crate) fn send(msg: ClientMsg) {
    let sent = LIVE.with(|live| match &*live.borrow() {
        Some(live) if live.ws.ready_state() == WebSocket::OPEN => {
            if let Err(e) = live.ws.send_with_str(&msg.to_json()) {
                leptos::logging::warn!("send failed: {e:?}");
            }
            true
        }
        _ => false,
    });
    if !sent && matches!(msg, ClientMsg::Join(_) | ClientMsg::Next | ClientMsg::Stop) {
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() == PENDING_LIMIT {
                p.remove(0);
            }
            p.push(msg);
        });
    }
}

fn flush_pending() {
    for msg in PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())) {
        send(msg);
    }
}

pub(super) fn start(engine: Engine) {
    open(engine, 0);
}

fn open(engine: Engine, failures: u32) {
    let ws = match WebSocket::new(&url()) {
        Ok(ws) => ws,
        Err(e) => {
            leptos::logging::warn!("cannot open the signaling socket: {e:?}");
            return retry(engine, failures + 1);
        }
    };
    // The first message names the session to resume: a token in the URL would end
    // up in proxy logs.
    let hello_ws = ws.clone();
    let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        let hello = ClientMsg::Hello { resume_token: load_token() };
        if let Err(e) = hello_ws.send_with_str(&hello.to_json()) {
            leptos::logging::warn!("send failed: {e:?}");
        }
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let Some(text) = ev.data().as_string() else { return };
        match ServerMsg::from_json(&text) {
            Ok(msg) => {
                let welcome = matches!(msg, ServerMsg::Welcome { .. });
                if let ServerMsg::Welcome { resume_token, .. } = &msg {
                    store_token(Some(&resume_token.to_string()));
                }
                engine.apply(msg);
                if welcome {
                    flush_pending();
                }
            }
            Err(e) => leptos::logging::warn!("ignoring a server message I do not understand: {e}"),
        }
    });
    let opened_at = js_sys::Date::now();
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
        LIVE.with(|live| live.borrow_mut().take());
        // A socket that lived a while resets the backoff.
        let failures = if js_sys::Date::now() - opened_at > 10_000.0 { 0 } else { failures };
        match ev.code() {
            // `banned` was applied; do not knock again.
            close::BANNED => engine.link.set(Link::Closed),
            close::REPLACED => {
                // Another tab (a duplicate of this one) took this session over: start our own.
                store_token(None);
                engine.notice.set(Some("This chat continued in another tab.".into()));
                engine.stop_locally();
                retry(engine, 0);
            }
            close::SERVICE_RESTART => {
                engine.link.set(Link::Restarting);
                set_timeout(move || open(engine, failures + 1), Duration::from_millis(300 + jitter(700.0)));
            }
            _ => retry(engine, failures + 1),
        }
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    LIVE.with(|live| {
        *live.borrow_mut() = Some(Live { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close })
    });
}

fn retry(engine: Engine, failures: u32) {
    engine.link.set(Link::Reconnecting);
    set_timeout(move || open(engine, failures), Duration::from_millis(backoff_ms(failures)));
}

/// Exponential backoff with jitter: between half and all of base·2ⁿ, capped.
fn backoff_ms(failures: u32) -> u64 {
    let ceiling = (BACKOFF_BASE_MS * 2f64.powi(failures.min(10) as i32)).min(BACKOFF_MAX_MS);
    (ceiling / 2.0) as u64 + jitter(ceiling / 2.0)
}

fn jitter(max_ms: f64) -> u64 {
    (js_sys::Math::random() * max_ms) as u64
}

fn url() -> String {
    let location = window().location();
    let scheme = if location.protocol().as_deref() == Ok("https:") { "wss" } else { "ws" };
    let host = location.host().unwrap_or_default();
    format!("{scheme}://{host}/ws?hello=1")
}

fn storage() -> Option<web_sys::Storage> {
    window().session_storage().ok().flatten()
}

fn load_token() -> Option<String> {
    storage()?.get_item(RESUME_KEY).ok().flatten().filter(|t| protocol::ResumeToken::parse(t).is_some())
}

fn store_token(token: Option<&str>) {
    if let Some(s) = storage() {
        let _ = match token {
            Some(t) => s.set_item(RESUME_KEY, t),
            None => s.remove_item(RESUME_KEY),
        };
    }
}

/// The preferences of this tab's last start, if any.
pub(super) fn load_prefs() -> Option<protocol::Preferences> {
    let text = storage()?.get_item(PREFS_KEY).ok().flatten()?;
    serde_json::from_str::<protocol::Preferences>(&text).ok()?.normalize().ok()
}

pub(super) fn store_prefs(prefs: &protocol::Preferences) {
    if let (Some(s), Ok(text)) = (storage(), serde_json::to_string(prefs)) {
        let _ = s.set_item(PREFS_KEY, &text);
    }
}

/// A yes/no choice remembered in this browser (localStorage), false when unset.
pub(crate) fn load_flag(key: &str) -> bool {
    window().local_storage().ok().flatten().and_then(|s| s.get_item(key).ok().flatten()).as_deref() == Some("yes")
}

pub(crate) fn store_flag(key: &str, on: bool) {
    if let Some(s) = window().local_storage().ok().flatten() {
        let _ = s.set_item(key, if on { "yes" } else { "no" });
    }
}

/// Whether the user chose "Hide my IP" (relay-only ICE).
pub(super) fn load_relay_only() -> bool {
    load_flag(RELAY_KEY)
}

pub(super) fn store_relay_only(relay_only: bool) {
    store_flag(RELAY_KEY, relay_only);
}
