//! The fallback transport (browser only), for networks that break WebSockets: an
//! `EventSource` on `GET /sse` brings the server's messages, `fetch` POSTs to `/sse`
//! carry ours in batches. The messages are the same JSON as on `/ws`; the framing is
//! [`protocol::sse`].
//!
//! The stream's first event names the connection's key; every POST carries it in
//! `X-Stream-Key` (never in the URL) with a batch number, so a batch retried after a
//! failed request is not applied twice. `EventSource` reconnects by itself with
//! `Last-Event-ID`, and the server replays what the stream missed.

use leptos::prelude::*;
use protocol::sse;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{EventSource, MessageEvent, Request, RequestInit, Response};

/// Most messages in one POST.
const BATCH_MESSAGES: usize = 32;
/// A POST grows to about this many bytes (one larger message goes alone).
const BATCH_BYTES: usize = 32 * 1024;
/// Pause before a failed POST is tried again.
const RETRY_POST: Duration = Duration::from_millis(500);
/// Messages waiting to be POSTed before the oldest go (the connection is in trouble).
const QUEUE_LIMIT: usize = 512;
/// With nothing to say for this long, an empty POST tells the server we are here.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// What the fallback reports to the socket layer.
pub(super) struct Handlers {
    /// A server message's JSON.
    pub message: Box<dyn Fn(&str)>,
    /// The connection ended with this close code (1006: it broke).
    pub closed: Box<dyn Fn(u16)>,
    /// The stream is up and POSTs can go: send `hello` now.
    pub ready: Box<dyn Fn()>,
}

/// What a named event does.
type OnEvent = dyn Fn(&Rc<State>, MessageEvent);

struct State {
    key: RefCell<Option<String>>,
    /// The id of the last event received (acknowledged with every POST).
    last_event: RefCell<Option<String>>,
    queue: RefCell<VecDeque<String>>,
    in_flight: Cell<bool>,
    batch: Cell<u64>,
    /// When the last POST went out (ms since the epoch).
    last_post: Cell<f64>,
    ended: Cell<bool>,
    handlers: Handlers,
}

/// One fallback connection.
pub(super) struct Sse {
    source: EventSource,
    state: Rc<State>,
    _listeners: Vec<Closure<dyn FnMut(MessageEvent)>>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
    heartbeat: Option<(i32, Closure<dyn FnMut()>)>,
}

impl Sse {
    pub fn open(handlers: Handlers) -> Result<Self, JsValue> {
        let source = EventSource::new(sse::PATH)?;
        let state = Rc::new(State {
            key: RefCell::new(None),
            last_event: RefCell::new(None),
            queue: RefCell::new(VecDeque::new()),
            in_flight: Cell::new(false),
            batch: Cell::new(0),
            last_post: Cell::new(js_sys::Date::now()),
            ended: Cell::new(false),
            handlers,
        });
        let mut listeners = Vec::new();
        let mut listen = |kind: &str, f: Box<OnEvent>| -> Result<(), JsValue> {
            let st = state.clone();
            let closure = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                if !st.ended.get() {
                    f(&st, ev)
                }
            });
            source.add_event_listener_with_callback(kind, closure.as_ref().unchecked_ref())?;
            listeners.push(closure);
            Ok(())
        };
        listen(
            sse::STREAM_EVENT,
            Box::new(|st, ev| {
                let key =
                    ev.data().as_string().and_then(|d| serde_json::from_str::<sse::Stream>(&d).ok()).map(|s| s.key);
                st.last_event.replace(Some(ev.last_event_id()));
                if key.is_some() {
                    st.key.replace(key);
                    (st.handlers.ready)();
                    flush(st.clone());
                }
            }),
        )?;
        listen(
            "message",
            Box::new(|st, ev| {
                st.last_event.replace(Some(ev.last_event_id()));
                if let Some(text) = ev.data().as_string() {
                    (st.handlers.message)(&text);
                }
            }),
        )?;
        let es = source.clone();
        listen(
            sse::CLOSE_EVENT,
            Box::new(move |st, ev| {
                let code = ev
                    .data()
                    .as_string()
                    .and_then(|d| serde_json::from_str::<sse::Close>(&d).ok())
                    .map_or(1006, |c| c.code);
                es.close();
                end(st, code);
            }),
        )?;
        let (st, es) = (state.clone(), source.clone());
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            // CONNECTING: EventSource tries again by itself, with Last-Event-ID.
            if es.ready_state() == EventSource::CLOSED && !st.ended.get() {
                end(&st, 1006);
            }
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let st = state.clone();
        let beat = Closure::<dyn FnMut()>::new(move || {
            if !st.in_flight.get() && js_sys::Date::now() - st.last_post.get() >= HEARTBEAT.as_millis() as f64 {
                send_batch(st.clone(), Vec::new());
            }
        });
        let every = (HEARTBEAT.as_millis() / 3) as i32;
        let heartbeat = window()
            .set_interval_with_callback_and_timeout_and_arguments_0(beat.as_ref().unchecked_ref(), every)
            .ok()
            .map(|id| (id, beat));
        Ok(Self { source, state, _listeners: listeners, _on_error: on_error, heartbeat })
    }

    /// Whether messages can be sent (the stream named the connection).
    pub fn is_open(&self) -> bool {
        self.state.key.borrow().is_some() && !self.state.ended.get()
    }

    /// Queues a message's JSON and sends it with whatever else is waiting.
    pub fn send(&self, text: String) {
        let mut queue = self.state.queue.borrow_mut();
        if queue.len() == QUEUE_LIMIT {
            queue.pop_front();
        }
        queue.push_back(text);
        drop(queue);
        flush(self.state.clone());
    }

    /// Closes the stream without reporting it (we are moving to another connection).
    pub fn close(&self) {
        self.state.ended.set(true);
        self.source.close();
        if let Some((id, _)) = &self.heartbeat {
            window().clear_interval_with_handle(*id);
        }
    }
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.close();
    }
}

fn end(st: &State, code: u16) {
    if !st.ended.replace(true) {
        (st.handlers.closed)(code);
    }
}

/// Sends the next batch if none is in flight.
fn flush(st: Rc<State>) {
    if st.in_flight.get() || st.ended.get() || st.key.borrow().is_none() {
        return;
    }
    let body = {
        let mut queue = st.queue.borrow_mut();
        if queue.is_empty() {
            return;
        }
        let mut parts = Vec::new();
        let mut bytes = 0;
        while let Some(next) = queue.front() {
            if !parts.is_empty() && (parts.len() == BATCH_MESSAGES || bytes + next.len() > BATCH_BYTES) {
                break;
            }
            bytes += next.len();
            parts.push(queue.pop_front().expect("looked at it"));
        }
        parts
    };
    send_batch(st, body);
}

/// POSTs `parts` as the next batch (none: a heartbeat), retrying until the server takes
/// it, then sends whatever queued meanwhile.
fn send_batch(st: Rc<State>, parts: Vec<String>) {
    let Some(key) = st.key.borrow().clone() else { return };
    if st.ended.get() {
        return;
    }
    st.in_flight.set(true);
    st.last_post.set(js_sys::Date::now());
    st.batch.set(st.batch.get() + 1);
    let batch = st.batch.get();
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let ack = st.last_event.borrow().clone();
            match post(&key, batch, ack, &parts).await {
                Ok(204) | Ok(200) => break,
                // The connection is gone (expired or closed): start over and resume.
                Ok(404) => {
                    st.in_flight.set(false);
                    return end(&st, protocol::close::SERVICE_RESTART);
                }
                // Refused for good (malformed, too large): these messages cannot go.
                Ok(400) | Ok(403) | Ok(413) => {
                    leptos::logging::warn!("the server refused a batch of {} messages", parts.len());
                    break;
                }
                // Busy, or the request failed: the same batch again (the server
                // ignores a batch number it has already taken).
                _ => {
                    if st.ended.get() {
                        break;
                    }
                    sleep(RETRY_POST).await;
                }
            }
        }
        st.in_flight.set(false);
        flush(st);
    });
}

/// One POST; the response's status, or `Err` when it did not complete.
async fn post(key: &str, batch: u64, ack: Option<String>, parts: &[String]) -> Result<u16, JsValue> {
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&format!("[{}]", parts.join(","))));
    let request = Request::new_with_str_and_init(sse::PATH, &init)?;
    let headers = request.headers();
    headers.set("Content-Type", "application/json")?;
    headers.set(sse::KEY_HEADER, key)?;
    headers.set(sse::BATCH_HEADER, &batch.to_string())?;
    if let Some(id) = ack.filter(|id| !id.is_empty()) {
        headers.set("Last-Event-ID", &id)?;
    }
    let response: Response = JsFuture::from(window().fetch_with_request(&request)).await?.dyn_into()?;
    Ok(response.status())
}

async fn sleep(d: Duration) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, d.as_millis() as i32);
    });
    let _ = JsFuture::from(promise).await;
}
