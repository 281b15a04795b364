//! `GET /ws`: the checks before the upgrade, then one reader and one writer per socket.
//!
//! One task per socket parses, rate-limits and validates every frame itself (so the
//! hub only sees well-formed commands), serializes relayed messages once, in the form
//! the peer receives, and calls the hub directly. The same task drains the socket's
//! bounded outbox and pings; a client that does not read fills the outbox and is
//! closed rather than buffered without bound.

use crate::geo::Geo;
use crate::hub::conn::{Conn, Kill, Outbound};
use crate::hub::{ConnId, Frame, HubHandle, Input};
use crate::limits::{ConnLimits, LimitError};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use governor::{Quota, RateLimiter};
use protocol::codec::decode_client;
use protocol::{ClientMsg, ErrorCode, ResumeToken, ServerMsg, close};
use serde::Deserialize;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// A write that takes longer than this means the client is not reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Without a rate-limited message for this long, a client's flood strikes reset.
const STRIKE_RESET: Duration = Duration::from_secs(5);
/// After the server's close frame, how long it keeps reading (and discarding) for the
/// client's close. Dropping a connection with unread bytes makes the kernel send a
/// reset, which can destroy the close frame (and its code) before the client reads it.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What the WebSocket endpoint needs.
#[derive(Clone, Debug)]
pub struct WsState {
    pub hub: HubHandle,
    pub limits: ConnLimits,
    pub settings: Arc<WsSettings>,
    pub next_id: Arc<AtomicU64>,
    /// Socket tasks, so shutdown can wait for their close frames to go out.
    pub tasks: TaskTracker,
    /// The country of each connection's address.
    pub geo: Geo,
    /// Connections on the fallback transport (`/sse`).
    pub sse: crate::sse::SseRegistry,
    /// Shutdown has begun: `/healthz` fails so that a load balancer stops sending users.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Scores sampled video frames (`None`: no moderation).
    pub moderator: Option<crate::moderation::Moderator>,
    /// `--admin-token`: the admin API on the metrics listener.
    pub admin_token: Option<Arc<str>>,
}

/// Per-socket settings (from the server configuration).
#[derive(Clone, Debug)]
pub struct WsSettings {
    pub allowed_origins: Vec<String>,
    pub max_frame_bytes: usize,
    pub buffer_bytes: usize,
    pub outbox: usize,
    pub outbox_bytes: usize,
    pub rate_per_sec: NonZeroU32,
    pub rate_burst: NonZeroU32,
    pub flood_strikes: u32,
    pub idle_timeout: Duration,
    /// A socket opened with `?hello=1` must send its `hello` within this.
    pub hello_timeout: Duration,
}

/// The `/ws` query string.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// The tab's resume token (the original form; proxies log URLs, so clients now
    /// send it in `hello`). Anything unparsable simply starts a new session.
    resume: Option<String>,
    /// Present: the client's first message is `hello`, which names the session.
    hello: Option<String>,
}

/// Which session a new socket asks for.
#[derive(Debug)]
pub enum Greeting {
    /// Known at the upgrade (`?resume=`, or nothing: a new session).
    Now(Option<ResumeToken>),
    /// In the first message, `hello`.
    Hello,
}

/// Whether the `Origin` header (if any) may open a socket.
///
/// Browsers always send `Origin` on WebSocket requests; other clients (load
/// generators, native apps) may not, and cannot be used for cross-site hijacking.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if !allowed.is_empty() {
        return allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin));
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// `GET /ws`.
pub async fn handler(
    State(state): State<WsState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Admitted { ip, country, permit } = match admit(&state, &headers, peer) {
        Ok(a) => a,
        Err(refused) => return refused.into_response(),
    };
    let greeting = match query.hello {
        Some(_) => Greeting::Hello,
        None => Greeting::Now(query.resume.as_deref().and_then(ResumeToken::parse)),
    };
    let s = &state.settings;
    let tasks = state.tasks.clone();
    upgrade
        .read_buffer_size(s.buffer_bytes)
        .write_buffer_size(s.buffer_bytes)
        .max_write_buffer_size(s.buffer_bytes.max(s.max_frame_bytes) * 4)
        .max_message_size(s.max_frame_bytes)
        .max_frame_size(s.max_frame_bytes)
        .on_upgrade(move |socket: WebSocket| {
            tasks.track_future(async move {
                serve_socket(socket, ip, country, greeting, state).await;
                drop(permit);
            })
        })
}

/// A new connection let in: who it counts as, and its place under the caps.
#[derive(Debug)]
pub struct Admitted {
    /// The address every per-address rule (caps, sessions, reports) counts it under.
    pub ip: IpAddr,
    pub country: Option<String>,
    pub permit: crate::limits::ConnPermit,
}

/// Why a new connection was turned away.
#[derive(Debug)]
pub enum Refused {
    Origin,
    Limit(LimitError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Origin => (StatusCode::FORBIDDEN, "origin not allowed").into_response(),
            Refused::Limit(e @ LimitError::PerIp) => (StatusCode::TOO_MANY_REQUESTS, e.to_string()).into_response(),
            Refused::Limit(e @ LimitError::Total) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        }
    }
}

/// The checks every new connection passes, whatever its transport: its origin, and
/// the per-address and total connection caps.
pub fn admit(state: &WsState, headers: &HeaderMap, peer: SocketAddr) -> Result<Admitted, Refused> {
    if !origin_allowed(headers, &state.settings.allowed_origins) {
        tracing::debug!(%peer, "refused a foreign origin");
        return Err(Refused::Origin);
    }
    let ip = crate::limits::client_key(peer.ip());
    let permit = state.limits.acquire(ip).map_err(Refused::Limit)?;
    Ok(Admitted { ip, country: locate(&state.geo, peer.ip()), permit })
}

/// The country of a connection from `ip` (its full address, not the per-address key),
/// counted in the metrics when a database is in use.
fn locate(geo: &Geo, ip: IpAddr) -> Option<String> {
    if !geo.enabled() {
        return None;
    }
    let country = geo.country(ip);
    metrics::counter!(crate::metrics::GEOIP_LOOKUPS, "found" => if country.is_some() { "yes" } else { "no" })
        .increment(1);
    country
}

/// Runs one socket until it closes: one task reads, writes and pings, so a message
/// for this socket wakes nothing but this task. Generic over the transport so it can
/// be driven by anything that speaks axum's `Message`.
pub async fn serve_socket<S>(mut socket: S, ip: IpAddr, country: Option<String>, greeting: Greeting, state: WsState)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Send + Unpin + 'static,
{
    let resume = match greeting {
        Greeting::Now(resume) => resume,
        Greeting::Hello => match read_hello(&mut socket, state.settings.hello_timeout).await {
            Ok(resume) => resume,
            Err(Ending::Close(code, reason)) => {
                let _ = send_close(&mut socket, code, reason).await;
                linger(&mut socket).await;
                return;
            }
            Err(Ending::Drop) => return,
        },
    };
    let settings = state.settings.clone();
    let (tx, mut rx) = mpsc::channel(settings.outbox);
    let kill = Arc::new(Kill::default());
    let id = ConnId(state.next_id.fetch_add(1, Ordering::Relaxed));
    let queued = Arc::new(AtomicUsize::new(0));
    let conn = Conn::new(id, ip, tx, kill.clone(), queued.clone(), settings.outbox_bytes);
    if state.hub.connect(conn.clone(), country, resume).is_err() {
        let _ = send_close(&mut socket, close::SERVICE_RESTART, "server restarting").await;
        return;
    }
    let mut reader = Reader {
        conn,
        replies: Vec::new(),
        hub: state.hub.clone(),
        limiter: RateLimiter::direct(Quota::per_second(settings.rate_per_sec).allow_burst(settings.rate_burst)),
        strikes: 0,
        last_strike: Instant::now(),
        flood_strikes: settings.flood_strikes,
    };
    let idle = settings.idle_timeout;
    let mut ping = tokio::time::interval_at(Instant::now() + idle / 3, idle / 3);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One idle deadline, moved on only when it fires (a timer per frame would cost a
    // timer-wheel update per message).
    let mut last_heard = Instant::now();
    let deadline = tokio::time::sleep(idle);
    let killed = kill.triggered();
    tokio::pin!(deadline, killed);
    let ending: Ending = loop {
        tokio::select! {
            biased;
            _ = &mut killed => break Ending::Close(close::POLICY, "not reading"),
            out = rx.recv() => {
                let Some(out) = out else { break Ending::Drop };
                let batch = write_batch(&mut socket, &mut rx, Some(out), &queued, &mut []);
                if let Err(ending) = bounded(batch, kill.triggered()).await {
                    break ending;
                }
            }
            next = socket.next() => {
                last_heard = Instant::now();
                let msg = match next {
                    None => break Ending::Drop,
                    Some(Err(e)) if is_too_large(&e) => break Ending::Close(close::TOO_LARGE, "message too big"),
                    Some(Err(_)) => break Ending::Drop,
                    Some(Ok(msg)) => msg,
                };
                let flow = match msg {
                    Message::Text(text) => reader.text(text.as_str()),
                    Message::Binary(_) => reader.binary(),
                    Message::Ping(_) | Message::Pong(_) => Flow::Continue,
                    Message::Close(_) => break Ending::Drop,
                };
                // What the hub answered this client goes out now (see `HubHandle::input`).
                if !reader.replies.is_empty() {
                    let batch = write_batch(&mut socket, &mut rx, None, &queued, &mut reader.replies);
                    let written = bounded(batch, kill.triggered()).await;
                    reader.replies.clear();
                    if let Err(ending) = written {
                        break ending;
                    }
                }
                match flow {
                    Flow::Continue => {}
                    Flow::Flood => break Ending::Close(close::POLICY, "too many messages"),
                    Flow::HubGone => break Ending::Close(close::SERVICE_RESTART, "server restarting"),
                }
            }
            _ = &mut deadline => {
                let due = last_heard + idle;
                if Instant::now() >= due {
                    break Ending::Close(close::POLICY, "idle timeout");
                }
                deadline.as_mut().reset(due);
            }
            _ = ping.tick() => {
                if !matches!(tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Ping(Default::default()))).await, Ok(Ok(()))) {
                    break Ending::Drop;
                }
            }
        }
    };
    let _ = state.hub.disconnect(id);
    match ending {
        Ending::Close(code, reason) => {
            if send_close(&mut socket, code, reason).await.is_ok() {
                linger(&mut socket).await;
            }
        }
        Ending::Drop => {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close()).await;
        }
    }
}

/// Reads the `hello` that a socket opened with `?hello=1` starts with: the token of
/// the session to resume, if any (anything unparsable starts a new session, as with
/// `?resume=`).
async fn read_hello<S>(socket: &mut S, timeout: Duration) -> Result<Option<ResumeToken>, Ending>
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let first = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Binary(_))) => return Err(Ending::Close(close::POLICY, "expected hello")),
                Some(Err(e)) if is_too_large(&e) => return Err(Ending::Close(close::TOO_LARGE, "message too big")),
                Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(Ending::Drop),
            }
        }
    };
    let text =
        tokio::time::timeout(timeout, first).await.map_err(|_| Ending::Close(close::POLICY, "no hello in time"))??;
    match decode_client(text.as_str()) {
        Ok(ClientMsg::Hello { resume_token }) => Ok(resume_token.as_deref().and_then(ResumeToken::parse)),
        _ => Err(Ending::Close(close::POLICY, "expected hello")),
    }
}

/// After the server's close frame: reads and discards until the client's close
/// frame, the end of the stream, or [`CLOSE_LINGER`], so the connection is not torn
/// down with unread bytes (see [`CLOSE_LINGER`]).
async fn linger<S>(socket: &mut S)
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let drain = async {
        // A broken frame is an error, and reading may go on past it; a stream that
        // only errs ends here all the same.
        let mut errors = 0;
        while let Some(next) = socket.next().await {
            match next {
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(_) if errors < 16 => errors += 1,
                Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
}

/// How a socket's task ends.
enum Ending {
    /// Send a close frame with this code first.
    Close(u16, &'static str),
    /// The connection is gone or broken: just let it go.
    Drop,
}

/// Runs a write to completion, unless it stalls for [`WRITE_TIMEOUT`] or the socket
/// is killed meanwhile. Most writes complete at once: only a write that has to wait
/// pays for a timer.
async fn bounded(
    write: impl Future<Output = Result<(), Ending>>,
    killed: impl Future<Output = ()>,
) -> Result<(), Ending> {
    let mut write = std::pin::pin!(write);
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
        return done;
    }
    tokio::select! {
        biased;
        _ = killed => Err(Ending::Close(close::POLICY, "not reading")),
        r = tokio::time::timeout(WRITE_TIMEOUT, write) => r.unwrap_or(Err(Ending::Drop)),
    }
}

/// Writes `replies` (frames the hub handed this task directly, older than anything
/// in the outbox), then `first` and everything else already queued, then flushes
/// once. `Err` says how to end (a close the hub asked for, or a broken socket).
async fn write_batch<S>(
    socket: &mut S,
    rx: &mut mpsc::Receiver<Outbound>,
    first: Option<Outbound>,
    queued: &AtomicUsize,
    replies: &mut [Frame],
) -> Result<(), Ending>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    for frame in replies {
        socket.feed(Message::Text(std::mem::take(frame))).await.map_err(|_| Ending::Drop)?;
    }
    let mut next = first.or_else(|| rx.try_recv().ok());
    while let Some(out) = next.take() {
        match out {
            Outbound::Frame(text) => {
                Conn::taken(queued, text.len());
                socket.feed(Message::Text(text)).await.map_err(|_| Ending::Drop)?;
            }
            Outbound::Close(code, reason) => return Err(Ending::Close(code, reason)),
        }
        next = rx.try_recv().ok();
    }
    socket.flush().await.map_err(|_| Ending::Drop)
}

fn is_too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(tungstenite::Error::Capacity(_)) = err.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

enum Flow {
    Continue,
    Flood,
    HubGone,
}

struct Reader {
    conn: Conn,
    /// Frames the hub handed back for this client (see `HubHandle::input`).
    replies: Vec<Frame>,
    hub: HubHandle,
    limiter: governor::DefaultDirectRateLimiter,
    strikes: u32,
    last_strike: Instant,
    flood_strikes: u32,
}

impl Reader {
    /// Answers the client itself, in order with what the hub sends it.
    fn reply(&self, msg: &ServerMsg) {
        let _ = self.conn.send(msg.to_json().into());
    }

    /// Applies the rate limit; `Some(flow)` when the message must go no further.
    fn limited(&mut self) -> Option<Flow> {
        if self.limiter.check().is_ok() {
            return None;
        }
        let now = Instant::now();
        if now.duration_since(self.last_strike) > STRIKE_RESET {
            self.strikes = 0;
        }
        self.strikes += 1;
        self.last_strike = now;
        if self.strikes > self.flood_strikes {
            return Some(Flow::Flood);
        }
        self.hub.count_rate_limited();
        self.reply(&ServerMsg::error(ErrorCode::RateLimited, "too many messages; this one was dropped", None));
        Some(Flow::Continue)
    }

    fn binary(&mut self) -> Flow {
        if let Some(flow) = self.limited() {
            return flow;
        }
        self.reply(&ServerMsg::error(ErrorCode::BadMessage, "binary frames are not supported; send JSON text", None));
        Flow::Continue
    }

    fn text(&mut self, text: &str) -> Flow {
        if let Some(flow) = self.limited() {
            return flow;
        }
        let msg = match decode_client(text) {
            Ok(msg) => msg,
            Err(e) => {
                crate::hub::exporter::client_error(e.code);
                self.reply(&e.to_server_msg());
                return Flow::Continue;
            }
        };
        let received = std::time::Instant::now();
        let input = Input::from_client(self.conn.id, msg);
        let relay = matches!(input, Input::Relay { .. });
        match self.hub.input(self.conn.id, input, &mut self.replies) {
            Ok(step) => {
                if relay && step.relayed_now {
                    self.hub.record_relay_latency(received.elapsed());
                }
                Flow::Continue
            }
            Err(_) => Flow::HubGone,
        }
    }
}

async fn send_close<S>(sink: &mut S, code: u16, reason: &'static str) -> Result<(), ()>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    match tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
