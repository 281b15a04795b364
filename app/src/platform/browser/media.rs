//! Camera, microphone and the WebRTC peer connection (browser only).
//!
//! The peer follows the W3C "perfect negotiation" pattern: the answerer is the
//! polite peer. The offerer adds its tracks at once and offers; the answerer adds
//! its tracks to the transceivers the offer created, so one round trip sets up both
//! directions. `ready` is sent only once every handler is installed. Signals are
//! applied strictly in order through a small queue, because each step is async.
//! Everything a match created (connection, handlers, timers, remote stream) is
//! released when it ends.

use crate::engine::{ConnStats, Device, DeviceKind, Engine, MediaProblem};
use leptos::prelude::*;
use protocol::{MatchId, Role, SignalPayload};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{
    MediaStream, MediaStreamConstraints, MediaStreamTrack, RtcConfiguration, RtcIceCandidateInit, RtcIceServer,
    RtcPeerConnection, RtcPeerConnectionIceEvent, RtcSdpType, RtcSessionDescriptionInit, RtcSignalingState,
    RtcTrackEvent,
};

/// How long the connection may stay "disconnected" (often a passing blip) before we
/// look for a new path.
const DISCONNECTED_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
/// ICE restarts tried for one connection before giving up (the count starts again
/// each time it connects).
const MAX_ICE_RESTARTS: u32 = 3;

/// Camera, microphone and peer connection of one engine (kept in its runtime).
#[derive(Default)]
pub struct State(RefCell<Streams>);

#[derive(Default)]
struct Streams {
    local: Option<MediaStream>,
    remote: Option<MediaStream>,
    peer: Option<Rc<Peer>>,
    stats_timer: Option<IntervalHandle>,
    /// Bumped whenever the camera is released, so a permission granted for an
    /// earlier request (Stop pressed while the prompt was open) is recognized as stale.
    generation: u64,
}

/// A JS event handler kept alive while attached.
type Handler = Closure<dyn FnMut(JsValue)>;

/// One match's peer connection and everything hanging off it.
struct Peer {
    engine: Engine,
    pc: RtcPeerConnection,
    match_id: MatchId,
    /// The negotiation generation its signals carry.
    generation: u32,
    polite: bool,
    making_offer: Cell<bool>,
    ignore_offer: Cell<bool>,
    tracks_added: Cell<bool>,
    /// Signals waiting to be applied, in order.
    queue: RefCell<VecDeque<SignalPayload>>,
    busy: Cell<bool>,
    /// Event handlers: dropped (and detached) with the peer.
    handlers: RefCell<Vec<Handler>>,
    /// For the incoming bitrate: (timestamp ms, bytes received) at the last sample.
    last_inbound: Cell<Option<(f64, f64)>>,
    /// The ICE restart due if the connection stays "disconnected".
    disconnected_timer: Cell<Option<TimeoutHandle>>,
    /// The window's `online` listener (the network came back or changed).
    on_online: RefCell<Option<WindowListenerHandle>>,
    /// ICE restarts since the connection last worked.
    restarts: Cell<u32>,
}

/// Runs `f` on this engine's media state (the default answer once the engine is gone).
fn with<R: Default>(engine: Engine, f: impl FnOnce(&RefCell<Streams>) -> R) -> R {
    engine.runtime().map(|rt| f(&rt.media.0)).unwrap_or_default()
}

/// The local camera/microphone stream, if acquired.
pub fn local_stream(engine: Engine) -> Option<MediaStream> {
    with(engine, |m| m.borrow().local.clone())
}

/// The stranger's stream, once a track arrived.
pub fn remote_stream(engine: Engine) -> Option<MediaStream> {
    with(engine, |m| m.borrow().remote.clone())
}

/// Whether this browser can do WebRTC at all.
pub fn has_webrtc() -> bool {
    js_sys::Reflect::has(&window(), &JsValue::from_str("RTCPeerConnection")).unwrap_or(false)
        && window().navigator().media_devices().is_ok()
}

/// Makes sure camera and microphone are on, then runs `then`. On failure the engine
/// is told why (so the page can offer text mode instead).
pub fn acquire_then(engine: Engine, then: impl FnOnce(Engine) + 'static) {
    if local_is_live(engine) {
        return then(engine);
    }
    if !has_webrtc() {
        return engine.media_failed(MediaProblem::NoWebRtc);
    }
    let generation = with(engine, |m| m.borrow().generation);
    spawn_local(async move {
        let result = get_user_media(Ask::Default, Ask::Default).await;
        if with(engine, |m| m.borrow().generation) != generation {
            // Released while the prompt was open: nobody wants this stream any more.
            if let Ok(stream) = result {
                stop_tracks(&stream);
            }
            return;
        }
        match result {
            Ok(stream) => {
                if local_is_live(engine) {
                    // Another request was granted first: one camera stream is enough.
                    stop_tracks(&stream);
                    return then(engine);
                }
                with(engine, |m| m.borrow_mut().local = Some(stream));
                apply_track_switches(engine);
                engine.media_changed();
                then(engine);
            }
            Err(problem) => engine.media_failed(problem),
        }
    });
}

/// Whether camera and microphone are on (every local track live).
fn local_is_live(engine: Engine) -> bool {
    local_stream(engine).is_some_and(|s| {
        s.get_tracks()
            .iter()
            .all(|t| t.unchecked_into::<MediaStreamTrack>().ready_state() == web_sys::MediaStreamTrackState::Live)
    })
}

/// What getUserMedia is asked for, per kind of device.
enum Ask {
    /// Nothing of this kind (switching the other kind leaves this one alone).
    Nothing,
    /// The browser's default device.
    Default,
    /// This device.
    Device(String),
}

impl Ask {
    fn constraint(self) -> JsValue {
        match self {
            Ask::Nothing => JsValue::FALSE,
            Ask::Default => JsValue::TRUE,
            Ask::Device(id) => {
                let exact = js_sys::Object::new();
                let _ = js_sys::Reflect::set(&exact, &"exact".into(), &id.into());
                let c = js_sys::Object::new();
                let _ = js_sys::Reflect::set(&c, &"deviceId".into(), &exact);
                c.into()
            }
        }
    }
}

async fn get_user_media(camera: Ask, mic: Ask) -> Result<MediaStream, MediaProblem> {
    let devices = window().navigator().media_devices().map_err(|_| MediaProblem::NoWebRtc)?;
    let constraints = MediaStreamConstraints::new();
    constraints.set_video(&camera.constraint());
    constraints.set_audio(&mic.constraint());
    let promise = devices.get_user_media_with_constraints(&constraints).map_err(|e| classify(&e))?;
    JsFuture::from(promise).await.map(|s| s.unchecked_into()).map_err(|e| classify(&e))
}

fn classify(err: &JsValue) -> MediaProblem {
    let name = js_sys::Reflect::get(err, &"name".into()).ok().and_then(|n| n.as_string()).unwrap_or_default();
    match name.as_str() {
        "NotAllowedError" | "SecurityError" => MediaProblem::Denied,
        "NotFoundError" | "OverconstrainedError" | "DevicesNotFoundError" => MediaProblem::Missing,
        _ => {
            let message = js_sys::Reflect::get(err, &"message".into()).ok().and_then(|m| m.as_string());
            MediaProblem::Unavailable(message.unwrap_or(name))
        }
    }
}

/// Stops the camera and microphone (on stop, or leaving the chat).
pub fn release_local(engine: Engine) {
    let local = with(engine, |m| {
        let mut m = m.borrow_mut();
        m.generation += 1;
        m.local.take()
    });
    if let Some(stream) = local {
        stop_tracks(&stream);
        engine.media_changed();
    }
}

fn stop_tracks(stream: &MediaStream) {
    for t in stream.get_tracks().iter() {
        t.unchecked_into::<MediaStreamTrack>().stop();
    }
}

/// Applies the mute / camera-off switches to the local tracks.
pub fn apply_track_switches(engine: Engine) {
    let Some(stream) = local_stream(engine) else { return };
    for t in stream.get_audio_tracks().iter() {
        t.unchecked_into::<MediaStreamTrack>().set_enabled(!engine.media.mic_muted.get_untracked());
    }
    for t in stream.get_video_tracks().iter() {
        t.unchecked_into::<MediaStreamTrack>().set_enabled(!engine.media.camera_off.get_untracked());
    }
}

/// Available cameras and microphones.
pub async fn devices() -> Vec<Device> {
    let Ok(md) = window().navigator().media_devices() else { return Vec::new() };
    let Ok(promise) = md.enumerate_devices() else { return Vec::new() };
    let Ok(list) = JsFuture::from(promise).await else { return Vec::new() };
    js_sys::Array::from(&list)
        .iter()
        .filter_map(|d| {
            let d: web_sys::MediaDeviceInfo = d.unchecked_into();
            let kind = match d.kind() {
                web_sys::MediaDeviceKind::Videoinput => DeviceKind::Camera,
                web_sys::MediaDeviceKind::Audioinput => DeviceKind::Microphone,
                _ => return None,
            };
            Some(Device { kind, id: d.device_id(), label: d.label() })
        })
        .collect()
}

/// The id of the camera or microphone in use.
pub fn active_device(engine: Engine, kind: DeviceKind) -> Option<String> {
    let stream = local_stream(engine)?;
    let tracks = if kind == DeviceKind::Camera { stream.get_video_tracks() } else { stream.get_audio_tracks() };
    let track: MediaStreamTrack = tracks.get(0).dyn_into().ok()?;
    track.get_settings().get_device_id()
}

/// A `devicechange` listener (a camera or microphone was plugged in or out), removed
/// when dropped.
pub struct DeviceWatch(Handler);

/// Calls `on_change` whenever the list of cameras and microphones changes.
pub fn watch_devices(mut on_change: impl FnMut() + 'static) -> DeviceWatch {
    let closure = Closure::<dyn FnMut(JsValue)>::new(move |_| on_change());
    if let Ok(md) = window().navigator().media_devices() {
        let _ = md.add_event_listener_with_callback("devicechange", closure.as_ref().unchecked_ref());
    }
    DeviceWatch(closure)
}

impl Drop for DeviceWatch {
    fn drop(&mut self) {
        if let Ok(md) = window().navigator().media_devices() {
            let _ = md.remove_event_listener_with_callback("devicechange", self.0.as_ref().unchecked_ref());
        }
    }
}

/// Switches to another camera or microphone without renegotiating (replaceTrack).
/// Only that kind is requested: the other device keeps running untouched.
pub fn switch_device(engine: Engine, kind: DeviceKind, device_id: String) {
    spawn_local(async move {
        let wants_video = kind == DeviceKind::Camera;
        let (camera, mic) =
            if wants_video { (Ask::Device(device_id), Ask::Nothing) } else { (Ask::Nothing, Ask::Device(device_id)) };
        let fresh = match get_user_media(camera, mic).await {
            Ok(s) => s,
            Err(_) => {
                engine.notify("That device could not be opened.");
                return;
            }
        };
        let Some(local) = local_stream(engine) else {
            // Released while the device was opening.
            return stop_tracks(&fresh);
        };
        let Some(new_track) = fresh.get_tracks().get(0).dyn_into::<MediaStreamTrack>().ok() else { return };
        let old = if wants_video { local.get_video_tracks() } else { local.get_audio_tracks() };
        for t in old.iter() {
            let t: MediaStreamTrack = t.unchecked_into();
            local.remove_track(&t);
            t.stop();
        }
        local.add_track(&new_track);
        apply_track_switches(engine);
        if let Some(peer) = with(engine, |m| m.borrow().peer.clone()) {
            for sender in peer.pc.get_senders().iter() {
                let sender: web_sys::RtcRtpSender = sender.unchecked_into();
                if sender.track().is_some_and(|t| t.kind() == new_track.kind()) {
                    let _ = JsFuture::from(sender.replace_track(Some(&new_track))).await;
                }
            }
        }
        engine.media_changed();
    });
}

/// Starts (or restarts) the peer connection for the current match and sends `ready`.
pub fn start_peer(engine: Engine) {
    end_peer(engine);
    let Some(info) = engine.chat.current.get_untracked() else { return };
    let pc = match new_connection(engine) {
        Ok(pc) => pc,
        Err(e) => {
            leptos::logging::error!("cannot create a peer connection: {e:?}");
            engine.notify("This browser could not start a video connection.");
            return;
        }
    };
    let peer = Rc::new(Peer {
        engine,
        pc,
        match_id: info.id,
        generation: info.generation,
        polite: info.role == Role::Answerer,
        making_offer: Cell::new(false),
        ignore_offer: Cell::new(false),
        tracks_added: Cell::new(false),
        queue: RefCell::new(VecDeque::new()),
        busy: Cell::new(false),
        handlers: RefCell::new(Vec::new()),
        last_inbound: Cell::new(None),
        disconnected_timer: Cell::new(None),
        on_online: RefCell::new(None),
        restarts: Cell::new(0),
    });
    install_handlers(engine, &peer);
    if !peer.polite {
        // Adding tracks fires `negotiationneeded`, which makes the offer.
        add_local_tracks(&peer);
    }
    with(engine, |m| m.borrow_mut().peer = Some(peer.clone()));
    let timer = set_interval_with_handle(move || sample_stats(engine), std::time::Duration::from_secs(2)).ok();
    with(engine, |m| m.borrow_mut().stats_timer = timer);
    engine.peer_ready(info.id);
}

fn new_connection(engine: Engine) -> Result<RtcPeerConnection, JsValue> {
    RtcPeerConnection::new_with_configuration(&configuration(engine))
}

/// ICE servers (with the freshest TURN credentials) and the transport policy.
fn configuration(engine: Engine) -> RtcConfiguration {
    let servers = js_sys::Array::new();
    for s in engine.link.ice_servers.get_untracked() {
        let server = RtcIceServer::new();
        let urls = js_sys::Array::new();
        for u in &s.urls {
            urls.push(&JsValue::from_str(u));
        }
        server.set_urls(&urls);
        if let Some(u) = &s.username {
            server.set_username(u);
        }
        if let Some(c) = &s.credential {
            server.set_credential(c);
        }
        servers.push(&server);
    }
    let config = RtcConfiguration::new();
    config.set_ice_servers(&servers);
    if engine.media.relay_only.get_untracked() && engine.has_relay() {
        // Only relay candidates are gathered: our address never reaches the stranger.
        config.set_ice_transport_policy(web_sys::RtcIceTransportPolicy::Relay);
    }
    config
}

fn add_local_tracks(peer: &Peer) {
    if peer.tracks_added.replace(true) {
        return;
    }
    if let Some(stream) = local_stream(peer.engine) {
        for t in stream.get_tracks().iter() {
            let t: MediaStreamTrack = t.unchecked_into();
            peer.pc.add_track_0(&t, &stream);
        }
    }
}

fn handler(peer: &Peer, f: impl FnMut(JsValue) + 'static) -> js_sys::Function {
    let closure = Closure::<dyn FnMut(JsValue)>::new(f);
    let function = closure.as_ref().unchecked_ref::<js_sys::Function>().clone();
    peer.handlers.borrow_mut().push(closure);
    function
}

fn install_handlers(engine: Engine, peer: &Rc<Peer>) {
    let (match_id, generation) = (peer.match_id, peer.generation);
    let send = move |payload: SignalPayload| engine.signal_out(match_id, generation, payload);

    let p = Rc::downgrade(peer);
    peer.pc.set_onnegotiationneeded(Some(&handler(peer, move |_| {
        let Some(peer) = p.upgrade() else { return };
        // The answerer waits for the first offer (it adds its tracks to that offer's
        // transceivers); afterwards either side may renegotiate (e.g. an ICE restart).
        if peer.polite && peer.pc.remote_description().is_none() {
            return;
        }
        spawn_local(async move {
            peer.making_offer.set(true);
            let result = async {
                let offer = JsFuture::from(peer.pc.create_offer()).await?;
                let init: RtcSessionDescriptionInit = offer.unchecked_into();
                JsFuture::from(peer.pc.set_local_description(&init)).await?;
                Ok::<_, JsValue>(())
            }
            .await;
            peer.making_offer.set(false);
            match result {
                Ok(()) => {
                    if let Some(desc) = peer.pc.local_description() {
                        send(SignalPayload::Offer { sdp: desc.sdp() });
                    }
                }
                Err(e) => leptos::logging::warn!("offer failed: {e:?}"),
            }
        });
    })));

    peer.pc.set_onicecandidate(Some(&handler(peer, move |ev| {
        let ev: RtcPeerConnectionIceEvent = ev.unchecked_into();
        match ev.candidate() {
            Some(c) if !c.candidate().is_empty() => send(SignalPayload::Candidate {
                candidate: c.candidate(),
                sdp_mid: c.sdp_mid(),
                sdp_m_line_index: c.sdp_m_line_index(),
            }),
            _ => send(SignalPayload::EndOfCandidates),
        }
    })));

    peer.pc.set_ontrack(Some(&handler(peer, move |ev| {
        let ev: RtcTrackEvent = ev.unchecked_into();
        let stream = ev.streams().get(0).dyn_into::<MediaStream>().ok().unwrap_or_else(|| {
            let s = MediaStream::new().expect("an empty MediaStream can always be created");
            s.add_track(&ev.track());
            s
        });
        with(engine, |m| m.borrow_mut().remote = Some(stream));
        engine.media_changed();
    })));

    let p = Rc::downgrade(peer);
    peer.pc.set_oniceconnectionstatechange(Some(&handler(peer, move |_| {
        let Some(peer) = p.upgrade() else { return };
        use web_sys::RtcIceConnectionState as S;
        if let Some(timer) = peer.disconnected_timer.take() {
            timer.clear();
        }
        match peer.pc.ice_connection_state() {
            S::Connected | S::Completed => {
                peer.restarts.set(0);
                engine.media_connected();
            }
            S::Disconnected => {
                // Often a blip that heals by itself; if it lasts, the path is gone.
                let p = p.clone();
                let restart = move || {
                    if let Some(peer) = p.upgrade()
                        && peer.pc.ice_connection_state() == S::Disconnected
                    {
                        restart_ice(engine, &peer);
                    }
                };
                peer.disconnected_timer.set(set_timeout_with_handle(restart, DISCONNECTED_GRACE).ok());
            }
            S::Failed => restart_ice(engine, &peer),
            _ => {}
        }
    })));

    // The network came back or changed: the old candidate pairs may be gone.
    let p = Rc::downgrade(peer);
    let on_online = window_event_listener_untyped("online", move |_| {
        if let Some(peer) = p.upgrade() {
            restart_ice(engine, &peer);
        }
    });
    *peer.on_online.borrow_mut() = Some(on_online);
}

/// Fresh ICE servers arrived (the TURN credentials in use are about to expire): the
/// connection takes them, and the impolite side restarts ICE so that relayed paths
/// are allocated with them. Not counted as a failure restart.
pub fn refresh_ice(engine: Engine) {
    let Some(peer) = with(engine, |m| m.borrow().peer.clone()) else { return };
    let _ = peer.pc.set_configuration_with_configuration(&configuration(engine));
    if !peer.polite {
        call_restart_ice(&peer.pc);
    }
}

fn call_restart_ice(pc: &RtcPeerConnection) {
    if let Ok(f) = js_sys::Reflect::get(pc, &"restartIce".into())
        && let Ok(f) = f.dyn_into::<js_sys::Function>()
    {
        let _ = f.call0(pc);
    }
}

/// Gathers new candidates and renegotiates: `restartIce()` fires `negotiationneeded`,
/// whose handler makes the offer. Only the impolite side starts restarts (both see the
/// same failure, and two restarts would only collide), with the current ICE servers
/// (TURN credentials expire), and at most [`MAX_ICE_RESTARTS`] times in a row.
fn restart_ice(engine: Engine, peer: &Peer) {
    if peer.polite {
        return;
    }
    let tries = peer.restarts.get();
    if tries >= MAX_ICE_RESTARTS {
        if tries == MAX_ICE_RESTARTS {
            peer.restarts.set(tries + 1);
            engine.notify("The connection to the stranger keeps failing. Try Next.");
        }
        return;
    }
    peer.restarts.set(tries + 1);
    let _ = peer.pc.set_configuration_with_configuration(&configuration(engine));
    call_restart_ice(&peer.pc);
}

/// A signal from the stranger for the current match.
pub fn on_signal(engine: Engine, payload: SignalPayload) {
    let Some(peer) = with(engine, |m| m.borrow().peer.clone()) else { return };
    peer.queue.borrow_mut().push_back(payload);
    if peer.busy.replace(true) {
        return;
    }
    spawn_local(async move {
        loop {
            let next = peer.queue.borrow_mut().pop_front();
            let Some(payload) = next else { break };
            if let Err(e) = apply_signal(&peer, payload).await {
                leptos::logging::warn!("signal failed: {e:?}");
            }
        }
        peer.busy.set(false);
    });
}

async fn apply_signal(peer: &Rc<Peer>, payload: SignalPayload) -> Result<(), JsValue> {
    match payload {
        SignalPayload::Offer { sdp } => {
            let collision = peer.making_offer.get() || peer.pc.signaling_state() != RtcSignalingState::Stable;
            peer.ignore_offer.set(!peer.polite && collision);
            if peer.ignore_offer.get() {
                return Ok(());
            }
            let init = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
            init.set_sdp(&sdp);
            JsFuture::from(peer.pc.set_remote_description(&init)).await?;
            add_local_tracks(peer);
            let answer = JsFuture::from(peer.pc.create_answer()).await?;
            let answer: RtcSessionDescriptionInit = answer.unchecked_into();
            JsFuture::from(peer.pc.set_local_description(&answer)).await?;
            if let Some(desc) = peer.pc.local_description() {
                peer.engine.signal_out(peer.match_id, peer.generation, SignalPayload::Answer { sdp: desc.sdp() });
            }
        }
        SignalPayload::Answer { sdp } => {
            if peer.pc.signaling_state() != RtcSignalingState::HaveLocalOffer {
                return Ok(());
            }
            let init = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
            init.set_sdp(&sdp);
            JsFuture::from(peer.pc.set_remote_description(&init)).await?;
        }
        SignalPayload::Candidate { candidate, sdp_mid, sdp_m_line_index } => {
            let init = RtcIceCandidateInit::new(&candidate);
            init.set_sdp_mid(sdp_mid.as_deref());
            init.set_sdp_m_line_index(sdp_m_line_index);
            let result = JsFuture::from(peer.pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init))).await;
            if let Err(e) = result
                && !peer.ignore_offer.get()
            {
                return Err(e);
            }
        }
        SignalPayload::EndOfCandidates => {}
    }
    Ok(())
}

/// Closes the current peer connection and forgets the stranger's stream.
pub fn end_peer(engine: Engine) {
    let (peer, timer, had_remote) = with(engine, |m| {
        let mut m = m.borrow_mut();
        (m.peer.take(), m.stats_timer.take(), m.remote.take().is_some())
    });
    if let Some(timer) = timer {
        timer.clear();
    }
    if let Some(peer) = peer {
        let pc = &peer.pc;
        pc.set_onnegotiationneeded(None);
        pc.set_onicecandidate(None);
        pc.set_ontrack(None);
        pc.set_oniceconnectionstatechange(None);
        if let Some(timer) = peer.disconnected_timer.take() {
            timer.clear();
        }
        if let Some(on_online) = peer.on_online.borrow_mut().take() {
            on_online.remove();
        }
        pc.close();
        peer.handlers.borrow_mut().clear();
        peer.queue.borrow_mut().clear();
    }
    if had_remote {
        engine.media_changed();
    }
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// Reads getStats into the connection badge: relayed or direct, RTT, incoming bitrate.
fn sample_stats(engine: Engine) {
    let Some(peer) = with(engine, |m| m.borrow().peer.clone()) else { return };
    spawn_local(async move {
        let Ok(report) = JsFuture::from(peer.pc.get_stats()).await else { return };
        let values = js_sys::try_iter(
            &get(&report, "values")
                .dyn_into::<js_sys::Function>()
                .ok()
                .and_then(|f| f.call0(&report).ok())
                .unwrap_or(JsValue::UNDEFINED),
        );
        let Ok(Some(iter)) = values else { return };
        let all: Vec<JsValue> = iter.filter_map(Result::ok).collect();
        let by_id = |id: &JsValue| all.iter().find(|s| get(s, "id") == *id).cloned();
        let mut stats = ConnStats::default();
        let pair = all
            .iter()
            .find(|s| get(s, "type").as_string().as_deref() == Some("transport"))
            .and_then(|t| by_id(&get(t, "selectedCandidatePairId")))
            .or_else(|| {
                all.iter()
                    .find(|s| {
                        get(s, "type").as_string().as_deref() == Some("candidate-pair")
                            && get(s, "nominated").as_bool() == Some(true)
                            && get(s, "state").as_string().as_deref() == Some("succeeded")
                    })
                    .cloned()
            });
        if let Some(pair) = pair {
            stats.rtt_ms = get(&pair, "currentRoundTripTime").as_f64().map(|s| s * 1000.0);
            let relayed = |id: JsValue| {
                by_id(&id).is_some_and(|c| get(&c, "candidateType").as_string().as_deref() == Some("relay"))
            };
            stats.relayed = relayed(get(&pair, "localCandidateId")) || relayed(get(&pair, "remoteCandidateId"));
        }
        let inbound: f64 = all
            .iter()
            .filter(|s| get(s, "type").as_string().as_deref() == Some("inbound-rtp"))
            .filter_map(|s| get(s, "bytesReceived").as_f64())
            .sum();
        let now = js_sys::Date::now();
        if let Some((t0, b0)) = peer.last_inbound.replace(Some((now, inbound)))
            && now > t0
        {
            stats.inbound_kbps = Some(((inbound - b0) * 8.0 / (now - t0)).max(0.0));
        }
        engine.stats_sampled(peer.match_id, stats);
    });
}
