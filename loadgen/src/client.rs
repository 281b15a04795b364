//! A minimal protocol client over tokio-tungstenite.

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMsg, ServerMsg, SessionId};
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

pub type Ws = WebSocketStream<TcpStream>;

/// A connected client that has its `welcome`.
pub struct Client {
    pub ws: Ws,
    pub session: SessionId,
}

impl Client {
    /// Connects from `source` (any port) to `target`, and waits for `welcome`.
    pub async fn connect(url: &str, target: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<Self> {
        let socket = if target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("cannot bind to {ip}"))?;
        }
        let stream = socket.connect(target).await.with_context(|| format!("cannot connect to {target}"))?;
        stream.set_nodelay(true)?;
        let (ws, _) = client_async(url, stream).await.context("WebSocket upgrade refused")?;
        let mut c = Self { ws, session: SessionId(Default::default()) };
        match c.recv().await? {
            ServerMsg::Welcome { session_id, .. } => c.session = session_id,
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

/// A small deterministic random generator (per simulated user).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}
