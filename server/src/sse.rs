//! The fallback transport, for networks that break WebSockets: server-sent events
//! carry the server's messages, POSTs carry the client's, in batches. The messages are
//! the same JSON as on `/ws`; the framing is [`protocol::sse`].
//!
//! [`SseSocket`] makes such a connection look like a WebSocket to
//! [`crate::ws::serve_socket`], so everything past the transport (the hub, `hello`,
//! rate limits, the outbox, idle timeouts) is the same code for both; the checks at
//! the door (origin, per-address and total caps) are [`crate::ws::admit`]'s. A
//! connection whose event stream is gone for [`REATTACH_WINDOW`] ends like a dropped
//! socket: its session keeps its grace period, and the client resumes it.
//!
//! Each connection keeps a log of its events: those not yet handed to a stream
//! (bounded like a socket's outbox: a client that does not read is closed by the
//! socket task's write timeout) and, for a stream that reconnects with
//! `Last-Event-ID`, the last [`REPLAY_EVENTS`] it was handed (bounded in bytes too,
//! and trimmed by the client's acknowledgements).

use crate::ws::{self, Greeting, WsState};
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, Stream};
use protocol::close;
use protocol::sse::{self, parse_event_id};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Sleep;

/// How long a connection waits for its event stream to come back before it ends.
/// Short: `EventSource` comes back within about a second of a cut, and a tab that
/// closed must not stay matchable; a longer gap is a resume, which loses nothing
/// either (the hub keeps a session's chat while it is away).
pub const REATTACH_WINDOW: Duration = Duration::from_secs(3);
/// A comment this often keeps an idle stream alive through proxies.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Events kept for replay after they went out (also bounded by the outbox's bytes).
const REPLAY_EVENTS: usize = 256;
/// Messages POSTed and not yet read by the connection's task.
const INBOX_MESSAGES: usize = 256;
/// Most messages in one POST.
const BATCH_MESSAGES: usize = 64;

/// The largest POST body: a batch of small messages, or one message of the largest
/// size a WebSocket frame may have, with room to spare.
pub fn max_post_bytes(max_frame_bytes: usize) -> usize {
    2 * max_frame_bytes
}

/// Every fallback connection of this node, by key.
#[derive(Clone, Debug, Default)]
pub struct SseRegistry {
    conns: Arc<Mutex<HashMap<String, Arc<Shared>>>>,
}

impl SseRegistry {
    fn get(&self, key: &str) -> Option<Arc<Shared>> {
        lock(&self.conns).get(key).cloned()
    }

    /// Open fallback connections (diagnostics and tests).
    pub fn len(&self) -> usize {
        lock(&self.conns).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One connection's state, shared by its task ([`SseSocket`]), its event stream and
/// the POSTs.
#[derive(Debug)]
struct Shared {
    key: String,
    state: Mutex<Conn>,
    /// Wakes the event stream: new events, or it has been replaced.
    events: Notify,
    /// Most bytes of events not yet handed to a stream.
    max_unsent_bytes: usize,
    /// Most events not yet handed to a stream.
    max_unsent: usize,
}

#[derive(Debug, Default)]
struct Conn {
    /// The id the next event gets.
    next_id: u64,
    /// Events in id order: those already handed to a stream (kept for replay), then
    /// those not yet.
    log: VecDeque<(u64, Bytes)>,
    /// Id of the first event not yet handed to a stream.
    unsent_from: u64,
    unsent_bytes: usize,
    sent_bytes: usize,
    /// The current event stream's number; `None` while none is attached.
    attached: Option<u64>,
    attachments: u64,
    /// Messages POSTed, for the task to read.
    inbox: VecDeque<Message>,
    last_batch: Option<u64>,
    /// The task is waiting for a message.
    reader: Option<Waker>,
    /// The task is waiting for room in the log.
    writer: Option<Waker>,
    /// The server closed the connection (its `close` event is the last).
    closed: bool,
}

impl Conn {
    fn push_event(&mut self, event: Bytes) {
        self.unsent_bytes += event.len();
        self.log.push_back((self.next_id, event));
        self.next_id += 1;
    }

    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Every event not yet handed to a stream, now handed out.
    fn take_unsent(&mut self, max_kept_bytes: usize) -> Vec<Bytes> {
        let from = self.unsent_from;
        let out = self.log.iter().filter(|(id, _)| *id >= from).map(|(_, e)| e.clone()).collect();
        self.all_sent(max_kept_bytes);
        out
    }

    /// For a stream (re)attaching after event `after` (`None`: from the first): every
    /// later event, all now handed out. `None` when the log no longer holds them all,
    /// or `after` is from the future.
    fn replay(&mut self, after: Option<u64>, max_kept_bytes: usize) -> Option<Vec<Bytes>> {
        let from = after.map_or(Some(0), |a| a.checked_add(1))?;
        let first_kept = self.log.front().map_or(self.next_id, |(id, _)| *id);
        if from < first_kept || from > self.next_id {
            return None;
        }
        let out = self.log.iter().filter(|(id, _)| *id >= from).map(|(_, e)| e.clone()).collect();
        self.all_sent(max_kept_bytes);
        Some(out)
    }

    /// The client has every event up to `upto`: they need no replay.
    fn acknowledge(&mut self, upto: u64) {
        while let Some((id, e)) = self.log.front() {
            if *id > upto || *id >= self.unsent_from {
                break;
            }
            self.sent_bytes -= e.len();
            self.log.pop_front();
        }
    }

    /// Marks the whole log handed out, keeps a bounded tail of it for replay, and
    /// makes room for the writer.
    fn all_sent(&mut self, max_kept_bytes: usize) {
        self.sent_bytes += self.unsent_bytes;
        self.unsent_bytes = 0;
        self.unsent_from = self.next_id;
        while self.log.len() > REPLAY_EVENTS || self.sent_bytes > max_kept_bytes {
            let Some((_, e)) = self.log.pop_front() else { break };
            self.sent_bytes -= e.len();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

fn event(key: &str, n: u64, kind: Option<&str>, data: &str) -> Bytes {
    let kind = kind.map(|k| format!("event: {k}\n")).unwrap_or_default();
    Bytes::from(format!("id: {}\n{kind}data: {data}\n\n", sse::event_id(key, n)))
}

fn close_data(code: u16, reason: &str) -> String {
    serde_json::to_string(&sse::Close { code, reason: reason.to_string() }).expect("plain data serializes")
}

/// A stream that says only "closed with `code`": for a `Last-Event-ID` that cannot be
/// served.
fn closed_stream(code: u16, reason: &str) -> Response {
    stream_response(Body::from(format!("event: {}\ndata: {}\n\n", sse::CLOSE_EVENT, close_data(code, reason))))
}

fn stream_response(body: Body) -> Response {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx and some others buffer responses unless told not to.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// `GET /sse`: a new connection, or (with `Last-Event-ID`) an existing one's stream.
pub async fn open(
    State(state): State<WsState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(parse_event_id);
    if let Some((key, after)) = last {
        // The key is the credential: only a client that got it from the stream has it.
        let Some(shared) = state.sse.get(key) else {
            return closed_stream(close::SERVICE_RESTART, "connection expired");
        };
        return match attach(&shared, Some(after)) {
            Some(body) => stream_response(body),
            None => closed_stream(close::SERVICE_RESTART, "events lost"),
        };
    }
    let admitted = match ws::admit(&state, &headers, peer) {
        Ok(a) => a,
        Err(refused) => return refused.into_response(),
    };
    let key = uuid::Uuid::new_v4().simple().to_string();
    let settings = &state.settings;
    let shared = Arc::new(Shared {
        key: key.clone(),
        state: Mutex::new(Conn::default()),
        events: Notify::new(),
        max_unsent_bytes: settings.outbox_bytes,
        max_unsent: settings.outbox,
    });
    {
        let mut conn = lock(&shared.state);
        let data = serde_json::to_string(&sse::Stream { key: key.clone() }).expect("plain data serializes");
        let first =
            format!("retry: 1000\n{}", String::from_utf8_lossy(&event(&key, 0, Some(sse::STREAM_EVENT), &data)));
        conn.push_event(Bytes::from(first));
    }
    lock(&state.sse.conns).insert(key.clone(), shared.clone());
    let body = attach(&shared, None).expect("a new connection's log is whole");
    let socket =
        SseSocket { shared, registry: state.sse.clone(), detached: None, max_frame_bytes: settings.max_frame_bytes };
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        let ws::Admitted { ip, country, permit } = admitted;
        ws::serve_socket(socket, ip, country, Greeting::Hello, state).await;
        drop(permit);
    });
    stream_response(body)
}

/// Makes a new event stream the connection's one (the one before ends), starting
/// after event `after` (`None`: from the first). `None` when that cannot be served.
fn attach(shared: &Arc<Shared>, after: Option<u64>) -> Option<Body> {
    let (number, first) = {
        let mut conn = lock(&shared.state);
        let first = conn.replay(after, shared.max_unsent_bytes)?;
        conn.attachments += 1;
        conn.attached = Some(conn.attachments);
        conn.wake_reader();
        (conn.attachments, first)
    };
    // The stream before this one ends.
    shared.events.notify_waiters();
    let stream = EventStream { shared: shared.clone(), number, ready: first.into(), wait: None, keepalive: None };
    Some(Body::from_stream(stream))
}

/// One attachment's event stream: what the log gets, as it gets it, with keep-alive
/// comments between. It ends when another stream takes over or the connection is
/// closed and said so.
struct EventStream {
    shared: Arc<Shared>,
    number: u64,
    ready: VecDeque<Bytes>,
    wait: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    keepalive: Option<Pin<Box<Sleep>>>,
}

impl Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.keepalive = None;
                return Poll::Ready(Some(Ok(event)));
            }
            // Register for a wake-up before looking, so no event slips between.
            if self.wait.is_none() {
                let shared = self.shared.clone();
                self.wait = Some(Box::pin(async move { shared.events.notified().await }));
            }
            let wait = self.wait.as_mut().expect("set above");
            let woken = wait.as_mut().poll(cx).is_ready();
            if woken {
                self.wait = None;
            }
            {
                let shared = self.shared.clone();
                let mut conn = lock(&shared.state);
                if conn.attached != Some(self.number) {
                    return Poll::Ready(None);
                }
                if conn.unsent_from < conn.next_id {
                    let events = conn.take_unsent(shared.max_unsent_bytes);
                    self.ready.extend(events);
                    continue;
                }
                if conn.closed {
                    return Poll::Ready(None);
                }
            }
            if woken {
                continue;
            }
            let keepalive = self.keepalive.get_or_insert_with(|| Box::pin(tokio::time::sleep(KEEPALIVE)));
            if keepalive.as_mut().poll(cx).is_ready() {
                self.keepalive = None;
                return Poll::Ready(Some(Ok(Bytes::from_static(b": keep-alive\n\n"))));
            }
            return Poll::Pending;
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let mut conn = lock(&self.shared.state);
        if conn.attached == Some(self.number) {
            // The client went away (or its proxy did): wait for it to come back.
            conn.attached = None;
            conn.wake_reader();
        }
    }
}

/// `POST /sse`: a batch of client messages for the connection `X-Stream-Key` names.
pub async fn post(State(state): State<WsState>, headers: HeaderMap, body: Bytes) -> Response {
    if !ws::origin_allowed(&headers, &state.settings.allowed_origins) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let Some(shared) = headers.get(sse::KEY_HEADER).and_then(|k| k.to_str().ok()).and_then(|k| state.sse.get(k)) else {
        return (StatusCode::NOT_FOUND, "no such connection: open a new one").into_response();
    };
    let batch = match headers.get(sse::BATCH_HEADER).map(|b| b.to_str().ok().and_then(|b| b.parse::<u64>().ok())) {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => return (StatusCode::BAD_REQUEST, "X-Batch must be a number").into_response(),
    };
    let messages = match split_batch(&body, state.settings.max_frame_bytes) {
        Ok(m) => m,
        Err(BatchError::TooLarge) => {
            // As on /ws: a message over the limit ends the connection (1009).
            close_now(&shared, close::TOO_LARGE, "message too big");
            return (StatusCode::PAYLOAD_TOO_LARGE, "message too big").into_response();
        }
        Err(BatchError::Malformed(why)) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let mut conn = lock(&shared.state);
    if conn.closed {
        return (StatusCode::NOT_FOUND, "connection closed: open a new one").into_response();
    }
    if let (Some(n), Some(last)) = (batch, conn.last_batch)
        && n <= last
    {
        return StatusCode::NO_CONTENT.into_response(); // a retry of a batch already taken
    }
    if conn.inbox.len() + messages.len() + 1 > INBOX_MESSAGES {
        return (StatusCode::TOO_MANY_REQUESTS, "too many messages waiting; retry the batch").into_response();
    }
    if batch.is_some() {
        conn.last_batch = batch;
    }
    if let Some((key, upto)) = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(parse_event_id)
        && key == shared.key
    {
        conn.acknowledge(upto);
    }
    conn.inbox.extend(messages.into_iter().map(Message::Text));
    // Every POST, an empty batch too, is the client's sign of life (a WebSocket's
    // pong): without one for the idle timeout the connection ends.
    conn.inbox.push_back(Message::Pong(Bytes::new()));
    conn.wake_reader();
    StatusCode::NO_CONTENT.into_response()
}

enum BatchError {
    TooLarge,
    Malformed(&'static str),
}

/// The messages of a POST body: a JSON array of messages, or one message. Each is
/// passed on as its own text, as a WebSocket frame would be (the task decodes and
/// validates it exactly as on `/ws`).
fn split_batch(body: &[u8], max_frame_bytes: usize) -> Result<Vec<axum::extract::ws::Utf8Bytes>, BatchError> {
    let text = std::str::from_utf8(body).map_err(|_| BatchError::Malformed("the body is not UTF-8"))?;
    let trimmed = text.trim_start();
    if !trimmed.starts_with('[') {
        if text.len() > max_frame_bytes {
            return Err(BatchError::TooLarge);
        }
        return Ok(vec![text.into()]);
    }
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(text).map_err(|_| BatchError::Malformed("the body is not a JSON array of messages"))?;
    if items.len() > BATCH_MESSAGES {
        return Err(BatchError::Malformed("too many messages in one batch"));
    }
    items
        .into_iter()
        .map(|raw| if raw.get().len() > max_frame_bytes { Err(BatchError::TooLarge) } else { Ok(raw.get().into()) })
        .collect()
}

/// Ends a connection from outside its task: its `close` event goes out, and its task
/// reads the end of the stream.
fn close_now(shared: &Shared, code: u16, reason: &str) {
    let mut conn = lock(&shared.state);
    if !conn.closed {
        let id = conn.next_id;
        conn.push_event(event(&shared.key, id, Some(sse::CLOSE_EVENT), &close_data(code, reason)));
        conn.closed = true;
    }
    conn.wake_reader();
    drop(conn);
    shared.events.notify_waiters();
}

/// A fallback connection as [`crate::ws::serve_socket`] sees it: a stream of the
/// client's messages and a sink for the server's.
pub struct SseSocket {
    shared: Arc<Shared>,
    registry: SseRegistry,
    /// Since when no event stream has been attached, and the deadline for one.
    detached: Option<Pin<Box<Sleep>>>,
    max_frame_bytes: usize,
}

impl Drop for SseSocket {
    fn drop(&mut self) {
        lock(&self.registry.conns).remove(&self.shared.key);
        let mut conn = lock(&self.shared.state);
        conn.closed = true;
        drop(conn);
        self.shared.events.notify_waiters();
    }
}

impl Stream for SseSocket {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let shared = self.shared.clone();
        let mut conn = lock(&shared.state);
        if let Some(msg) = conn.inbox.pop_front() {
            if let Message::Text(t) = &msg
                && t.len() > self.max_frame_bytes
            {
                return Poll::Ready(Some(Err(axum::Error::new("message too big"))));
            }
            return Poll::Ready(Some(Ok(msg)));
        }
        if conn.closed {
            return Poll::Ready(None);
        }
        conn.reader = Some(cx.waker().clone());
        let attached = conn.attached.is_some();
        drop(conn);
        if attached {
            self.detached = None;
            return Poll::Pending;
        }
        let deadline = self.detached.get_or_insert_with(|| Box::pin(tokio::time::sleep(REATTACH_WINDOW)));
        if deadline.as_mut().poll(cx).is_ready() {
            // Gone for good, like a socket that dropped.
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl Sink<Message> for SseSocket {
    type Error = axum::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut conn = lock(&self.shared.state);
        if conn.closed {
            return Poll::Ready(Err(axum::Error::new("connection closed")));
        }
        let unsent = (conn.next_id - conn.unsent_from) as usize;
        if unsent < self.shared.max_unsent && conn.unsent_bytes < self.shared.max_unsent_bytes {
            return Poll::Ready(Ok(()));
        }
        // The client is not reading its stream (or has none): wait for room.
        conn.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), Self::Error> {
        let key = &self.shared.key;
        let mut conn = lock(&self.shared.state);
        match msg {
            Message::Text(text) => {
                let id = conn.next_id;
                conn.push_event(event(key, id, None, text.as_str()));
            }
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map_or((1000, String::new()), |CloseFrame { code, reason }| (code, reason.as_str().to_owned()));
                if !conn.closed {
                    let id = conn.next_id;
                    conn.push_event(event(key, id, Some(sse::CLOSE_EVENT), &close_data(code, &reason)));
                    conn.closed = true;
                    conn.wake_reader();
                }
            }
            // The stream's keep-alive comments stand for pings; POSTs for pongs.
            Message::Ping(_) | Message::Pong(_) | Message::Binary(_) => {}
        }
        drop(conn);
        self.shared.events.notify_waiters();
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut conn = lock(&self.shared.state);
        conn.closed = true;
        drop(conn);
        self.shared.events.notify_waiters();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_as_the_protocol_says() {
        let framed = event("k", 3, Some(sse::CLOSE_EVENT), "{}");
        assert_eq!(&framed[..], b"id: k.3\nevent: close\ndata: {}\n\n");
        let parsed = sse::Parser::default().push(std::str::from_utf8(&framed).unwrap());
        assert_eq!(parsed[0].id.as_deref(), Some("k.3"));
    }

    #[test]
    fn a_batch_is_an_array_or_one_message_and_each_is_bounded() {
        let ok = split_batch(br#"[{"type":"stop"},{"type":"next"}]"#, 100).ok().unwrap();
        assert_eq!(ok.iter().map(|m| m.as_str()).collect::<Vec<_>>(), [r#"{"type":"stop"}"#, r#"{"type":"next"}"#]);
        assert_eq!(split_batch(br#"{"type":"stop"}"#, 100).ok().unwrap().len(), 1);
        assert!(matches!(split_batch(br#"[{"type":"stop"}]"#, 10), Err(BatchError::TooLarge)));
        assert!(matches!(split_batch(b"[1,", 100), Err(BatchError::Malformed(_))));
        assert!(matches!(split_batch(&[0xff, 0xfe], 100), Err(BatchError::Malformed(_))));
        let many = format!("[{}]", vec!["{}"; BATCH_MESSAGES + 1].join(","));
        assert!(matches!(split_batch(many.as_bytes(), 100), Err(BatchError::Malformed(_))));
    }

    #[test]
    fn replay_serves_what_came_after_and_refuses_what_is_gone() {
        let mut conn = Conn::default();
        for i in 0..5 {
            conn.push_event(Bytes::from(format!("e{i}")));
        }
        assert_eq!(conn.replay(None, 1 << 20).unwrap(), ["e0", "e1", "e2", "e3", "e4"]);
        assert_eq!(conn.replay(Some(1), 1 << 20).unwrap(), ["e2", "e3", "e4"]);
        assert_eq!(conn.replay(Some(4), 1 << 20).unwrap(), Vec::<Bytes>::new());
        assert!(conn.replay(Some(5), 1 << 20).is_none(), "an id from the future");
        assert!(conn.replay(Some(u64::MAX), 1 << 20).is_none());
        conn.push_event(Bytes::from("e5"));
        assert_eq!(conn.take_unsent(1 << 20), ["e5"]);
        assert!(conn.take_unsent(1 << 20).is_empty());
        for i in 6..(6 + REPLAY_EVENTS as u64 + 10) {
            conn.push_event(Bytes::from(format!("e{i}")));
        }
        let _ = conn.take_unsent(1 << 20);
        assert_eq!(conn.log.len(), REPLAY_EVENTS, "the replay log is bounded");
        assert!(conn.replay(Some(0), 1 << 20).is_none(), "events that are gone cannot be replayed");
        assert_eq!((conn.unsent_bytes, conn.sent_bytes), (0, conn.log.iter().map(|(_, e)| e.len()).sum()));
        conn.acknowledge(conn.next_id - 3);
        assert_eq!(conn.log.len(), 2, "what the client has needs no replay");
    }

    #[test]
    fn the_replay_log_is_bounded_in_bytes_too() {
        let mut conn = Conn::default();
        for _ in 0..10 {
            conn.push_event(Bytes::from(vec![b'x'; 100]));
        }
        let _ = conn.take_unsent(350);
        assert_eq!(conn.log.len(), 3);
        assert_eq!(conn.sent_bytes, 300);
    }
}
