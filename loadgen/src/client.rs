//! A minimal protocol client over tokio-tungstenite, and loopback source addresses.

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMsg, ServerMsg, SessionId};
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async};

pub type Ws = WebSocketStream<TcpStream>;

/// A connected client that has its `welcome`.
pub struct Client {
    pub ws: Ws,
    pub session: SessionId,
    /// The resume token from `welcome` (a credential: never printed).
    pub resume_token: String,
    /// Whether `welcome` said this connection resumed an earlier session.
    pub resumed: bool,
}

/// Opens a TCP connection from `source` (any port) to `target`, with Nagle off.
pub async fn tcp_connect(target: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    tcp_connect_with(target, source, None).await
}

/// [`tcp_connect`] with an optional receive buffer size (small: a slow reader).
pub async fn tcp_connect_with(
    target: SocketAddr,
    source: Option<IpAddr>,
    recv_buffer: Option<u32>,
) -> anyhow::Result<TcpStream> {
    let socket = if target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("cannot bind to {ip}"))?;
    }
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    let stream = socket.connect(target).await.with_context(|| format!("cannot connect to {target}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Client {
    /// Connects from `source` (any port) to `target`, and waits for `welcome`.
    pub async fn connect(url: &str, target: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<Self> {
        Self::connect_resuming(url, target, source, None).await
    }

    /// [`Client::connect`] with `?resume=<token>` (the token is sent as given, so
    /// garbage can be tried too).
    pub async fn connect_resuming(
        url: &str,
        target: SocketAddr,
        source: Option<IpAddr>,
        resume: Option<&str>,
    ) -> anyhow::Result<Self> {
        let stream = tcp_connect(target, source).await?;
        let url = match resume {
            Some(token) => format!("{url}?resume={token}"),
            None => url.to_string(),
        };
        Self::handshake(&url, stream).await
    }

    /// The WebSocket upgrade on an open `stream`, then `welcome`.
    pub async fn handshake(url: &str, stream: TcpStream) -> anyhow::Result<Self> {
        let (ws, _) = client_async(url, stream).await.context("WebSocket upgrade refused")?;
        let mut c = Self { ws, session: SessionId(Default::default()), resume_token: String::new(), resumed: false };
        match c.recv().await? {
            ServerMsg::Welcome { session_id, resume_token, resumed, .. } => {
                c.session = session_id;
                c.resume_token = resume_token.to_string();
                c.resumed = resumed;
            }
            other => bail!("first message was not welcome: {other:?}"),
        }
        Ok(c)
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> anyhow::Result<()> {
        self.ws.send(Message::text(msg.to_json())).await.context("send")
    }

    /// The next server message (pings are answered by the library; `online` included).
    pub async fn recv(&mut self) -> anyhow::Result<ServerMsg> {
        loop {
            match self.ws.next().await.context("the server closed the socket")?? {
                Message::Text(t) => return ServerMsg::from_json(t.as_str()).context("bad server message"),
                Message::Close(frame) => bail!("closed by the server: {frame:?}"),
                _ => continue,
            }
        }
    }
}

/// A short class for a failed connection attempt, for counting: the HTTP status the
/// upgrade was refused with, or the kind of failure.
pub fn connect_failure_class(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(tungstenite::Error::Http(response)) = cause.downcast_ref::<tungstenite::Error>() {
            return format!("HTTP {}", response.status().as_u16());
        }
        if let Some(refused) = cause.downcast_ref::<crate::sse::Refused>() {
            return format!("HTTP {}", refused.status);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return format!("{:?}", io.kind());
        }
    }
    let text = format!("{e:#}");
    if text.contains("closed by the server") { "closed before welcome".into() } else { "other".into() }
}

/// A short name for a failed socket, for counting.
pub fn ws_failure(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => format!("socket failed: {:?}", io.kind()),
        tungstenite::Error::Protocol(p) => format!("protocol error: {p}"),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => "socket closed".into(),
        other => format!("socket failed: {}", other.to_string().chars().take(40).collect::<String>()),
    }
}

/// The `i`-th loopback source address of `block`: 127.<block>.<i / 254>.<1 + i % 254>,
/// so scenarios never share an address (and per-address caps apply to each alone).
pub fn loopback_source(block: u8, i: usize) -> IpAddr {
    let i = i % (254 * 256);
    IpAddr::from([127, block, (i / 254) as u8, (i % 254 + 1) as u8])
}

/// A small deterministic random generator (per simulated user).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// A well-formed but (almost surely) unknown UUID string.
    pub fn uuid(&mut self) -> String {
        let (a, b, c, d) = (self.next(), self.next(), self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a as u32,
            b & 0xffff,
            (b >> 16) & 0xfff,
            c & 0xfff,
            ((c >> 12) << 20 | d) & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_loopback_and_distinct() {
        let a: Vec<IpAddr> = (0..600).map(|i| loopback_source(1, i)).collect();
        assert!(a.iter().all(|ip| ip.is_loopback()));
        assert_eq!(a[0], IpAddr::from([127, 1, 0, 1]));
        assert_eq!(a[253], IpAddr::from([127, 1, 0, 254]));
        assert_eq!(a[254], IpAddr::from([127, 1, 1, 1]));
        let unique: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(unique.len(), a.len());
        assert_ne!(loopback_source(1, 0), loopback_source(2, 0));
    }

    #[test]
    fn random_uuids_are_well_formed() {
        let mut rng = Lcg(7);
        for _ in 0..100 {
            let u = rng.uuid();
            assert_eq!(u.len(), 36, "{u}");
            assert_eq!(u.matches('-').count(), 4, "{u}");
            assert!(u.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{u}");
        }
    }
}
