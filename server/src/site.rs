//! The HTTP surface: Leptos SSR pages with hydration, `/pkg` and static assets,
//! `/healthz` and `/ws`; and `/metrics`, on its own listener.

use crate::Config;
use crate::geo::Geo;
use crate::hub::{HubConfig, HubHandle};
use crate::limits::ConnLimits;
use crate::metrics as m;
use crate::ws::{self, WsSettings, WsState};
use anyhow::Context;
use app::{App, shell};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use leptos::config::{LeptosOptions, get_configuration};
use leptos_axum::{LeptosRoutes, generate_route_list};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
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

/// Builds the router and starts the hub (in memory).
pub fn router(config: &Config) -> anyhow::Result<(Router, WsState)> {
    config.validate()?;
    router_with(config, HubHandle::start(HubConfig::from(config)))
}

/// Builds the router around a running hub.
pub fn router_with(config: &Config, hub: HubHandle) -> anyhow::Result<(Router, WsState)> {
    config.validate()?;
    let options = leptos_options(config)?;
    crate::metrics::install();
    let geo = match &config.geoip_db {
        Some(path) => Geo::open(path)?,
        None => {
            tracing::info!("no --geoip-db: same-country matching uses the country each user picks");
            Geo::none()
        }
    };
    let ws_state = WsState {
        hub,
        limits: ConnLimits::new(config.max_conn_per_ip, config.max_connections),
        settings: Arc::new(WsSettings::from(config)),
        next_id: Arc::new(AtomicU64::new(0)),
        tasks: TaskTracker::new(),
        geo,
        sse: crate::sse::SseRegistry::default(),
        draining: Default::default(),
        moderator: crate::moderation::Moderator::from_config(config)?,
        admin_token: config.admin_token.as_deref().map(Arc::from),
    };

    let api = Router::new()
        .route("/ws", get(ws::handler))
        .route(
            "/sse",
            get(crate::sse::open)
                .post(crate::sse::post)
                .layer(axum::extract::DefaultBodyLimit::max(crate::sse::max_post_bytes(config.max_frame_bytes))),
        )
        .route("/healthz", get(healthz))
        .route(
            crate::moderation::FRAME_PATH,
            axum::routing::post(crate::moderation::endpoint::frame)
                .layer(axum::extract::DefaultBodyLimit::max(crate::moderation::MAX_FRAME_BYTES)),
        )
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

/// The metrics listener's routes (`--metrics-bind`): `/metrics`, `/healthz`, and the
/// admin API ([`crate::admin`]).
pub fn metrics_router(state: WsState, bans: Arc<crate::bans::Bans>) -> Router {
    let admin = crate::admin::router(crate::admin::Admin { token: state.admin_token.clone(), bans: bans.clone() });
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
        .layer(axum::Extension(bans))
        .merge(admin)
}

/// `GET /healthz`: the process serves and its hub answers, and it is not draining.
async fn healthz(State(state): State<WsState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    match state.hub.counts() {
        Ok((counts, video, text)) => axum::Json(serde_json::json!({
            "status": "ok",
            "connections": state.limits.total(),
            "sessions": counts.sessions,
            "waiting": video + text,
            "in_match": counts.in_match,
        }))
        .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "hub stopped").into_response(),
    }
}

/// `GET /metrics`: Prometheus text, with the gauges read now.
async fn metrics(State(state): State<WsState>, bans: axum::Extension<Arc<crate::bans::Bans>>) -> Response {
    let handle = crate::metrics::install();
    let Ok((counts, video, text)) = state.hub.counts() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "hub stopped").into_response();
    };
    metrics::gauge!(m::CONNECTIONS).set(state.limits.total() as f64);
    metrics::gauge!(m::SESSIONS).set(counts.sessions as f64);
    metrics::gauge!(m::CHATTING).set(counts.in_match as f64);
    metrics::gauge!(m::WAITING, "mode" => "video").set(video as f64);
    metrics::gauge!(m::WAITING, "mode" => "text").set(text as f64);
    metrics::gauge!(m::BANS_ACTIVE).set(bans.list(crate::bans::unix_ms()).len() as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}
