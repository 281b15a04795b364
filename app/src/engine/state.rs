//! What the engine knows, in groups: the link to the server, the chat, the media and
//! moderation. Views read the public `ReadSignal`s; only the engine holds the writers.

use super::moderation::{Gate, Veil};
use leptos::prelude::*;
use protocol::{IceServer, LeftReason, MatchId, Mode, Moderation, OnlineCounts, Preferences, Role};

/// How this tab reaches the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    #[default]
    WebSocket,
    /// Server-sent events and POSTs: WebSockets do not get through this network.
    Fallback,
}

/// The state of our own link to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Server-rendered page, or the first connection attempt is under way.
    Connecting,
    /// The server said `welcome`.
    Connected,
    /// The connection dropped; the next attempt is scheduled.
    Reconnecting,
    /// The server restarts; we reconnect right away.
    Restarting,
    /// The server closed the connection for good (this address is banned): no reconnecting.
    Closed,
}

/// Where the chat is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not chatting, not waiting.
    Idle,
    /// Getting camera and microphone permission before joining.
    AskingMedia,
    /// In the queue.
    Waiting,
    /// Matched; the peer connection is being set up (video only).
    Connecting,
    /// Talking.
    Connected,
    /// The stranger's socket dropped; the match is held for them.
    PeerReconnecting,
    /// The stranger left (or their connection did not come back).
    PeerLeft(LeftReason),
    /// We blocked the stranger: the chat is over and we do not look for the next one.
    Blocked,
    /// This address is banned until the given time (RFC 3339).
    Banned { reason: String, until: String },
}

/// The current match, as the server described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchInfo {
    pub id: MatchId,
    pub role: Role,
    pub mode: Mode,
    pub common_interests: Vec<String>,
    /// The country both come from, when both asked for strangers from their own.
    pub shared_country: Option<String>,
    /// The negotiation generation signals of this peer connection belong to.
    pub generation: u32,
}

/// Who wrote a line of the chat log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Author {
    Me,
    Stranger,
    /// Status lines ("You're now chatting with a stranger.").
    System,
}

/// One line of the chat log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatLine {
    /// Unique within the page (keys for the list).
    pub seq: u64,
    pub author: Author,
    pub text: String,
}

/// Why media could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaProblem {
    /// The user (or a policy) refused camera/microphone access.
    Denied,
    /// No camera or microphone exists.
    Missing,
    /// The device exists but cannot be used (in use by another app, ...).
    Unavailable(String),
    /// This browser has no WebRTC.
    NoWebRtc,
}

/// What the connection badge shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnStats {
    /// The selected candidate pair goes through a TURN relay.
    pub relayed: bool,
    pub rtt_ms: Option<f64>,
    pub inbound_kbps: Option<f64>,
}

/// Our link to the server.
#[derive(Clone, Copy, Debug)]
pub struct LinkState {
    pub state: ReadSignal<Link>,
    /// Which transport the link uses.
    pub transport: ReadSignal<Transport>,
    /// Latest online counts from the server; `None` until the first `welcome`.
    pub online: ReadSignal<Option<OnlineCounts>>,
    /// The country of our connection's address, as the server's IP database says
    /// (from `welcome`): "only strangers from my country" means that one.
    pub country: ReadSignal<Option<String>>,
    /// ICE servers from the last `welcome` (or their refresh during a match).
    pub ice_servers: ReadSignal<Vec<IceServer>>,
    /// The server said it offers a TURN relay (credentials come with each match).
    pub relay_offered: ReadSignal<bool>,
    pub(super) set_state: WriteSignal<Link>,
    pub(super) set_transport: WriteSignal<Transport>,
    pub(super) set_online: WriteSignal<Option<OnlineCounts>>,
    pub(super) set_country: WriteSignal<Option<String>>,
    pub(super) set_ice_servers: WriteSignal<Vec<IceServer>>,
    pub(super) set_relay_offered: WriteSignal<bool>,
}

impl LinkState {
    pub(super) fn new() -> Self {
        let (state, set_state) = signal(Link::Connecting);
        let (transport, set_transport) = signal(Transport::WebSocket);
        let (online, set_online) = signal(None);
        let (country, set_country) = signal(None);
        let (ice_servers, set_ice_servers) = signal(Vec::new());
        let (relay_offered, set_relay_offered) = signal(false);
        Self {
            state,
            transport,
            online,
            country,
            ice_servers,
            relay_offered,
            set_state,
            set_transport,
            set_online,
            set_country,
            set_ice_servers,
            set_relay_offered,
        }
    }

    /// Whether the server offers a TURN relay (so "Hide my IP" can work).
    pub fn has_relay(&self) -> bool {
        self.relay_offered.get()
            || self
                .ice_servers
                .with(|s| s.iter().flat_map(|s| &s.urls).any(|u| u.starts_with("turn:") || u.starts_with("turns:")))
    }
}

/// The chat: where it is, with whom, and what was said.
#[derive(Clone, Copy, Debug)]
pub struct ChatState {
    pub phase: ReadSignal<Phase>,
    pub current: ReadSignal<Option<MatchInfo>>,
    /// The chat log; kept after the stranger leaves until the next match starts.
    pub log: ReadSignal<Vec<ChatLine>>,
    pub peer_typing: ReadSignal<bool>,
    /// The preferences of the last start (what `next` repeats).
    pub prefs: ReadSignal<Option<Preferences>>,
    /// Queue again by itself a few seconds after the stranger leaves.
    pub auto_next: ReadSignal<bool>,
    pub(super) set_phase: WriteSignal<Phase>,
    pub(super) set_current: WriteSignal<Option<MatchInfo>>,
    pub(super) set_log: WriteSignal<Vec<ChatLine>>,
    pub(super) set_peer_typing: WriteSignal<bool>,
    pub(super) set_prefs: WriteSignal<Option<Preferences>>,
    pub(super) set_auto_next: WriteSignal<bool>,
    pub(super) next_seq: StoredValue<u64>,
    /// The match that ended last (report and block still apply to it).
    pub(super) ended: StoredValue<Option<MatchId>>,
    /// We told the server to stop since our last join: a `queued` still on its way
    /// answers that earlier join and must not put us back in the queue.
    pub(super) stop_sent: StoredValue<bool>,
}

impl ChatState {
    pub(super) fn new() -> Self {
        let (phase, set_phase) = signal(Phase::Idle);
        let (current, set_current) = signal(None);
        let (log, set_log) = signal(Vec::new());
        let (peer_typing, set_peer_typing) = signal(false);
        let (prefs, set_prefs) = signal(None);
        let (auto_next, set_auto_next) = signal(false);
        Self {
            phase,
            current,
            log,
            peer_typing,
            prefs,
            auto_next,
            set_phase,
            set_current,
            set_log,
            set_peer_typing,
            set_prefs,
            set_auto_next,
            next_seq: StoredValue::new(0),
            ended: StoredValue::new(None),
            stop_sent: StoredValue::new(false),
        }
    }

    pub(super) fn push_line(&self, author: Author, text: impl Into<String>) {
        let seq = self.next_seq.get_value();
        self.next_seq.set_value(seq + 1);
        self.set_log.update(|log| log.push(ChatLine { seq, author, text: text.into() }));
    }

    /// The match that report and block refer to: the current one, else the one that
    /// just ended.
    pub(super) fn last_match_id(&self) -> Option<MatchId> {
        self.current.get_untracked().map(|m| m.id).or_else(|| self.ended.get_value())
    }
}

/// Camera, microphone and the connection to the stranger, as the page shows them.
#[derive(Clone, Copy, Debug)]
pub struct MediaState {
    /// Why camera or microphone could not start (the page offers text mode).
    pub problem: ReadSignal<Option<MediaProblem>>,
    /// Bumped whenever a media stream changes, so video elements rebind.
    pub rev: ReadSignal<u64>,
    /// Connection facts from getStats: direct or relayed, round trip, incoming bitrate.
    pub stats: ReadSignal<Option<ConnStats>>,
    pub mic_muted: ReadSignal<bool>,
    pub camera_off: ReadSignal<bool>,
    /// "Hide my IP": relay media through TURN only, so the stranger never sees our address.
    pub relay_only: ReadSignal<bool>,
    /// Candidate types (host, srflx, relay) the stranger has sent us in this match.
    pub remote_candidate_types: ReadSignal<Vec<String>>,
    pub(super) set_problem: WriteSignal<Option<MediaProblem>>,
    pub(super) set_rev: WriteSignal<u64>,
    pub(super) set_stats: WriteSignal<Option<ConnStats>>,
    pub(super) set_mic_muted: WriteSignal<bool>,
    pub(super) set_camera_off: WriteSignal<bool>,
    pub(super) set_relay_only: WriteSignal<bool>,
    pub(super) set_remote_candidate_types: WriteSignal<Vec<String>>,
}

impl MediaState {
    pub(super) fn new() -> Self {
        let (problem, set_problem) = signal(None);
        let (rev, set_rev) = signal(0);
        let (stats, set_stats) = signal(None);
        let (mic_muted, set_mic_muted) = signal(false);
        let (camera_off, set_camera_off) = signal(false);
        let (relay_only, set_relay_only) = signal(false);
        let (remote_candidate_types, set_remote_candidate_types) = signal(Vec::new());
        Self {
            problem,
            rev,
            stats,
            mic_muted,
            camera_off,
            relay_only,
            remote_candidate_types,
            set_problem,
            set_rev,
            set_stats,
            set_mic_muted,
            set_camera_off,
            set_relay_only,
            set_remote_candidate_types,
        }
    }

    /// Notes the candidate types ("typ host", "typ srflx", "typ relay") in an SDP or
    /// a candidate line the stranger sent.
    pub(super) fn note_candidate_types(&self, text: &str) {
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w == "typ"
                && let Some(t) = words.next()
                && !self.remote_candidate_types.with_untracked(|v| v.iter().any(|x| x == t))
            {
                let t = t.to_string();
                self.set_remote_candidate_types.update(|v| v.push(t));
            }
        }
    }
}

/// Moderation as this client takes part in it: what the server asked for, the gate,
/// and the blur over a flagged stranger.
#[derive(Clone, Copy, Debug)]
pub struct ModerationState {
    /// How video frames are sampled, from the last `welcome`; `None` when the server
    /// does not moderate (then no frame is ever sent).
    pub plan: ReadSignal<Option<Moderation>>,
    /// The stranger's video in the current match: shown, blurred after a flagged
    /// frame, or shown anyway. Back to clear with every new match.
    pub veil: ReadSignal<Veil>,
    pub(super) set_plan: WriteSignal<Option<Moderation>>,
    pub(super) set_veil: WriteSignal<Veil>,
    /// Whether this session has had a frame of its camera classified clean.
    pub(super) gate: StoredValue<Gate>,
}

impl ModerationState {
    pub(super) fn new() -> Self {
        let (plan, set_plan) = signal(None);
        let (veil, set_veil) = signal(Veil::Clear);
        Self { plan, veil, set_plan, set_veil, gate: StoredValue::new(Gate::default()) }
    }
}

/// A kind of capture device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Camera,
    Microphone,
}

/// A camera or microphone the browser offers (its label is empty until the user has
/// granted access to one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub kind: DeviceKind,
    pub id: String,
    pub label: String,
}
