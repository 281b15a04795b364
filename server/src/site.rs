//! The HTTP surface: Leptos SSR pages with hydration, `/pkg` and static assets,
//! `/healthz` and `/ws`.

use crate::Config;
use crate::hub::{self, HubConfig};
use crate::ice::IceConfig;
use crate::limits::ConnLimits;
use crate::ws::{self, WsSettings, WsState};
use anyhow::Context;
use app::{App, shell};
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use leptos::config::{LeptosOptions, get_configuration};
use leptos_axum::{LeptosRoutes, generate_route_list};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio_util::task::TaskTracker;
use tower_http::compression::CompressionLayer;

/// The site's runtime options: the `--leptos-config` file when it exists, overridden by
/// `LEPTOS_*` environment variables (which cargo-leptos sets when it runs the server).
pub fn leptos_options(config: &Config) -> anyhow::Result<LeptosOptions> {
    let path = &config.leptos_config;
    let conf = if path.exists() {
        let p = path.to_str().with_context(|| format!("{} is not valid UTF-8", path.display()))?;
        get_configuration(Some(p)).with_context(|| format!("cannot read site options from {}", path.display()))?
    } else {
        get_configuration(None).context("cannot read site options from LEPTOS_* variables")?
    };
    Ok(conf.leptos_options)
}

/// Where to listen: `--bind`, else the site options' `site-addr`.
pub fn bind_addr(config: &Config) -> anyhow::Result<SocketAddr> {
    match config.bind {
        Some(addr) => Ok(addr),
        None => Ok(leptos_options(config)?.site_addr),
    }
}

/// Builds the router and starts the hub.
pub fn router(config: &Config) -> anyhow::Result<(Router, WsState)> {
    let options = leptos_options(config)?;
    crate::metrics::install();
    if !config.turn_urls.is_empty() && config.turn_secret.is_none() {
        anyhow::bail!("--turn-urls needs --turn-secret (or LETSMEET_TURN_SECRET): TURN without credentials is useless");
    }
    if (config.outbox_bytes as usize) < config.max_frame_bytes {
        anyhow::bail!(
            "--outbox-bytes must be at least --max-frame-bytes, or a peer's largest message could never be delivered"
        );
    }
    let ice = IceConfig {
        stun_urls: config.stun_urls.clone(),
        turn_urls: config.turn_urls.clone(),
        secret: config.turn_secret.clone(),
        ttl: Duration::from_secs(config.turn_ttl_secs),
    };
    let hub = hub::spawn(HubConfig {
        grace: config.grace(),
        interest_fallback: config.interest_fallback(),
        rematch_cooldown: config.rematch_cooldown(),
        signal_buffer: config.signal_buffer,
        signal_buffer_bytes: config.signal_buffer_bytes,
        ice,
        online_interval: Duration::from_secs(1),
        max_sessions_per_ip: (config.max_conn_per_ip as usize).saturating_mul(2),
    });
    let nonzero = |v: u32, name: &str| NonZeroU32::new(v).with_context(|| format!("{name} must be at least 1"));
    let ws_state = WsState {
        hub,
        limits: ConnLimits::new(config.max_conn_per_ip, config.max_connections),
        settings: Arc::new(WsSettings {
            allowed_origins: config.allowed_origins.clone(),
            max_frame_bytes: config.max_frame_bytes,
            buffer_bytes: config.ws_buffer_bytes,
            outbox: config.outbox as usize,
            outbox_bytes: config.outbox_bytes as usize,
            rate_per_sec: nonzero(config.rate_per_sec, "--rate-per-sec")?,
            rate_burst: nonzero(config.rate_burst, "--rate-burst")?,
            flood_strikes: config.flood_strikes,
            idle_timeout: config.idle_timeout(),
        }),
        next_id: Arc::new(AtomicU64::new(0)),
        tasks: TaskTracker::new(),
    };

    let api = Router::new()
        .route("/ws", get(ws::handler))
        .route("/healthz", get(healthz))
        .route("/metrics", get(crate::metrics::handler))
        .with_state(ws_state.clone());

    let routes = generate_route_list(App);
    let site = Router::new()
        .leptos_routes(&options, routes, {
            let options = options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(options)
        .layer(CompressionLayer::new());

    Ok((api.merge(site), ws_state))
}

/// `GET /healthz`: the process serves and its hub answers.
async fn healthz(State(state): State<WsState>) -> impl IntoResponse {
    match state.hub.stats().await {
        Ok(stats) => axum::Json(serde_json::json!({
            "status": "ok",
            "connections": state.limits.total(),
            "sessions": stats.sessions,
            "waiting": stats.waiting,
            "in_match": stats.in_match,
        }))
        .into_response(),
        Err(_) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "hub stopped").into_response(),
    }
}
