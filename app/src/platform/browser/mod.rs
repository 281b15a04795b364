//! The browser side of the platform seam.

mod fallback;
pub mod frames;
pub mod media;
pub mod socket;
pub mod storage;

pub use frames::{forget_videos, send_gate_frame, start_frames, stop_frames};
pub use media::{
    DeviceWatch, acquire_then, active_device, apply_track_switches, devices, end_peer, on_signal, refresh_ice,
    release_local, start_peer, switch_device, watch_devices,
};
pub use socket::{send, start as connect};
pub use storage::{load_prefs, load_relay_only, load_terms, store_prefs, store_relay_only, store_terms};

use crate::engine::Engine;
use leptos::prelude::*;
use leptos::web_sys::{HtmlElement, HtmlVideoElement};
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};

/// What the browser keeps for one engine: its signaling connection, its media and its
/// moderation frame sampler. Cheap to clone.
#[derive(Clone, Default)]
pub struct Runtime {
    socket: Rc<socket::State>,
    media: Rc<media::State>,
    frames: Rc<frames::State>,
}

/// The storage for the engine's [`Runtime`], which holds browser objects: the page's
/// own thread only.
pub type Local = LocalStorage;

/// Shows the stranger's stream in `video` (when it changed). When the browser will not
/// play its sound without a click (e.g. after a reload), it plays muted and
/// `sound_blocked` is called. Once it plays, moderation samples it (when the server
/// moderates).
pub fn show_remote_video(engine: Engine, video: &HtmlVideoElement, sound_blocked: impl Fn() + 'static) {
    frames::remote_video(engine, video);
    let stream = media::remote_stream(engine);
    let changed = match (video.src_object(), stream.as_ref()) {
        (Some(old), Some(new)) => old.id() != new.id(),
        (None, None) => false,
        _ => true,
    };
    if !changed {
        return;
    }
    video.set_src_object(stream.as_ref());
    if stream.is_some() {
        let v = video.clone();
        leptos::task::spawn_local(async move {
            let Ok(p) = v.play() else { return };
            let mut playing = wasm_bindgen_futures::JsFuture::from(p).await.is_ok();
            if !playing {
                v.set_muted(true);
                sound_blocked();
                if let Ok(p) = v.play() {
                    playing = wasm_bindgen_futures::JsFuture::from(p).await.is_ok();
                }
            }
            if playing {
                frames::remote_playing(engine);
            }
        });
    }
}

/// Shows our own camera in `video` (moderation frames of our camera come from there).
pub fn show_local_video(engine: Engine, video: &HtmlVideoElement) {
    frames::local_video(engine, video);
    video.set_src_object(media::local_stream(engine).as_ref());
}

/// Moves the keyboard focus to the first button inside `container`.
pub fn focus_first_button(container: &HtmlElement) {
    if let Some(first) = container.query_selector("button").ok().flatten() {
        let _ = first.unchecked_into::<HtmlElement>().focus();
    }
}

/// An RFC 3339 time in the reader's language and time zone ("25 Nov 2026, 09:30"), or
/// `None` when the browser cannot read it.
pub fn local_time(rfc3339: &str) -> Option<String> {
    let date = js_sys::Date::new(&JsValue::from_str(rfc3339));
    if date.get_time().is_nan() {
        return None;
    }
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"dateStyle".into(), &"medium".into());
    let _ = js_sys::Reflect::set(&options, &"timeStyle".into(), &"short".into());
    let format = js_sys::Intl::DateTimeFormat::new(&js_sys::Array::new(), &options).format();
    format.call1(&JsValue::UNDEFINED, &date).ok()?.as_string()
}

/// A country's name in the browser's language ("Germany" for "DE").
pub fn region_name(code: &str) -> Option<String> {
    let intl = js_sys::Reflect::get(&js_sys::global(), &"Intl".into()).ok()?;
    let ctor: js_sys::Function = js_sys::Reflect::get(&intl, &"DisplayNames".into()).ok()?.dyn_into().ok()?;
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &"type".into(), &"region".into()).ok()?;
    let names = js_sys::Reflect::construct(&ctor, &js_sys::Array::of2(&JsValue::UNDEFINED, &options)).ok()?;
    let of: js_sys::Function = js_sys::Reflect::get(&names, &"of".into()).ok()?.dyn_into().ok()?;
    of.call1(&names, &code.into()).ok()?.as_string()
}

/// The region of the browser's language ("en-GB" → "GB"), if it is a country code.
pub fn browser_country() -> Option<String> {
    let lang = window().navigator().language()?;
    let region = lang.split(['-', '_']).nth(1)?;
    protocol::prefs::normalize_country(region)
}

/// The status of a page is the server's business.
pub fn respond_not_found() {}

/// Marks the page as hydrated (`body[data-hydrated]`), for tests and styles.
pub fn mark_hydrated() {
    if let Some(body) = document().body() {
        let _ = body.set_attribute("data-hydrated", "true");
    }
}
