//! Either transport behind one client, so a scenario runs over `/ws` or the fallback
//! (`/sse`, server-sent events down and batched POSTs up) with the same code.

use crate::client::Client;
use crate::scenarios::{Report, add_percentiles};
use crate::sse::{PostStats, SseClient};
use protocol::{ClientMsg, ServerMsg, SessionId};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// How clients talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// A WebSocket on `/ws`.
    Ws,
    /// The fallback on `/sse`: server-sent events down, batched POSTs up.
    Sse,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Transport::Ws => "WebSocket (/ws)",
            Transport::Sse => "fallback: server-sent events down, batched POSTs up (/sse)",
        }
    }
}

/// How a run's clients connect: the transport and the server (`/sse` is on the same
/// host and port as the WebSocket URL), and what the fallback's POSTs did, summed over
/// every client of the run.
#[derive(Debug, Clone)]
pub struct Connector {
    transport: Transport,
    url: String,
    target: SocketAddr,
    /// The `Host` header of the fallback's requests: the WebSocket URL's authority.
    host: String,
    posts: Arc<PostStats>,
}

impl Connector {
    /// For the WebSocket `url` (already checked to be loopback) resolved to `target`.
    pub fn new(transport: Transport, url: &str, target: SocketAddr) -> Self {
        let authority = url.split_once("://").map_or(url, |(_, rest)| rest).split('/').next().unwrap_or_default();
        let host = if authority.is_empty() { target.to_string() } else { authority.to_string() };
        Self { transport, url: url.to_string(), target, host, posts: Arc::default() }
    }

    /// A client from `source` (any port; the fallback's two connections both from
    /// it) that has its `welcome`.
    pub async fn connect(&self, source: Option<IpAddr>) -> anyhow::Result<Conn> {
        Ok(match self.transport {
            Transport::Ws => Conn::Ws(Box::new(Client::connect(&self.url, self.target, source).await?)),
            Transport::Sse => Conn::Sse(SseClient::connect(self.target, &self.host, source, self.posts.clone()).await?),
        })
    }

    /// Adds the transport to `report`.
    pub fn describe(&self, report: &mut Report) {
        report.add("transport", "transport", json!(self.transport.name()), self.transport.describe().to_string());
    }

    /// Adds what the fallback's POSTs did (summed over the run's clients) to `report`.
    pub fn report_posts(&self, report: &mut Report) {
        if self.transport != Transport::Sse {
            return;
        }
        let p = &self.posts;
        let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        let (posts, messages, largest) = (load(&p.posts), load(&p.messages), load(&p.largest));
        let (connections, idle, resent, busy) =
            (load(&p.connections), load(&p.replaced_idle), load(&p.resent), load(&p.busy));
        let per_post = if posts > 0 { messages as f64 / posts as f64 } else { 0.0 };
        report.add(
            "posts",
            "POSTs",
            json!({ "posts": posts, "messages": messages, "messages_per_post": per_post, "largest_batch": largest }),
            format!("{posts} carrying {messages} messages ({per_post:.2} per POST, at most {largest})"),
        );
        report.add(
            "post_connections",
            "POST connections",
            json!({ "opened": connections, "replaced_idle": idle, "resent": resent, "busy_retries": busy }),
            format!(
                "{connections} opened ({idle} replaced after {} s idle); {resent} batches sent again after a \
                 broken connection, {busy} retried after 429",
                crate::sse::KEEPALIVE_REUSE.as_secs()
            ),
        );
        if let Some(h) = p.answered.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            add_percentiles(report, "post_answered", "POST sent → 204", h);
        }
    }
}

/// A connected client on either transport.
pub enum Conn {
    Ws(Box<Client>),
    Sse(SseClient),
}

impl Conn {
    pub fn session(&self) -> SessionId {
        match self {
            Conn::Ws(c) => c.session,
            Conn::Sse(c) => c.session,
        }
    }

    /// Sends `msg` (the fallback queues it for its next POST).
    pub async fn send(&mut self, msg: &ClientMsg) -> anyhow::Result<()> {
        match self {
            Conn::Ws(c) => c.send(msg).await,
            Conn::Sse(c) => c.send(msg),
        }
    }

    /// The next server message (`online` included).
    pub async fn recv(&mut self) -> anyhow::Result<ServerMsg> {
        match self {
            Conn::Ws(c) => c.recv().await,
            Conn::Sse(c) => c.recv().await,
        }
    }

    /// Closes the connection: a close frame on a WebSocket; the fallback has none, so
    /// its connections just close (the server ends it once its stream has been gone
    /// for its reattach window).
    pub async fn close(self) {
        match self {
            Conn::Ws(mut c) => {
                let _ = c.ws.close(None).await;
            }
            Conn::Sse(c) => drop(c),
        }
    }
}
