//! Let'sMeet server.
//!
//! One binary serves the server-rendered Leptos site, its static assets and the `/ws`
//! signaling endpoint, and runs matchmaking in memory.
//!
//! Layout:
//! - [`config`]: flags and environment.
//! - [`site`]: the router: Leptos SSR pages, `/pkg` and assets, `/healthz`, `/ws`.
//! - [`ws`]: per-socket checks, reader and writer tasks.
//! - [`ice`]: STUN/TURN servers and TURN REST credentials.
//! - [`hub`]: sessions, matches and relay: a sans-IO core, its backend seam, a tokio shell.
//! - [`limits`]: connection caps.
//! - [`metrics`]: Prometheus metric names and handles.

// Leptos view types nest deeply.
#![recursion_limit = "256"]

pub mod config;
pub mod hub;
pub mod ice;
pub mod limits;
pub mod metrics;
pub mod site;
pub mod ws;

pub use config::Config;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long shutdown waits for sockets to receive their close frames.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Pending connections the kernel queues before `accept` (tokio's default is 128,
/// which a burst of visitors overflows: the excess SYNs are retried after a second).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listening socket with a backlog sized for bursts of connections.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A running server's parts that the caller may need (tests read the hub).
#[derive(Clone, Debug)]
pub struct Running {
    pub hub: hub::HubHandle,
    pub addr: SocketAddr,
}

/// Serves on `listener` until `shutdown` completes, then tells every client to
/// reconnect (close 1012) and waits briefly for those frames to go out.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_start: impl FnOnce(Running),
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let (router, state) = site::router(&config)?;
    on_start(Running { hub: state.hub.clone(), addr });
    let drain = state.clone();
    // Signaling frames are small and latency-bound: no Nagle delay (which, against a
    // peer's delayed ACK, holds a second small frame back by ~40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            // The hub is supervised: if it fails, the server stops too, rather than
            // hold sockets open to broken state (readers close theirs with 1012).
            tokio::select! {
                _ = shutdown => tracing::info!("shutting down: asking clients to reconnect"),
                _ = drain.hub.failed() => tracing::error!("the hub failed: shutting down"),
            }
            drain.hub.drain();
        })
        .await?;
    state.tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, state.tasks.wait()).await.is_err() {
        tracing::warn!("some sockets did not close in time");
    }
    state.hub.shutdown();
    match state.hub.failure() {
        Some(why) => anyhow::bail!("the hub failed: {why}"),
        None => Ok(()),
    }
}
