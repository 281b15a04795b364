//! The signaling connection (browser only): connects, resumes with the tab's token from
//! sessionStorage (sent in the first message, `hello`), and reconnects with exponential
//! backoff and jitter.
//!
//! It is a WebSocket, unless WebSockets do not work here: when one does not open within
//! a few seconds, or closes before `welcome` twice in a row while the server answers
//! plain HTTP, the tab switches to the fallback transport ([`super::fallback`]) and
//! remembers that. On the fallback it tries a WebSocket again now and then, and
//! switches back when one opens and no chat would be interrupted.

use super::fallback::{self, Sse};
use super::storage::{load_fallback, load_token, store_fallback, store_token};
use crate::engine::{Engine, Link, Phase, Transport};
use leptos::prelude::*;
use protocol::{ClientMsg, ServerMsg, close};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

const BACKOFF_BASE_MS: f64 = 500.0;
const BACKOFF_MAX_MS: f64 = 15_000.0;
/// A WebSocket that has not brought `welcome` by then counts as blocked (a proxy that
/// holds the upgrade, or takes it and relays nothing).
const WELCOME_TIMEOUT: Duration = Duration::from_secs(5);
/// WebSockets closed before `welcome` in a row that mean they do not work here.
const EARLY_CLOSES: u32 = 2;
/// How often the fallback tries a WebSocket again at first (plus jitter); each time
/// going back fails, twice as long, up to [`PROBE_MAX_MS`].
const PROBE_EVERY_MS: f64 = 60_000.0;
const PROBE_MAX_MS: f64 = 15.0 * 60_000.0;

/// The live connection and the handlers attached to it (dropped together).
enum Live {
    Ws {
        ws: WebSocket,
        _on_open: Closure<dyn FnMut(web_sys::Event)>,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
        _on_close: Closure<dyn FnMut(CloseEvent)>,
    },
    Sse(Sse),
}

/// Most intents (join/next/stop) held while the socket is not open.
const PENDING_LIMIT: usize = 8;

/// The signaling connection of one engine (kept in its runtime).
#[derive(Default)]
pub struct State {
    live: RefCell<Option<Live>>,
    /// Intents sent before the connection was open (e.g. Start clicked while the page
    /// was still connecting), delivered after the next `welcome`.
    pending: RefCell<Vec<ClientMsg>>,
    /// WebSockets in a row that closed before their `welcome`.
    early: Cell<u32>,
    /// Counts connections, so a timer can tell whether its connection is still the one.
    opened: Cell<u64>,
    /// Times in a row that leaving the fallback did not work out.
    returns_failed: Cell<u32>,
}

/// This engine's connection state; `None` once the engine is gone.
fn state(engine: Engine) -> Option<Rc<State>> {
    engine.runtime().map(|rt| rt.socket)
}

/// Drops the live connection (and its handlers).
fn drop_live(engine: Engine) {
    if let Some(st) = state(engine) {
        let live = st.live.borrow_mut().take();
        drop(live);
    }
}

/// Sends a message if the connection is open. Otherwise a join/next/stop waits for the
/// next `welcome`; per-match messages are dropped (that match's state is re-sent on
/// resume, and the page shows that it is reconnecting).
pub fn send(engine: Engine, msg: ClientMsg) {
    let Some(st) = state(engine) else { return };
    let sent = match &*st.live.borrow() {
        Some(Live::Ws { ws, .. }) if ws.ready_state() == WebSocket::OPEN => {
            if let Err(e) = ws.send_with_str(&msg.to_json()) {
                leptos::logging::warn!("send failed: {e:?}");
            }
            true
        }
        Some(Live::Sse(sse)) if sse.is_open() => {
            sse.send(msg.to_json());
            true
        }
        _ => false,
    };
    if !sent && matches!(msg, ClientMsg::Join(_) | ClientMsg::Next | ClientMsg::Stop) {
        let mut p = st.pending.borrow_mut();
        if p.len() == PENDING_LIMIT {
            p.remove(0);
        }
        p.push(msg);
    }
}

fn flush_pending(engine: Engine) {
    let Some(st) = state(engine) else { return };
    let pending = std::mem::take(&mut *st.pending.borrow_mut());
    for msg in pending {
        send(engine, msg);
    }
}

pub fn start(engine: Engine) {
    if load_fallback() {
        engine.transport_changed(Transport::Fallback);
    }
    open(engine, 0);
}

fn open(engine: Engine, failures: u32) {
    let Some(st) = state(engine) else { return };
    let this = st.opened.get() + 1;
    st.opened.set(this);
    match engine.link.transport.get_untracked() {
        Transport::WebSocket => open_ws(engine, failures, this),
        Transport::Fallback => open_fallback(engine, failures, this),
    }
}

/// Whether connection number `this` is still the current one.
fn current(engine: Engine, this: u64) -> bool {
    state(engine).is_some_and(|st| st.opened.get() == this)
}

/// A server message, whatever the transport.
fn received(engine: Engine, text: &str) {
    match ServerMsg::from_json(text) {
        Ok(msg) => {
            let welcome = matches!(msg, ServerMsg::Welcome { .. });
            if let ServerMsg::Welcome { resume_token, .. } = &msg {
                store_token(Some(&resume_token.to_string()));
            }
            engine.apply(msg);
            if welcome {
                flush_pending(engine);
            }
        }
        Err(e) => leptos::logging::warn!("ignoring a server message I do not understand: {e}"),
    }
}

/// The connection ended with `code`, whatever the transport: reconnect, or not.
fn closed(engine: Engine, code: u16, opened_at: f64, failures: u32) {
    if engine.runtime().is_none() {
        // The engine is gone (its page was unmounted): nothing to reconnect for.
        return;
    }
    drop_live(engine);
    // A connection that lived a while resets the backoff.
    let failures = if js_sys::Date::now() - opened_at > 10_000.0 { 0 } else { failures };
    match code {
        // `banned` was applied; do not knock again.
        close::BANNED => engine.link_changed(Link::Closed),
        close::REPLACED => {
            // Another tab (a duplicate of this one) took this session over: start our own.
            store_token(None);
            engine.session_taken_over();
            retry(engine, 0);
        }
        close::SERVICE_RESTART => {
            engine.link_changed(Link::Restarting);
            set_timeout(move || open(engine, failures + 1), Duration::from_millis(300 + jitter(700.0)));
        }
        _ => retry(engine, failures + 1),
    }
}

fn open_ws(engine: Engine, failures: u32, this: u64) {
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
    let welcomed = std::rc::Rc::new(Cell::new(false));
    let got_welcome = welcomed.clone();
    let no_welcome = welcomed.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let Some(text) = ev.data().as_string() else { return };
        if !got_welcome.get() && text.contains("\"welcome\"") {
            got_welcome.set(true);
            if let Some(st) = state(engine) {
                st.early.set(0);
                st.returns_failed.set(0);
            }
        }
        received(engine, &text);
    });
    let opened_at = js_sys::Date::now();
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
        if !current(engine, this) {
            return;
        }
        // Closed before `welcome`, and not by this server (whose codes mean it was
        // reached): a blocked upgrade looks like this (1006 in browsers).
        let ours = matches!(
            ev.code(),
            close::REPLACED | close::BANNED | close::POLICY | close::TOO_LARGE | close::SERVICE_RESTART
        );
        let early = !welcomed.get()
            && !ours
            && state(engine).is_some_and(|st| {
                st.early.set(st.early.get() + 1);
                st.early.get() >= EARLY_CLOSES
            });
        if early {
            drop_live(engine);
            return fall_back_if_http_works(engine, failures);
        }
        closed(engine, ev.code(), opened_at, failures);
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    // A proxy that holds the upgrade, or passes nothing through: give up on
    // WebSockets after a while.
    let waiting = ws.clone();
    set_timeout(
        move || {
            if current(engine, this) && !no_welcome.get() && waiting.ready_state() != WebSocket::CLOSED {
                waiting.set_onclose(None);
                waiting.close().ok();
                drop_live(engine);
                fall_back_if_http_works(engine, failures);
            }
        },
        WELCOME_TIMEOUT,
    );
    if let Some(st) = state(engine) {
        *st.live.borrow_mut() = Some(Live::Ws { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close });
    }
}

/// WebSockets fail here: if the server answers plain HTTP, the network is what blocks
/// them, and the fallback takes over; if not, the server is away and we keep trying.
fn fall_back_if_http_works(engine: Engine, failures: u32) {
    wasm_bindgen_futures::spawn_local(async move {
        let reachable = match wasm_bindgen_futures::JsFuture::from(window().fetch_with_str("/healthz")).await {
            Ok(res) => res.dyn_into::<web_sys::Response>().is_ok_and(|r| r.ok()),
            Err(_) => false,
        };
        if reachable {
            leptos::logging::log!("WebSockets do not get through here: using the HTTP fallback");
            if let Some(st) = state(engine) {
                st.early.set(0);
                st.returns_failed.set(st.returns_failed.get() + 1);
            }
            store_fallback(true);
            engine.transport_changed(Transport::Fallback);
            open(engine, 0);
        } else {
            retry(engine, failures + 1);
        }
    });
}

fn open_fallback(engine: Engine, failures: u32, this: u64) {
    let opened_at = js_sys::Date::now();
    let handlers = fallback::Handlers {
        message: Box::new(move |text| received(engine, text)),
        closed: Box::new(move |code| {
            if current(engine, this) {
                closed(engine, code, opened_at, failures);
            }
        }),
        ready: Box::new(move || send_hello(engine)),
    };
    match Sse::open(handlers) {
        Ok(sse) => {
            if let Some(st) = state(engine) {
                *st.live.borrow_mut() = Some(Live::Sse(sse));
            }
        }
        Err(e) => {
            leptos::logging::warn!("cannot open the fallback connection: {e:?}");
            return retry(engine, failures + 1);
        }
    }
    schedule_probe(engine, this);
}

fn send_hello(engine: Engine) {
    let Some(st) = state(engine) else { return };
    if let Some(Live::Sse(sse)) = &*st.live.borrow() {
        sse.send(ClientMsg::Hello { resume_token: load_token() }.to_json());
    }
}

/// Now and then, while on the fallback: does a WebSocket open now? Then switch back,
/// unless that would interrupt a chat (a resume restarts the call); then ask again later.
fn schedule_probe(engine: Engine, this: u64) {
    // The first fall-back counts too: `returns_failed` is 1 on the first probe.
    let failed = state(engine).map_or(0, |st| st.returns_failed.get()).saturating_sub(1).min(8);
    let every = (PROBE_EVERY_MS * 2f64.powi(failed as i32)).min(PROBE_MAX_MS);
    let delay = Duration::from_millis(every as u64 + jitter(every / 2.0));
    set_timeout(
        move || {
            if !current(engine, this) {
                return;
            }
            let Ok(probe) = WebSocket::new(&url()) else { return schedule_probe(engine, this) };
            let opened = probe.clone();
            let on_open = Closure::once_into_js(move |_: web_sys::Event| {
                opened.close().ok();
                if !current(engine, this) {
                    return;
                }
                let chatting = matches!(
                    engine.chat.phase.get_untracked(),
                    Phase::Connecting | Phase::Connected | Phase::PeerReconnecting | Phase::AskingMedia
                );
                if chatting {
                    return schedule_probe(engine, this);
                }
                leptos::logging::log!("WebSockets work again: leaving the HTTP fallback");
                store_fallback(false);
                engine.transport_changed(Transport::WebSocket);
                // The new socket resumes the session; the fallback connection goes.
                drop_live(engine);
                open(engine, 0);
            });
            probe.set_onopen(Some(on_open.unchecked_ref()));
            let failed = Closure::once_into_js(move |_: web_sys::Event| {
                if current(engine, this) {
                    schedule_probe(engine, this);
                }
            });
            probe.set_onerror(Some(failed.unchecked_ref()));
        },
        delay,
    );
}

fn retry(engine: Engine, failures: u32) {
    engine.link_changed(Link::Reconnecting);
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
