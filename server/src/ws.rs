//! `GET /ws`: the checks before the upgrade, then one reader and one writer per socket.
//!
//! The reader parses, rate-limits and validates every frame itself (so the hub only
//! sees well-formed commands) and serializes relayed messages once, in the form the
//! peer receives. The writer drains a bounded outbox and pings; a client that does
//! not read fills the outbox and is closed rather than buffered without bound.

use crate::conn::{Conn, ConnId, Outbound};
use crate::hub::{Command, HubHandle, RelayKind};
use crate::limits::{ConnLimits, LimitError};
use crate::metrics as m;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use governor::{Quota, RateLimiter};
use protocol::codec::decode_client;
use protocol::{ClientMsg, ErrorCode, ResumeToken, ServerMsg, close};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A write that takes longer than this means the client is not reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Without a rate-limited message for this long, a client's flood strikes reset.
const STRIKE_RESET: Duration = Duration::from_secs(5);

/// What the WebSocket endpoint needs.
#[derive(Clone, Debug)]
pub struct WsState {
    pub hub: HubHandle,
    pub limits: ConnLimits,
    pub settings: Arc<WsSettings>,
    pub next_id: Arc<AtomicU64>,
    /// Socket tasks, so shutdown can wait for their close frames to go out.
    pub tasks: TaskTracker,
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
}

/// The `/ws` query string.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// The tab's resume token. Anything unparsable simply starts a new session.
    resume: Option<String>,
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
    if !origin_allowed(&headers, &state.settings.allowed_origins) {
        tracing::debug!(%peer, "refused a foreign origin");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let ip = peer.ip().to_canonical();
    let permit = match state.limits.acquire(ip) {
        Ok(p) => p,
        Err(e @ LimitError::PerIp) => {
            return (StatusCode::TOO_MANY_REQUESTS, e.to_string()).into_response();
        }
        Err(e @ LimitError::Total) => {
            return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
        }
    };
    let resume = query.resume.as_deref().and_then(ResumeToken::parse);
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
                serve_socket(socket, ip, resume, state).await;
                drop(permit);
            })
        })
}

/// Runs one socket until it closes. Generic over the transport so it can be driven
/// by anything that speaks axum's `Message`.
pub async fn serve_socket<S>(socket: S, ip: IpAddr, resume: Option<ResumeToken>, state: WsState)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Send + 'static,
{
    let settings = state.settings.clone();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(settings.outbox);
    let kill = CancellationToken::new();
    let id = ConnId(state.next_id.fetch_add(1, Ordering::Relaxed));
    let queued = Arc::new(AtomicUsize::new(0));
    let conn = Conn::new(id, ip, tx, kill.clone(), queued.clone(), settings.outbox_bytes);
    let writer = tokio::spawn(write_loop(sink, rx, queued, kill.clone(), settings.idle_timeout / 3));
    if state.hub.send(Command::Connect { conn: conn.clone(), resume }).await.is_err() {
        conn.close(close::SERVICE_RESTART, "server restarting");
    } else {
        let mut reader = Reader {
            conn: conn.clone(),
            hub: state.hub.clone(),
            limiter: RateLimiter::direct(Quota::per_second(settings.rate_per_sec).allow_burst(settings.rate_burst)),
            strikes: 0,
            last_strike: Instant::now(),
            flood_strikes: settings.flood_strikes,
        };
        loop {
            let next = tokio::select! {
                biased;
                _ = kill.cancelled() => break,
                next = tokio::time::timeout(settings.idle_timeout, stream.next()) => next,
            };
            let msg = match next {
                Err(_elapsed) => {
                    conn.close(close::POLICY, "idle timeout");
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    if is_too_large(&e) {
                        conn.close(close::TOO_LARGE, "message too big");
                    }
                    break;
                }
                Ok(Some(Ok(msg))) => msg,
            };
            let flow = match msg {
                Message::Text(text) => reader.text(text.as_str()).await,
                Message::Binary(_) => reader.binary(),
                Message::Ping(_) | Message::Pong(_) => Flow::Continue,
                Message::Close(_) => break,
            };
            match flow {
                Flow::Continue => {}
                Flow::Flood => {
                    conn.close(close::POLICY, "too many messages");
                    break;
                }
                Flow::HubGone => {
                    conn.close(close::SERVICE_RESTART, "server restarting");
                    break;
                }
            }
        }
        let _ = state.hub.send(Command::Disconnect { conn: id }).await;
    }
    drop(conn);
    // The writer ends once every handle to the outbox is gone or it has sent a close.
    let _ = writer.await;
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
    hub: HubHandle,
    limiter: governor::DefaultDirectRateLimiter,
    strikes: u32,
    last_strike: Instant,
    flood_strikes: u32,
}

impl Reader {
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
        metrics::counter!(m::RATE_LIMITED).increment(1);
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

    async fn text(&mut self, text: &str) -> Flow {
        if let Some(flow) = self.limited() {
            return flow;
        }
        let msg = match decode_client(text) {
            Ok(msg) => msg,
            Err(e) => {
                metrics::counter!(m::CLIENT_ERRORS, "code" => e.code.as_str()).increment(1);
                self.reply(&e.to_server_msg());
                return Flow::Continue;
            }
        };
        let conn = self.conn.id;
        let received = std::time::Instant::now();
        // Relayed messages are serialized here, once, in the form the peer receives.
        let cmd = match msg {
            ClientMsg::Signal { match_id, payload } => Command::Relay {
                conn,
                match_id,
                kind: RelayKind::Signal,
                frame: ServerMsg::Signal { match_id, payload }.to_json().into(),
                received,
            },
            ClientMsg::Chat { match_id, text } => Command::Relay {
                conn,
                match_id,
                kind: RelayKind::Chat,
                frame: ServerMsg::Chat { match_id, text }.to_json().into(),
                received,
            },
            ClientMsg::Typing { match_id, typing } => Command::Relay {
                conn,
                match_id,
                kind: RelayKind::Typing,
                frame: ServerMsg::Typing { match_id, typing }.to_json().into(),
                received,
            },
            msg => Command::Client { conn, msg },
        };
        match self.hub.send(cmd).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::HubGone,
        }
    }
}

async fn write_loop<S>(
    mut sink: S,
    mut rx: mpsc::Receiver<Outbound>,
    queued: Arc<AtomicUsize>,
    kill: CancellationToken,
    ping_every: Duration,
) where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = kill.cancelled() => {
                let _ = send_close(&mut sink, close::POLICY, "not reading").await;
                break;
            }
            out = rx.recv() => {
                let Some(out) = out else {
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
                    break;
                };
                // Queue everything already waiting, then flush once.
                let mut next = Some(out);
                let mut closing = None;
                let mut ok = true;
                while let Some(out) = next.take() {
                    match out {
                        Outbound::Frame(text) => {
                            Conn::taken(&queued, text.len());
                            if !matches!(tokio::time::timeout(WRITE_TIMEOUT, sink.feed(Message::Text(text))).await, Ok(Ok(()))) {
                                ok = false;
                                break;
                            }
                        }
                        Outbound::Close(code, reason) => {
                            closing = Some((code, reason));
                            break;
                        }
                    }
                    next = rx.try_recv().ok();
                }
                if let Some((code, reason)) = closing {
                    let _ = send_close(&mut sink, code, reason).await;
                    break;
                }
                if !ok || !matches!(tokio::time::timeout(WRITE_TIMEOUT, sink.flush()).await, Ok(Ok(()))) {
                    break;
                }
            }
            _ = ping.tick() => {
                if !matches!(tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Ping(Default::default()))).await, Ok(Ok(()))) {
                    break;
                }
            }
        }
    }
    // Whatever ended the writer ends the reader too.
    kill.cancel();
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
