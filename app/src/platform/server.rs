//! The server side of the platform seam: server-side rendering has no socket, camera,
//! storage or DOM, so every function does nothing and every question has the answer
//! a fresh page would have. The signatures match `browser`'s.

use crate::engine::{Device, DeviceKind, Engine};
use leptos::web_sys::{HtmlElement, HtmlVideoElement};
use protocol::{ClientMsg, MatchId, Preferences, SignalPayload};

/// Nothing is kept on the server.
#[derive(Clone, Debug, Default)]
pub struct Runtime(());
/// The storage for the engine's [`Runtime`]: a page rendered on the server may move
/// between threads.
pub type Local = leptos::prelude::SyncStorage;

pub fn connect(_engine: Engine) {}
pub fn send(_engine: Engine, _msg: ClientMsg) {}

pub fn acquire_then(_engine: Engine, _then: impl FnOnce(Engine) + 'static) {}
pub fn start_peer(_engine: Engine) {}
pub fn end_peer(_engine: Engine) {}
pub fn release_local(_engine: Engine) {}
pub fn on_signal(_engine: Engine, _payload: SignalPayload) {}
pub fn refresh_ice(_engine: Engine) {}
pub fn apply_track_switches(_engine: Engine) {}
pub async fn devices() -> Vec<Device> {
    Vec::new()
}
pub fn active_device(_engine: Engine, _kind: DeviceKind) -> Option<String> {
    None
}
pub fn switch_device(_engine: Engine, _kind: DeviceKind, _device_id: String) {}

/// Nothing to watch on the server.
#[derive(Debug)]
pub struct DeviceWatch;
pub fn watch_devices(_on_change: impl FnMut() + 'static) -> DeviceWatch {
    DeviceWatch
}

pub fn show_remote_video(_engine: Engine, _video: &HtmlVideoElement, _sound_blocked: impl Fn() + 'static) {}
pub fn show_local_video(_engine: Engine, _video: &HtmlVideoElement) {}
pub fn forget_videos(_engine: Engine) {}

pub fn start_frames(_engine: Engine, _match_id: MatchId) {}
pub fn stop_frames(_engine: Engine) {}
pub fn send_gate_frame(_engine: Engine) {}
pub fn focus_first_button(_container: &HtmlElement) {}

pub fn local_time(_rfc3339: &str) -> Option<String> {
    None
}
pub fn region_name(_code: &str) -> Option<String> {
    None
}
pub fn browser_country() -> Option<String> {
    None
}
pub fn mark_hydrated() {}

/// The page being rendered answers 404 (when rendered for an HTTP response).
pub fn respond_not_found() {
    #[cfg(feature = "ssr")]
    if let Some(resp) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(http::StatusCode::NOT_FOUND);
    }
}

pub fn load_prefs() -> Option<Preferences> {
    None
}
pub fn store_prefs(_prefs: &Preferences) {}
pub fn load_relay_only() -> bool {
    false
}
pub fn store_relay_only(_relay_only: bool) {}
pub fn load_terms() -> bool {
    false
}
pub fn store_terms(_accepted: bool) {}
