//! Moderation frames (browser only): takes a frame of our camera and of the stranger's
//! video at the times the engine's rules give ([`crate::engine::moderation`]) and POSTs
//! each to the server, which classifies it and forgets it.
//!
//! A frame is the centre square of a video element's picture, scaled to the announced
//! size on one reused canvas that is cleared again at once, encoded as JPEG and sent
//! with the session's resume token. It is never kept: not in storage, not in a log,
//! not in the canvas. Every answer goes to the engine ([`Engine::frame_judged`]); one
//! that is not a 200 is forgotten without a word to the user (a debug line in the
//! console at most).
//!
//! Two loops, each with at most one frame in flight:
//! - **sampling**, during a video match: our camera from the start of the match, the
//!   stranger's video from when it first plays; after each answer the next frame is
//!   planned. [`stop_frames`] (any end of the match) cancels the timers, and a
//!   frame or an answer from before is recognised by the epoch it carries.
//! - **the gate**, while queued for video and the session has not passed it: frames of
//!   our camera until one is classified clean.

use super::storage::load_token;
use crate::engine::moderation::{GATE_RETRY, NOT_READY_RETRY, first_delay, frame_url, next_delay};
use crate::engine::{Engine, Outcome, Sample};
use leptos::prelude::*;
use protocol::{FrameOf, FrameVerdict, MatchId};
use std::cell::RefCell;
use std::time::Duration;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{
    Blob, CanvasRenderingContext2d, HtmlCanvasElement, HtmlMediaElement, HtmlVideoElement, Request, RequestInit,
    Response,
};

/// JPEG quality of a frame.
const QUALITY: f64 = 0.85;
/// The quality of a second try when the first encoding is over the server's limit
/// (a very busy picture).
const QUALITY_SMALLER: f64 = 0.6;
/// The largest frame the server takes.
const MAX_BYTES: f64 = 64.0 * 1024.0;
/// Bounds on the announced frame size, so a wrong value cannot make a huge canvas.
const SIZE_RANGE: (u32, u32) = (16, 1024);

/// The frame sampler of one engine (kept in its runtime).
#[derive(Default)]
pub struct State(RefCell<Frames>);

#[derive(Default)]
struct Frames {
    /// The canvas every frame is drawn on, made at the first frame.
    canvas: Option<(HtmlCanvasElement, CanvasRenderingContext2d)>,
    /// The page's video elements: our camera and the stranger (while the chat
    /// screen shows them).
    local_video: Option<HtmlVideoElement>,
    remote_video: Option<HtmlVideoElement>,
    /// The match being sampled.
    sampling: Option<Sampling>,
    /// Bumped whenever sampling stops or starts over: a timer or an answer from
    /// before sees that and plans nothing more.
    epoch: u64,
    /// The gate's next try, and its own epoch.
    gate_timer: Option<TimeoutHandle>,
    gate_epoch: u64,
}

struct Sampling {
    match_id: MatchId,
    own: Option<TimeoutHandle>,
    peer: Option<TimeoutHandle>,
    /// The stranger's video has played in this match: their frames are planned.
    peer_started: bool,
}

/// Runs `f` on this engine's sampler (the default answer once the engine is gone).
/// `f` must not call back into the engine.
fn with<R: Default>(engine: Engine, f: impl FnOnce(&mut Frames) -> R) -> R {
    engine.runtime().map(|rt| f(&mut rt.frames.0.borrow_mut())).unwrap_or_default()
}

/// Our camera is shown in `video`: our frames come from there.
pub fn local_video(engine: Engine, video: &HtmlVideoElement) {
    with(engine, |f| f.local_video = Some(video.clone()));
}

/// The stranger's video is shown in `video`.
pub fn remote_video(engine: Engine, video: &HtmlVideoElement) {
    with(engine, |f| f.remote_video = Some(video.clone()));
}

/// The chat screen is gone: let its video elements go.
pub fn forget_videos(engine: Engine) {
    with(engine, |f| {
        f.local_video = None;
        f.remote_video = None;
    });
}

/// Starts sampling a video match (nothing changes when it is the one already sampled,
/// e.g. after our own reconnect).
pub fn start_frames(engine: Engine, match_id: MatchId) {
    if with(engine, |f| f.sampling.as_ref().is_some_and(|s| s.match_id == match_id)) {
        return;
    }
    stop_sampling(engine);
    let Some(plan) = engine.moderation.plan.get_untracked() else { return };
    let epoch = with(engine, |f| {
        f.sampling = Some(Sampling { match_id, own: None, peer: None, peer_started: false });
        f.epoch
    });
    plan_frame(engine, FrameOf::Own, epoch, first_delay(&plan, random()));
}

/// The stranger's video started playing: their first frame comes within `first_ms`.
pub fn remote_playing(engine: Engine) {
    let epoch = with(engine, |f| {
        let s = f.sampling.as_mut()?;
        (!std::mem::replace(&mut s.peer_started, true)).then_some(f.epoch)
    });
    if let (Some(epoch), Some(plan)) = (epoch, engine.moderation.plan.get_untracked()) {
        plan_frame(engine, FrameOf::Peer, epoch, first_delay(&plan, random()));
    }
}

/// Stops sampling and the gate: no timer stays, no frame in flight is followed up.
pub fn stop_frames(engine: Engine) {
    stop_sampling(engine);
    with(engine, |f| {
        if let Some(timer) = f.gate_timer.take() {
            timer.clear();
        }
        f.gate_epoch += 1;
    });
}

fn stop_sampling(engine: Engine) {
    with(engine, |f| {
        f.epoch += 1;
        if let Some(s) = f.sampling.take() {
            for timer in [s.own, s.peer].into_iter().flatten() {
                timer.clear();
            }
        }
    });
}

/// Plans the frame of `of` in `delay`, if sampling is still at `epoch`.
fn plan_frame(engine: Engine, of: FrameOf, epoch: u64, delay: Duration) {
    if with(engine, |f| f.epoch != epoch || f.sampling.is_none()) {
        return;
    }
    let timer = set_timeout_with_handle(move || frame_due(engine, of, epoch), delay).ok();
    with(engine, |f| {
        if let Some(s) = f.sampling.as_mut() {
            let slot = if of == FrameOf::Own { &mut s.own } else { &mut s.peer };
            if let Some(old) = std::mem::replace(slot, timer) {
                old.clear();
            }
        }
    });
}

/// A planned frame is due: take it (or not), then plan the next one.
fn frame_due(engine: Engine, of: FrameOf, epoch: u64) {
    let match_id = with(engine, |f| f.sampling.as_ref().filter(|_| f.epoch == epoch).map(|s| s.match_id));
    let (Some(match_id), Some(plan)) = (match_id, engine.moderation.plan.get_untracked()) else { return };
    match engine.sample_decision(of, match_id) {
        Sample::Stop => {}
        Sample::Skip => plan_frame(engine, of, epoch, next_delay(&plan, random())),
        Sample::Take => spawn_local(async move {
            let current = move || with(engine, |f| f.epoch == epoch);
            match send_frame(engine, of, Some(match_id), current).await {
                Sent::NotReady => plan_frame(engine, of, epoch, NOT_READY_RETRY),
                Sent::Answered(outcome) => {
                    engine.frame_judged(of, Some(match_id), outcome);
                    plan_frame(engine, of, epoch, next_delay(&plan, random()));
                }
                Sent::Dropped => {}
            }
        }),
    }
}

/// Sends frames of our camera until the gate is passed (or no longer wanted: matched,
/// stopped, banned, back in text mode). A new call replaces an earlier loop.
pub fn send_gate_frame(engine: Engine) {
    let epoch = with(engine, |f| {
        if let Some(timer) = f.gate_timer.take() {
            timer.clear();
        }
        f.gate_epoch += 1;
        f.gate_epoch
    });
    gate_try(engine, epoch);
}

fn gate_try(engine: Engine, epoch: u64) {
    let current = move || with(engine, |f| f.gate_epoch == epoch) && engine.gate_frame_wanted();
    if !current() {
        return;
    }
    spawn_local(async move {
        let retry = match send_frame(engine, FrameOf::Own, None, current).await {
            Sent::NotReady => NOT_READY_RETRY,
            Sent::Answered(outcome) => {
                engine.frame_judged(FrameOf::Own, None, outcome);
                GATE_RETRY
            }
            Sent::Dropped => return,
        };
        // Passed, or no longer queued: `current` is false and the loop ends.
        if !current() {
            return;
        }
        let timer = set_timeout_with_handle(move || gate_try(engine, epoch), retry).ok();
        with(engine, |f| {
            if f.gate_epoch == epoch {
                f.gate_timer = timer;
            } else if let Some(timer) = timer {
                timer.clear();
            }
        });
    });
}

/// What became of one frame.
enum Sent {
    /// The video shows no picture yet: try again soon.
    NotReady,
    /// It was sent (or failed to go) and this is what came of it.
    Answered(Outcome),
    /// No longer wanted by the time it was encoded: not sent.
    Dropped,
}

/// Captures a frame of `of` and sends it, unless `still_wanted` says no once it is
/// encoded.
async fn send_frame(engine: Engine, of: FrameOf, match_id: Option<MatchId>, still_wanted: impl Fn() -> bool) -> Sent {
    let Some(plan) = engine.moderation.plan.get_untracked() else { return Sent::Dropped };
    let video = with(engine, |f| if of == FrameOf::Own { f.local_video.clone() } else { f.remote_video.clone() });
    let Some(video) = video.filter(has_picture) else { return Sent::NotReady };
    let blob = match capture(engine, &video, plan.size).await {
        Ok(blob) => blob,
        Err(e) => {
            debug(&format!("moderation: no frame of {} ({e:?})", whose(of)));
            return Sent::Answered(Outcome::Unjudged);
        }
    };
    if !still_wanted() {
        return Sent::Dropped;
    }
    // The latest token from `welcome` (the socket keeps it in sessionStorage).
    let Some(token) = load_token() else { return Sent::Answered(Outcome::Unjudged) };
    let outcome = match post(&frame_url(&plan, of, match_id), &token, &blob).await {
        Ok(outcome) => outcome,
        Err(e) => {
            debug(&format!("moderation: a frame of {} did not go ({e:?})", whose(of)));
            Outcome::Unjudged
        }
    };
    Sent::Answered(outcome)
}

/// Whether the video element has a picture to draw.
fn has_picture(video: &HtmlVideoElement) -> bool {
    video.ready_state() >= HtmlMediaElement::HAVE_CURRENT_DATA && video.video_width() > 0 && video.video_height() > 0
}

/// The centre square of `video`'s current picture, `size`×`size`, as a JPEG under the
/// server's limit.
async fn capture(engine: Engine, video: &HtmlVideoElement, size: u32) -> Result<Blob, JsValue> {
    let size = size.clamp(SIZE_RANGE.0, SIZE_RANGE.1);
    for quality in [QUALITY, QUALITY_SMALLER] {
        let blob = JsFuture::from(draw_and_encode(engine, video, size, quality)?).await?;
        let blob: Blob = blob.dyn_into().map_err(|_| JsValue::from_str("the canvas gave no picture"))?;
        if blob.size() <= MAX_BYTES {
            return Ok(blob);
        }
    }
    Err(JsValue::from_str("the picture is too large"))
}

/// Draws the picture on the canvas, starts the JPEG encoding (which copies the
/// canvas) and clears the canvas again: the frame stays nowhere but in the result.
fn draw_and_encode(
    engine: Engine,
    video: &HtmlVideoElement,
    size: u32,
    quality: f64,
) -> Result<js_sys::Promise, JsValue> {
    let (canvas, ctx) = canvas(engine)?;
    if canvas.width() != size {
        canvas.set_width(size);
    }
    if canvas.height() != size {
        canvas.set_height(size);
    }
    let (w, h) = (f64::from(video.video_width()), f64::from(video.video_height()));
    let side = w.min(h);
    let out = f64::from(size);
    let drawn = ctx.draw_image_with_html_video_element_and_sw_and_sh_and_dx_and_dy_and_dw_and_dh(
        video,
        (w - side) / 2.0,
        (h - side) / 2.0,
        side,
        side,
        0.0,
        0.0,
        out,
        out,
    );
    let mut started = Ok(());
    let promise = drawn.map(|()| {
        js_sys::Promise::new(&mut |resolve, _reject| {
            // `toBlob` takes a copy of the canvas now and calls back with the JPEG (or
            // null) later.
            started = canvas.to_blob_with_type_and_encoder_options(&resolve, "image/jpeg", &JsValue::from_f64(quality));
        })
    });
    ctx.clear_rect(0.0, 0.0, out, out);
    let promise = promise?;
    started?;
    Ok(promise)
}

/// The reused canvas, made at the first frame. It is never added to the page.
fn canvas(engine: Engine) -> Result<(HtmlCanvasElement, CanvasRenderingContext2d), JsValue> {
    if let Some(made) = with(engine, |f| f.canvas.clone()) {
        return Ok(made);
    }
    let canvas: HtmlCanvasElement = document().create_element("canvas")?.dyn_into()?;
    let ctx: CanvasRenderingContext2d =
        canvas.get_context("2d")?.ok_or_else(|| JsValue::from_str("no 2d context"))?.dyn_into()?;
    let made = (canvas, ctx);
    with(engine, |f| f.canvas = Some(made.clone()));
    Ok(made)
}

/// POSTs one frame; a 200's verdict, else [`Outcome::Unjudged`].
async fn post(url: &str, token: &str, frame: &Blob) -> Result<Outcome, JsValue> {
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(frame);
    let request = Request::new_with_str_and_init(url, &init)?;
    let headers = request.headers();
    headers.set("Authorization", &format!("Bearer {token}"))?;
    headers.set("Content-Type", "image/jpeg")?;
    let response: Response = JsFuture::from(window().fetch_with_request(&request)).await?.dyn_into()?;
    // 429/503 busy, 401 unknown token, 409 a match that is over, 404 no moderation.
    if response.status() != 200 {
        debug(&format!("moderation: frame answered {}", response.status()));
        return Ok(Outcome::Unjudged);
    }
    let text = JsFuture::from(response.text()?).await?.as_string().unwrap_or_default();
    Ok(serde_json::from_str::<FrameVerdict>(&text).map_or(Outcome::Unjudged, Outcome::of_verdict))
}

fn whose(of: FrameOf) -> &'static str {
    match of {
        FrameOf::Own => "our camera",
        FrameOf::Peer => "the stranger",
    }
}

/// A line at the console's debug level (hidden by default).
fn debug(line: &str) {
    web_sys::console::debug_1(&JsValue::from_str(line));
}

/// A random number in `0..1`, for the frame times.
fn random() -> f64 {
    js_sys::Math::random()
}
