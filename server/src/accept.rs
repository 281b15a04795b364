//! Accepting connections: a per-address cap on every TCP connection (pages, assets and
//! sockets alike), a deadline for request headers, then HTTP/1.1 with upgrades.
//!
//! `axum::serve` has neither: a client that sends half a request header, or nothing,
//! holds its connection forever, and one address may open as many as it likes. Here a
//! connection over its address's cap is closed before a byte is read, and one that
//! does not finish its request header in time (including an idle keep-alive
//! connection) is closed by hyper.
//!
//! A connection from a banned address ([`crate::bans`]) is closed at accept, before
//! a byte of it is read: no TLS, HTTP or WebSocket work is spent on it.
//!
//! A connection from a trusted load balancer (`--trusted-proxies`) first gives its
//! PROXY v2 header ([`crate::proxy`]): the ban check, the cap, and everything after,
//! then apply to the client's address in it.

use crate::bans::Bans;
use crate::limits::{ConnLimits, ConnPermit, client_key};
use crate::proxy::{self, TrustedProxies};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Bytes hyper buffers while reading one request's head (its default is ~400 KiB).
pub const MAX_REQUEST_BUFFER: usize = 64 * 1024;

/// How connections are let in.
#[derive(Clone, Debug)]
pub struct AcceptPolicy {
    /// Open connections per address (see [`client_key`]).
    pub limits: ConnLimits,
    /// Time a client has to send a complete request header (also the most a
    /// keep-alive connection stays idle between requests).
    pub header_timeout: Duration,
    /// Load balancers whose PROXY headers name the client.
    pub proxies: TrustedProxies,
    /// Addresses refused at accept.
    pub bans: Arc<Bans>,
}

/// Serves `router` on `listener` until `shutdown` completes; then lets requests in
/// flight finish (up to `drain`). Upgraded connections (WebSockets) are not waited for:
/// their owners close them.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    policy: AcceptPolicy,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let connections = TaskTracker::new();
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let conn = || Conn {
            router: router.clone(),
            header_timeout: policy.header_timeout,
            stop: stop_rx.clone(),
            bans: policy.bans.clone(),
        };
        if policy.proxies.trusts(peer.ip()) {
            // The balancer's connection: the client's address is in its PROXY header,
            // read in the connection's own task so that a slow one holds up no one.
            let (limits, bans, conn) = (policy.limits.clone(), policy.bans.clone(), conn());
            connections.spawn(async move {
                let mut tcp = tcp;
                let client = match proxy::read_header(&mut tcp).await {
                    Ok(client) => client.unwrap_or(peer),
                    Err(e) => {
                        metrics::counter!(crate::metrics::PROXY_REFUSED).increment(1);
                        return tracing::debug!(%peer, "closed: {e}");
                    }
                };
                if let Some(permit) = admit(&limits, &bans, client) {
                    conn.serve(tcp, client, permit).await;
                }
            });
        } else if let Some(permit) = admit(&policy.limits, &policy.bans, peer) {
            // A refused connection costs no clone of the router.
            connections.spawn(conn().serve(tcp, peer, permit));
        }
    }
    drop(listener);
    let _ = stop_tx.send(());
    connections.close();
    if tokio::time::timeout(drain, connections.wait()).await.is_err() {
        tracing::warn!("some requests did not finish in time");
    }
}

/// A slot under `client`'s cap, or `None` when it is banned or over its cap (the
/// connection is then closed before a byte of HTTP is read).
fn admit(limits: &ConnLimits, bans: &Bans, client: SocketAddr) -> Option<ConnPermit> {
    if bans.check(client.ip(), crate::bans::unix_ms()).is_some() {
        metrics::counter!(crate::metrics::BANNED_REFUSED).increment(1);
        tracing::debug!(%client, "closed at accept: banned");
        return None;
    }
    let permit = limits.acquire(client_key(client.ip())).ok();
    if permit.is_none() {
        metrics::counter!(crate::metrics::REFUSED_CONNECTIONS).increment(1);
    }
    permit
}

/// What serving one accepted connection needs.
struct Conn {
    router: Router,
    header_timeout: Duration,
    stop: watch::Receiver<()>,
    /// A connection whose address is banned while it is open is closed at once
    /// (keep-alive page connections included; its WebSocket is closed by the hub
    /// with 4003 first).
    bans: Arc<Bans>,
}

impl Conn {
    /// HTTP/1.1 with upgrades on `tcp` for `client`, until it ends or the server stops
    /// (then requests in flight finish).
    async fn serve(self, tcp: TcpStream, client: SocketAddr, permit: ConnPermit) {
        // Signaling frames are small and latency-bound: no Nagle delay (which, against
        // a peer's delayed ACK, holds a second small frame back by ~40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let io = TokioIo::new(Counted { tcp, _permit: permit });
        let (router, mut stop) = (self.router, self.stop);
        let pacer = Arc::new(Pacer::new());
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(client));
            let (router, wait) = (router.clone(), pacer.wait());
            async move {
                // Requests on one connection are served one after the other, so
                // holding this one back holds back everything pipelined behind it.
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                router.oneshot(req).await
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(MAX_REQUEST_BUFFER)
            .serve_connection(io, service)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let mut added = self.bans.watch();
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::trace!(%client, "connection ended: {e}");
                    }
                    return;
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                    return;
                }
                Ok(()) = added.changed() => {
                    if self.bans.check(client.ip(), crate::bans::unix_ms()).is_some() {
                        // A WebSocket gets a moment for the hub's `banned` and 4003 to
                        // go out before the connection is cut.
                        tokio::time::sleep(BANNED_LINGER).await;
                        tracing::debug!(%client, "connection closed: its address was banned");
                        return;
                    }
                }
            }
        }
    }
}

/// How long a connection whose address was just banned stays open (for the hub's
/// `banned` message and close frame to leave on its WebSocket).
const BANNED_LINGER: Duration = Duration::from_millis(500);

/// Requests one connection may make per second on average...
const REQUESTS_PER_SEC: u64 = 20;
/// ...and at once (a page load is about ten: the page, its script, wasm, styles, icons).
const REQUEST_BURST: u64 = 40;

/// Paces one connection's requests (a token bucket in its GCRA form): a client that
/// pipelines requests as fast as it can (`/healthz` in a loop, say) gets answers at
/// [`REQUESTS_PER_SEC`], so its cost to the server is bounded by the per-address
/// connection cap times that rate, instead of by how fast the server can answer.
#[derive(Debug)]
struct Pacer {
    start: Instant,
    /// Microseconds after `start` at which the bucket would be full again.
    full_at: AtomicU64,
}

impl Pacer {
    fn new() -> Self {
        Self { start: Instant::now(), full_at: AtomicU64::new(0) }
    }

    /// How long the next request must wait.
    fn wait(&self) -> Duration {
        let interval = 1_000_000 / REQUESTS_PER_SEC;
        let now = self.start.elapsed().as_micros() as u64;
        // One connection's requests come one at a time: no other writer races this.
        let base = self.full_at.load(Ordering::Relaxed).max(now);
        self.full_at.store(base + interval, Ordering::Relaxed);
        Duration::from_micros(base.saturating_sub(now + interval * (REQUEST_BURST - 1)))
    }
}

/// A TCP stream that holds its address's slot for as long as it lives, also after an
/// upgrade hands it to a WebSocket.
struct Counted {
    tcp: TcpStream,
    _permit: ConnPermit,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_gets_its_burst_then_the_paced_rate() {
        let pacer = Pacer::new();
        let waits: Vec<Duration> = (0..REQUEST_BURST + 3).map(|_| pacer.wait()).collect();
        assert!(waits[..REQUEST_BURST as usize].iter().all(|w| *w < Duration::from_millis(5)), "{waits:?}");
        let interval = Duration::from_micros(1_000_000 / REQUESTS_PER_SEC);
        for (n, w) in waits[REQUEST_BURST as usize..].iter().enumerate() {
            let expected = interval * (n as u32 + 1);
            assert!(w.abs_diff(expected) < Duration::from_millis(5), "request {n} past the burst waits {w:?}");
        }
    }
}
