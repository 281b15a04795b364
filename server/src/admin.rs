//! The admin API, on the metrics listener (never the public one), behind
//! `--admin-token`: list, add and lift bans.
//!
//! - `GET /admin/bans`: the bans in force.
//! - `POST /admin/bans` `{"address": "192.0.2.1" | "2001:db8:1:2::/64", "reason": "…",
//!   "hours": 24}` (reason and hours optional): bans the address's key now; its
//!   sessions are ended everywhere in the cluster.
//! - `DELETE /admin/bans/{address}`: lifts the ban and forgets the key's strikes.
//!
//! Every request carries `Authorization: Bearer <admin token>`. Without a token
//! configured, the API answers 404.

use crate::bans::{Ban, BanKind, BanOrder, Bans, block, unix_ms};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Admin {
    pub token: Option<Arc<str>>,
    pub bans: Arc<Bans>,
}

/// The admin routes (merged into the metrics listener's router).
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/admin/bans", get(list).post(add))
        .route("/admin/bans/{*address}", delete(lift))
        .with_state(admin)
}

/// The ban as the API shows it.
fn show(ban: &Ban) -> serde_json::Value {
    serde_json::json!({
        "address": ban.block(),
        "kind": ban.kind,
        "reason": ban.reason,
        "since": crate::bans::rfc3339(ban.since_ms / 1000),
        "until": ban.until_rfc3339(),
        "strike": ban.strike,
    })
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// `None` when the request may go on; otherwise the refusal.
fn check(admin: &Admin, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = admin.token.as_deref() else {
        return Some(answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "the admin API is off (--admin-token)" }),
        ));
    };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compared in constant time: the answer's timing tells nothing about the token.
    let ok = given.is_some_and(|g| {
        g.len() == token.len() && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    (!ok).then(|| answer(StatusCode::UNAUTHORIZED, serde_json::json!({ "error": "wrong or missing admin token" })))
}

/// An address or a block (`2001:db8::/64`): the address part.
fn address(s: &str) -> Result<IpAddr, Box<Response>> {
    let ip = s.split_once('/').map_or(s, |(ip, _)| ip).trim();
    ip.parse().map_err(|_| {
        Box::new(answer(StatusCode::BAD_REQUEST, serde_json::json!({ "error": format!("`{s}` is not an IP address") })))
    })
}

async fn list(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Some(refused) = check(&admin, &headers) {
        return refused;
    }
    let bans: Vec<_> = admin.bans.list(unix_ms()).iter().map(show).collect();
    answer(StatusCode::OK, serde_json::json!({ "bans": bans }))
}

#[derive(Debug, Deserialize)]
struct AddBan {
    address: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    hours: Option<f64>,
}

async fn add(State(admin): State<Admin>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(refused) = check(&admin, &headers) {
        return refused;
    }
    let Ok(req) = serde_json::from_slice::<AddBan>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": "expected {\"address\": …, \"reason\": …, \"hours\": …}" }),
        );
    };
    let ip = match address(&req.address) {
        Ok(ip) => ip,
        Err(refused) => return *refused,
    };
    let duration = match req.hours {
        None => None,
        Some(h) if h.is_finite() && h > 0.0 && h <= 24.0 * 365.0 => Some(Duration::from_secs_f64(h * 3600.0)),
        Some(_) => {
            return answer(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "hours: more than 0, at most a year" }),
            );
        }
    };
    let reason = req.reason.unwrap_or_else(|| "breaking the rules".into());
    let ban = admin.bans.issue(BanOrder { ip, kind: BanKind::Admin, reason, duration }, unix_ms());
    tracing::info!(address = %ban.block(), until = %ban.until_rfc3339(), "ban added by an operator");
    answer(StatusCode::CREATED, show(&ban))
}

async fn lift(State(admin): State<Admin>, headers: HeaderMap, Path(addr): Path<String>) -> Response {
    if let Some(refused) = check(&admin, &headers) {
        return refused;
    }
    let ip = match address(&addr) {
        Ok(ip) => ip,
        Err(refused) => return *refused,
    };
    let now = unix_ms();
    match admin.bans.lift(ip, true, now, now) {
        Some(ban) => {
            tracing::info!(address = %ban.block(), "ban lifted by an operator");
            answer(StatusCode::OK, show(&ban))
        }
        None => answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": format!("{} is not banned", block(crate::limits::client_key(ip))) }),
        ),
    }
}
