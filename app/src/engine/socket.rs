//! The signaling WebSocket (browser only): connects, resumes with the tab's token from
//! sessionStorage, and reconnects with exponential backoff and jitter.

use super::{Engine, Link};
use futures_util::StreamExt;
use gloo_net::websocket::Message;
use gloo_net::websocket::futures::WebSocket;
use leptos::prelude::*;
use protocol::ServerMsg;

/// sessionStorage key of the resume token: per tab, survives reloads of that tab.
const RESUME_KEY: &str = "letsmeet.resume";
const BACKOFF_BASE_MS: f64 = 500.0;
const BACKOFF_MAX_MS: f64 = 15_000.0;

pub(super) fn start(engine: Engine) {
    wasm_bindgen_futures::spawn_local(run(engine));
}

async fn run(engine: Engine) {
    let mut failures: u32 = 0;
    loop {
        match WebSocket::open(&url()) {
            Ok(ws) => {
                let (_sink, mut stream) = ws.split();
                while let Some(frame) = stream.next().await {
                    let Ok(Message::Text(text)) = frame else {
                        break;
                    };
                    match ServerMsg::from_json(&text) {
                        Ok(msg) => {
                            if let ServerMsg::Welcome { resume_token, .. } = &msg {
                                store_token(&resume_token.to_string());
                                failures = 0;
                            }
                            engine.apply(&msg);
                        }
                        Err(e) => leptos::logging::warn!("ignoring a server message I do not understand: {e}"),
                    }
                }
            }
            Err(e) => leptos::logging::warn!("cannot open the signaling socket: {e}"),
        }
        engine.link.set(Link::Reconnecting);
        failures = failures.saturating_add(1);
        sleep_ms(backoff_ms(failures)).await;
    }
}

/// Exponential backoff with full jitter: a random delay up to base·2ⁿ, capped.
fn backoff_ms(failures: u32) -> i32 {
    let ceiling = (BACKOFF_BASE_MS * 2f64.powi(failures.min(10) as i32)).min(BACKOFF_MAX_MS);
    (ceiling * (0.5 + js_sys::Math::random() / 2.0)) as i32
}

fn url() -> String {
    let location = window().location();
    let scheme = if location.protocol().as_deref() == Ok("https:") { "wss" } else { "ws" };
    let host = location.host().unwrap_or_default();
    match load_token() {
        Some(token) => format!("{scheme}://{host}/ws?resume={token}"),
        None => format!("{scheme}://{host}/ws"),
    }
}

fn storage() -> Option<web_sys::Storage> {
    window().session_storage().ok().flatten()
}

fn load_token() -> Option<String> {
    storage()?.get_item(RESUME_KEY).ok().flatten().filter(|t| protocol::ResumeToken::parse(t).is_some())
}

fn store_token(token: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(RESUME_KEY, token);
    }
}

async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
