//! `POST /moderation/frame`: a sampled video frame from a client.
//!
//! `?of=self`, or `?of=peer&match_id=…`; `Authorization: Bearer <resume token>`;
//! `Content-Type: image/jpeg`; at most [`MAX_FRAME_BYTES`]. Answers a
//! [`FrameVerdict`] (200), or:
//! - 401: no token, or none of a session with a live socket on this node;
//! - 400: a bad query; 409: `match_id` is not the sender's current match;
//! - 415: not `image/jpeg`; 413: too large; 422: not a usable JPEG;
//! - 429 / 503 with `{"flagged":false,"skipped":true}`: too many frames from this
//!   session, or the classifiers are busy;
//! - 404: this server does not moderate.
//!
//! The frame is scored and dropped; the verdict goes to the hub.

use super::{MAX_FRAME_BYTES, Outcome};
use crate::metrics as m;
use crate::ws::WsState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::{FrameOf, FrameVerdict, MatchId, ResumeToken};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct FrameQuery {
    of: FrameOf,
    #[serde(default)]
    match_id: Option<MatchId>,
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

fn skipped(status: StatusCode, of: FrameOf) -> Response {
    count(of, "skipped");
    (status, axum::Json(FrameVerdict { flagged: false, skipped: true })).into_response()
}

fn count(of: FrameOf, outcome: &'static str) {
    let of = match of {
        FrameOf::Own => "self",
        FrameOf::Peer => "peer",
    };
    metrics::counter!(m::MODERATION_FRAMES, "of" => of, "outcome" => outcome).increment(1);
}

/// The resume token in `Authorization: Bearer …`.
fn bearer(headers: &HeaderMap) -> Option<ResumeToken> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
    token.trim().parse().ok().map(ResumeToken)
}

/// The handler. See the module docs.
pub async fn frame(
    State(state): State<WsState>,
    query: Result<Query<FrameQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(moderator) = state.moderator.as_ref() else {
        return refuse(StatusCode::NOT_FOUND, "this server does not moderate frames");
    };
    let Ok(Query(FrameQuery { of, match_id })) = query else {
        return refuse(StatusCode::BAD_REQUEST, "expected ?of=self or ?of=peer&match_id=<uuid>");
    };
    if of == FrameOf::Peer && match_id.is_none() {
        return refuse(StatusCode::BAD_REQUEST, "a frame of the stranger's video names its match_id");
    }
    let Some(token) = bearer(&headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "expected Authorization: Bearer <resume token>");
    };
    let jpeg = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v == "image/jpeg");
    if !jpeg {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "frames are image/jpeg");
    }
    if body.len() > MAX_FRAME_BYTES {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "a frame is at most 64 KiB");
    }
    let (session, current) = match state.hub.frame_sender(&token) {
        Ok(Some(Ok(found))) => found,
        Ok(Some(Err(()))) => return skipped(StatusCode::TOO_MANY_REQUESTS, of),
        Ok(None) => return refuse(StatusCode::UNAUTHORIZED, "no session with that token is connected here"),
        Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping"),
    };
    if of == FrameOf::Peer && current != match_id {
        return refuse(StatusCode::CONFLICT, "that match is not your current one");
    }
    let score = match moderator.score(body).await {
        Outcome::Scored(score) => score,
        Outcome::Skipped => return skipped(StatusCode::SERVICE_UNAVAILABLE, of),
        Outcome::Failed => {
            count(of, "failed");
            return refuse(StatusCode::UNPROCESSABLE_ENTITY, "the frame could not be scored (not a usable JPEG?)");
        }
    };
    let flagged = moderator.flags(score);
    count(of, if flagged { "flagged" } else { "clean" });
    // The hub may have ended the match meanwhile: the verdict still counts (a flag
    // names the match it was taken in).
    if state.hub.verdict(session, of, match_id, flagged).is_err() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping");
    }
    axum::Json(FrameVerdict { flagged, skipped: false }).into_response()
}
