//! Test harness: a real server on 127.0.0.1:0 and real WebSocket clients.
#![allow(dead_code)] // each test binary uses a different subset

pub mod cluster;
pub mod sse;

use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMsg, MatchId, Mode, Preferences, ResumeToken, ServerMsg, SessionId};
use server::Config;
use server::hub::{HubHandle, HubStats};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a message that must come.
pub const WAIT: Duration = Duration::from_secs(5);

/// Moves the server's clock forward by `d` at once (grace periods, fallbacks,
/// cooldowns), without sleeping. Time is paused only for the jump: with real sockets,
/// a runtime that stays paused would also jump over the moments messages are in flight.
pub async fn skip(d: Duration) {
    tokio::time::pause();
    tokio::time::advance(d).await;
    tokio::time::resume();
    // Let the tasks whose timers fired do their work.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Test defaults: generous caps, no idle timeout to trip over while time is paused.
pub fn config() -> Config {
    let mut c = Config::defaults();
    c.leptos_config = concat!(env!("CARGO_MANIFEST_DIR"), "/../Leptos.toml").into();
    c.max_conn_per_ip = 10_000;
    c.metrics_bind = server::config::MetricsBind(Some("127.0.0.1:0".parse().unwrap()));
    c.idle_timeout_secs = 24.0 * 3600.0;
    c
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub hub: HubHandle,
    pub geo: server::geo::Geo,
    pub sse: server::sse::SseRegistry,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (started_tx, started) = oneshot::channel();
        let task = tokio::spawn(server::serve(
            config,
            listener,
            async move {
                let _ = stopped.await;
            },
            move |running| {
                let _ = started_tx.send(running);
            },
        ));
        let running = started.await.expect("the server starts");
        Self {
            addr: running.addr,
            metrics_addr: running.metrics_addr,
            hub: running.hub,
            geo: running.geo,
            sse: running.sse,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.url()).await
    }

    pub async fn resume(&self, token: &ResumeToken) -> Client {
        Client::connect(&format!("{}?resume={token}", self.url())).await
    }

    /// Open connections on the fallback transport.
    pub fn sse_connections(&self) -> usize {
        self.sse.len()
    }

    pub async fn stats(&self) -> HubStats {
        self.hub.stats().unwrap()
    }

    /// Waits until the hub's tables satisfy `pred` (the hub processes commands
    /// asynchronously from the sockets).
    pub async fn wait_stats(&self, pred: impl Fn(&HubStats) -> bool) -> HubStats {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.stats().await;
            if pred(&s) {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "hub stats never matched: {s:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the server to stop by itself (without asking it to); its result.
    pub async fn exit(self) -> anyhow::Result<()> {
        tokio::time::timeout(WAIT, self.task).await.expect("the server stops by itself").unwrap()
    }

    /// Asks the server to stop (as SIGTERM does) without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for a server asked to stop to finish.
    pub async fn join(self) {
        tokio::time::timeout(WAIT, self.task).await.expect("the server stops in time").unwrap().unwrap();
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// One `GET` on a fresh connection: the whole response, headers and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A TCP connection to `to` from the loopback address `from`.
pub async fn tcp_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    try_tcp_from(from, to).await.expect("connect")
}

/// [`tcp_from`], which may fail (a balancer refusing the address resets it at once).
pub async fn try_tcp_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// A protocol client that has received its `welcome`.
pub struct Client {
    pub ws: Ws,
    pub session: SessionId,
    pub token: ResumeToken,
    pub resumed: bool,
    pub welcome: ServerMsg,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("the WebSocket upgrade succeeds");
        Self::after_upgrade(ws).await
    }

    /// Connects from the loopback address `from` (any of 127.0.0.0/8), so the server
    /// sees a different client address.
    pub async fn connect_from(from: [u8; 4], server: SocketAddr) -> Self {
        let stream = tcp_from(from, server).await;
        let url = format!("ws://{server}/ws");
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("the WebSocket upgrade succeeds");
        Self::after_upgrade(ws).await
    }

    /// A client on `ws` that has not read anything yet (its `welcome` fields are
    /// placeholders).
    pub fn raw(ws: Ws) -> Self {
        Client {
            ws,
            session: SessionId(uuid::Uuid::nil()),
            token: ResumeToken(uuid::Uuid::nil()),
            resumed: false,
            welcome: ServerMsg::Queued { mode: Mode::Text },
        }
    }

    /// Sends `hello` on a socket opened with `?hello=1`, then reads the `welcome`.
    pub async fn after_hello(ws: Ws, hello: &ClientMsg) -> Self {
        let mut c = Self::raw(ws);
        c.send(hello).await;
        c.read_welcome().await
    }

    /// The next message, or the close code if the server closes first.
    pub async fn recv_or_close(&mut self) -> Result<ServerMsg, u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("a message or a close in time") {
                Some(Ok(Message::Text(t))) => {
                    let msg = ServerMsg::from_json(t.as_str()).unwrap();
                    if !matches!(msg, ServerMsg::Online(_)) {
                        return Ok(msg);
                    }
                }
                Some(Ok(Message::Close(frame))) => return Err(frame.map_or(1005, |f: CloseFrame| f.code.into())),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("socket error: {e}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    pub async fn after_upgrade(ws: Ws) -> Self {
        Self::raw(ws).read_welcome().await
    }

    async fn read_welcome(self) -> Self {
        let mut c = self;
        let welcome = c.recv().await;
        let ServerMsg::Welcome { session_id, resume_token, resumed, .. } = &welcome else {
            panic!("first message is not welcome: {welcome:?}")
        };
        c.session = *session_id;
        c.token = resume_token.clone();
        c.resumed = *resumed;
        c.welcome = welcome;
        c
    }

    pub async fn send(&mut self, msg: &ClientMsg) {
        self.send_raw(&msg.to_json()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next message that is not an `online` push.
    pub async fn recv(&mut self) -> ServerMsg {
        loop {
            let msg = self.recv_any().await;
            if !matches!(msg, ServerMsg::Online(_)) {
                return msg;
            }
        }
    }

    /// The next message, `online` pushes included.
    pub async fn recv_any(&mut self) -> ServerMsg {
        self.recv_any_within(WAIT).await
    }

    /// [`Client::recv`] with its own deadline.
    pub async fn recv_within(&mut self, wait: Duration) -> ServerMsg {
        loop {
            let msg = self.recv_any_within(wait).await;
            if !matches!(msg, ServerMsg::Online(_)) {
                return msg;
            }
        }
    }

    /// The next message of any kind, waiting at most `wait`.
    pub async fn recv_any_within(&mut self, wait: Duration) -> ServerMsg {
        loop {
            let frame = tokio::time::timeout(wait, self.ws.next())
                .await
                .expect("a message arrives in time")
                .expect("the socket is open")
                .expect("a valid frame");
            match frame {
                Message::Text(t) => {
                    return ServerMsg::from_json(t.as_str()).unwrap_or_else(|e| panic!("bad server frame {t}: {e}"));
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Asserts nothing but `online` pushes arrives within `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let msg = ServerMsg::from_json(t.as_str()).unwrap();
                    assert!(matches!(msg, ServerMsg::Online(_)), "expected silence, got {msg:?}");
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn expect_close(&mut self) -> u16 {
        self.expect_close_within(WAIT).await
    }

    /// [`Client::expect_close`] with its own deadline.
    pub async fn expect_close_within(&mut self, wait: Duration) -> u16 {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await.expect("the server closes in time") {
                Some(Ok(Message::Close(frame))) => return frame.map_or(1005, |f: CloseFrame| f.code.into()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error before the close frame: {e}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    pub async fn join(&mut self, mode: Mode, interests: &[&str]) {
        self.join_prefs(Preferences {
            interests: interests.iter().map(|s| s.to_string()).collect(),
            ..Preferences::new(mode)
        })
        .await;
    }

    pub async fn join_prefs(&mut self, prefs: Preferences) {
        let mode = prefs.mode;
        self.send(&ClientMsg::Join(prefs)).await;
        assert_eq!(self.recv().await, ServerMsg::Queued { mode });
    }

    /// Waits for `matched`; returns (match id, role, common interests, peer country).
    pub async fn matched(&mut self) -> Matched {
        match self.recv().await {
            ServerMsg::Matched { match_id, role, common_interests, peer_country, .. } => {
                Matched { id: match_id, role, common_interests, peer_country }
            }
            other => panic!("expected matched, got {other:?}"),
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drain until the server acknowledges.
        while let Ok(Some(_)) = tokio::time::timeout(WAIT, self.ws.next()).await {}
    }

    /// Drops the TCP connection without a close handshake (like a network failure).
    pub fn drop_connection(self) {
        drop(self.ws);
    }
}

#[derive(Debug, Clone)]
pub struct Matched {
    pub id: MatchId,
    pub role: protocol::Role,
    pub common_interests: Vec<String>,
    pub peer_country: Option<String>,
}

/// Two clients matched with each other in video mode: (offerer, answerer, match id).
pub async fn matched_pair(server: &TestServer) -> (Client, Client, MatchId) {
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join(Mode::Video, &[]).await;
    b.join(Mode::Video, &[]).await;
    let ma = a.matched().await;
    let mb = b.matched().await;
    assert_eq!(ma.id, mb.id);
    assert_eq!(ma.role, protocol::Role::Offerer, "the one who waited longer offers");
    assert_eq!(mb.role, protocol::Role::Answerer);
    (a, b, ma.id)
}

/// A request to `/ws` with an `Origin` header.
pub fn request_with_origin(url: &str, origin: &str) -> tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    req
}
