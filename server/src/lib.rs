//! Let'sMeet server.
//!
//! One binary serves the server-rendered Leptos site, its static assets and the `/ws`
//! signaling endpoint, and runs matchmaking in memory; with `--redis-url` it is one
//! node of a cluster, and the `matcher` service pairs.
//!
//! Layout:
//! - [`accept`]: the accept loop: per-address cap on every connection, header deadline.
//! - [`cluster`]: cluster mode (`--redis-url`): the hub on the Redis backend.
//! - [`config`]: flags and environment.
//! - [`site`]: the router: Leptos SSR pages, `/pkg` and assets, `/healthz`, `/ws`.
//! - [`ws`]: per-socket checks, reader and writer tasks.
//! - [`sse`]: the fallback transport (server-sent events down, POSTs up) for networks
//!   that break WebSockets, driven by the same socket task as `/ws`.
//! - [`ice`]: STUN/TURN servers and TURN REST credentials.
//! - [`geo`]: the country of a connection's address, from an offline IP database.
//! - [`hub`]: sessions, matches and relay: a sans-IO core, its backend seam, a tokio shell.
//! - [`limits`]: connection caps.
//! - [`proxy`]: the PROXY v2 header from a trusted load balancer.
//! - [`haproxy`]: keeps HAProxy's runtime ban ACL equal to the ban set.
//! - [`metrics`]: Prometheus metric names and handles.
//! - [`bans`]: the ban set, checked at accept; [`admin`]: the API to list, add, lift.
//! - [`moderation`]: sampled video frames, their classifiers and the frame endpoint.

// Leptos view types nest deeply.
#![recursion_limit = "256"]

pub mod accept;
pub mod admin;
pub mod bans;
pub mod cluster;
pub mod config;
pub mod geo;
pub mod haproxy;
pub mod hub;
pub mod ice;
pub mod limits;
pub mod metrics;
pub mod moderation;
pub mod proxy;
pub mod site;
pub mod sse;
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

/// Reads the IP database again on every SIGHUP until the server stops.
async fn reload_on_hangup(geo: geo::Geo, mut stopping: tokio::sync::watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => return tracing::warn!("cannot listen for SIGHUP, the IP database will not reload: {e}"),
        };
        loop {
            tokio::select! {
                _ = stopping.wait_for(|s| *s) => return,
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    match geo.reload() {
                        Ok(()) => tracing::info!("SIGHUP: IP database reloaded"),
                        Err(e) => tracing::error!("SIGHUP: {e:#}; keeping the database in use"),
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (geo, stopping.wait_for(|s| *s).await);
    }
}

/// A running server's parts that the caller may need (tests read the hub).
#[derive(Clone, Debug)]
pub struct Running {
    pub hub: hub::HubHandle,
    pub addr: SocketAddr,
    /// Where `/metrics` is served, unless `--metrics-bind off`.
    pub metrics_addr: Option<SocketAddr>,
    /// The IP database lookup every connection goes through.
    pub geo: geo::Geo,
    /// Connections on the fallback transport.
    pub sse: sse::SseRegistry,
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
    config.validate()?;
    // Before the hub starts: its counters register with the recorder in place when
    // they are made (made earlier, they would count into nothing).
    crate::metrics::install();
    let bans = std::sync::Arc::new(bans::Bans::new(config.ban_policy()));
    let (hub, link) = match &config.redis_url {
        Some(url) => {
            let cluster = cluster::ClusterConfig {
                redis_url: url.clone(),
                timeout: Duration::from_secs_f64(config.redis_timeout_secs),
            };
            let (hub, link) = cluster::start(cluster, hub::HubConfig::from(&config), bans.clone()).await?;
            (hub, Some(link))
        }
        None => (hub::HubHandle::start_in_memory(hub::HubConfig::from(&config), bans.clone()), None),
    };
    tokio::spawn(bans::follow(bans.clone(), hub.clone()));
    if let (Some(socket), Some(file)) = (&config.haproxy_socket, &config.haproxy_ban_file) {
        tokio::spawn(haproxy::sync(bans.clone(), socket.clone(), file.clone(), hub.clone()));
    }
    let (router, state) = site::router_with(&config, hub)?;
    let metrics = match config.metrics_bind.0 {
        Some(at) => Some(bind_listener(at).map_err(|e| anyhow::anyhow!("cannot listen for metrics on {at}: {e}"))?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(TcpListener::local_addr).transpose()?;
    on_start(Running { hub: state.hub.clone(), addr, metrics_addr, geo: state.geo.clone(), sse: state.sse.clone() });
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    if config.geoip_db.is_some() {
        tokio::spawn(reload_on_hangup(state.geo.clone(), stopping.clone()));
    }
    if let Some(listener) = metrics {
        let mut stopping = stopping.clone();
        let router = site::metrics_router(state.clone(), bans.clone());
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stopped).await {
                tracing::error!("the metrics listener failed: {e}");
            }
        });
    }
    let drain = state.clone();
    let policy = accept::AcceptPolicy {
        limits: limits::ConnLimits::new(config.max_sockets_per_ip(), u32::MAX),
        header_timeout: config.header_timeout(),
        proxies: proxy::TrustedProxies(config.trusted_proxies.clone()),
        bans,
    };
    let drain_delay = Duration::from_secs_f64(config.drain_delay_secs);
    let stop = async move {
        // The hub is supervised: if it fails, the server stops too, rather than hold
        // sockets open to broken state (readers close theirs with 1012).
        tokio::select! {
            _ = shutdown => {
                // Health checks fail first, so a balancer sends new users elsewhere;
                // the sockets close (and their users move) once it has noticed.
                drain.draining.store(true, std::sync::atomic::Ordering::Relaxed);
                if !drain_delay.is_zero() {
                    tracing::info!("draining: /healthz answers 503 for {drain_delay:?} before the sockets close");
                    tokio::select! {
                        _ = tokio::time::sleep(drain_delay) => {}
                        // Broken state is not kept open for the rest of the delay.
                        _ = drain.hub.failed() => tracing::error!("the hub failed while draining"),
                    }
                }
                tracing::info!("shutting down: asking clients to reconnect");
            }
            _ = drain.hub.failed() => tracing::error!("the hub failed: shutting down"),
        }
        drain.hub.drain();
    };
    accept::serve(listener, router, policy, stop, DRAIN_TIMEOUT).await;
    let _ = stopping_tx.send(true);
    state.tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, state.tasks.wait()).await.is_err() {
        tracing::warn!("some sockets did not close in time");
    }
    // A cluster node's last words (its peers' `peer_reconnecting`, its sessions'
    // states for the node that resumes them) reach Redis before it goes.
    if let Some(link) = link
        && state.hub.failure().is_none()
        && tokio::time::timeout(DRAIN_TIMEOUT, link.flush()).await.is_err()
    {
        tracing::warn!("Redis did not take this node's last writes in time");
    }
    state.hub.shutdown();
    match state.hub.failure() {
        Some(why) => anyhow::bail!("the hub failed: {why}"),
        None => Ok(()),
    }
}
