//! The client engine: one state machine for the whole chat, shared with every
//! component through context.
//!
//! Components read the signals and call the actions ([`Engine::start`],
//! [`Engine::next`], ...). The browser-only parts, behind [`crate::platform`] (the
//! signaling connection, a WebSocket or the HTTP fallback; camera, microphone and the
//! WebRTC peer connection), feed server messages into [`Engine::apply`], the only
//! place the phase changes on the server's word. On the server (SSR) the platform does
//! nothing and the same signals render the initial page.

use crate::platform;
use leptos::prelude::*;
use protocol::{
    ClientMsg, ErrorCode, IceServer, LeftReason, MatchId, Mode, OnlineCounts, Preferences, ReportReason, Role,
    ServerMsg,
};

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

/// Handle on the engine's signals (cheap to copy).
#[derive(Clone, Copy, Debug)]
pub struct Engine {
    /// Connection state.
    pub link: RwSignal<Link>,
    /// Which transport the link uses.
    pub transport: RwSignal<Transport>,
    /// Latest online counts from the server; `None` until the first `welcome`.
    pub online: RwSignal<Option<OnlineCounts>>,
    pub phase: RwSignal<Phase>,
    pub current: RwSignal<Option<MatchInfo>>,
    /// The chat log; kept after the stranger leaves until the next match starts.
    pub log: RwSignal<Vec<ChatLine>>,
    pub peer_typing: RwSignal<bool>,
    /// The preferences of the last start (what `next` repeats).
    pub prefs: RwSignal<Option<Preferences>>,
    /// Queue again by itself a few seconds after the stranger leaves.
    pub auto_next: RwSignal<bool>,
    /// A problem to show (refused message, media trouble); cleared by the next action.
    pub notice: RwSignal<Option<String>>,
    pub media_problem: RwSignal<Option<MediaProblem>>,
    /// ICE servers from the last `welcome`.
    pub ice_servers: RwSignal<Vec<IceServer>>,
    /// The server said it offers a TURN relay (credentials come with each match).
    pub relay_offered: RwSignal<bool>,
    /// Bumped whenever a media stream changes, so video elements rebind.
    pub media_rev: RwSignal<u64>,
    /// Connection facts from getStats: direct or relayed, round trip, incoming bitrate.
    pub stats: RwSignal<Option<ConnStats>>,
    /// Microphone muted / camera off.
    pub mic_muted: RwSignal<bool>,
    pub camera_off: RwSignal<bool>,
    /// "Hide my IP": relay media through TURN only, so the stranger never sees our address.
    pub relay_only: RwSignal<bool>,
    /// Candidate types (host, srflx, relay) the stranger has sent us in this match.
    pub remote_candidate_types: RwSignal<Vec<String>>,
    /// The country of our connection's address, as the server's IP database says.
    country: RwSignal<Option<String>>,
    next_seq: StoredValue<u64>,
    /// The match that ended last (report and block still apply to it).
    ended: StoredValue<Option<MatchId>>,
    /// We told the server to stop since our last join: a `queued` still on its way
    /// answers that earlier join and must not put us back in the queue.
    stop_sent: StoredValue<bool>,
}

/// What the connection badge shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnStats {
    /// The selected candidate pair goes through a TURN relay.
    pub relayed: bool,
    pub rtt_ms: Option<f64>,
    pub inbound_kbps: Option<f64>,
}

impl Engine {
    /// Creates the engine and provides it to the component tree below.
    pub fn provide() -> Self {
        let engine = Self {
            link: RwSignal::new(Link::Connecting),
            transport: RwSignal::new(Transport::WebSocket),
            online: RwSignal::new(None),
            phase: RwSignal::new(Phase::Idle),
            current: RwSignal::new(None),
            log: RwSignal::new(Vec::new()),
            peer_typing: RwSignal::new(false),
            prefs: RwSignal::new(None),
            auto_next: RwSignal::new(false),
            notice: RwSignal::new(None),
            media_problem: RwSignal::new(None),
            ice_servers: RwSignal::new(Vec::new()),
            relay_offered: RwSignal::new(false),
            media_rev: RwSignal::new(0),
            stats: RwSignal::new(None),
            mic_muted: RwSignal::new(false),
            camera_off: RwSignal::new(false),
            relay_only: RwSignal::new(false),
            remote_candidate_types: RwSignal::new(Vec::new()),
            country: RwSignal::new(None),
            next_seq: StoredValue::new(0),
            ended: StoredValue::new(None),
            stop_sent: StoredValue::new(false),
        };
        provide_context(engine);
        engine
    }

    /// The engine provided by [`crate::App`].
    pub fn expect() -> Self {
        expect_context::<Self>()
    }

    /// Restores this tab's preferences and the "Hide my IP" choice, then opens the
    /// signaling socket (browser only, after hydration, so the first render matches the
    /// server's; a no-op on the server).
    pub fn connect(self) {
        if self.prefs.get_untracked().is_none() {
            self.prefs.set(platform::load_prefs());
        }
        self.relay_only.set(platform::load_relay_only());
        platform::connect(self);
    }

    /// Whether the server offers a TURN relay (so "Hide my IP" can work).
    pub fn has_relay(&self) -> bool {
        self.relay_offered.get()
            || self
                .ice_servers
                .with(|s| s.iter().flat_map(|s| &s.urls).any(|u| u.starts_with("turn:") || u.starts_with("turns:")))
    }

    /// The country the server found for our connection's address (from `welcome`),
    /// if it knows one: "only strangers from my country" means that one.
    pub fn connection_country(&self) -> Signal<Option<String>> {
        self.country.into()
    }

    /// Whether a chat is under way or being looked for (the chat screen is relevant).
    pub fn in_chat(&self) -> bool {
        !matches!(self.phase.get(), Phase::Idle | Phase::Banned { .. })
    }

    /// Whether Start, Next and Stop can do anything: not while banned, nor once the
    /// server has closed the connection for good.
    pub fn can_act(&self) -> bool {
        !matches!(self.phase.get(), Phase::Banned { .. }) && self.link.get() != Link::Closed
    }

    fn push_line(&self, author: Author, text: impl Into<String>) {
        let seq = self.next_seq.get_value();
        self.next_seq.set_value(seq + 1);
        self.log.update(|log| log.push(ChatLine { seq, author, text: text.into() }));
    }

    fn send(&self, msg: ClientMsg) {
        platform::send(msg);
    }

    // ----- actions ------------------------------------------------------------------

    /// Starts looking for a stranger with these preferences. For video, camera and
    /// microphone are requested first; if that fails the user is offered text mode.
    pub fn start(self, prefs: Preferences) {
        if !untrack(|| self.can_act()) {
            return;
        }
        self.notice.set(None);
        self.media_problem.set(None);
        self.prefs.set(Some(prefs.clone()));
        platform::store_prefs(&prefs);
        platform::store_relay_only(self.relay_only.get_untracked());
        match prefs.mode {
            Mode::Text => self.join(prefs),
            Mode::Video => {
                self.phase.set(Phase::AskingMedia);
                platform::acquire_then(self, move |engine| engine.join(prefs));
            }
        }
    }

    fn join(self, prefs: Preferences) {
        self.stop_sent.set_value(false);
        self.phase.set(Phase::Waiting);
        self.send(ClientMsg::Join(prefs));
    }

    /// Media failed: stop (leaving any match) and explain, offering text mode.
    pub fn media_failed(self, problem: MediaProblem) {
        self.leave_server();
        self.stop_locally();
        self.media_problem.set(Some(problem));
    }

    /// Ends the current chat (if any) and looks for the next stranger.
    pub fn next(self) {
        if !untrack(|| self.can_act()) {
            return;
        }
        self.notice.set(None);
        let in_match = self.current.get_untracked().is_some();
        self.end_chat(Phase::Waiting);
        self.stop_sent.set_value(false);
        // Out of a match, join again with our preferences rather than `next`: a server
        // that restarted since has none of ours to repeat.
        match self.prefs.get_untracked() {
            Some(prefs) if !in_match => self.send(ClientMsg::Join(prefs)),
            _ => self.send(ClientMsg::Next),
        }
    }

    /// Ends the current chat or stops waiting; back to idle (camera off). A ban stays.
    pub fn stop(self) {
        if !untrack(|| self.can_act()) {
            return;
        }
        self.notice.set(None);
        self.leave_server();
        self.stop_locally();
        platform::release_local(self);
    }

    /// Tells the server we stop, if it has us in a match or in the queue.
    fn leave_server(&self) {
        if self.current.get_untracked().is_some() || self.phase.get_untracked() == Phase::Waiting {
            self.stop_sent.set_value(true);
            self.send(ClientMsg::Stop);
        }
    }

    /// Back to idle without telling the server (it already knows, or is gone).
    pub(crate) fn stop_locally(self) {
        self.end_chat(Phase::Idle);
    }

    /// Leaves the current match on our side (peer connection, typing indicator) and
    /// moves to `phase`.
    fn end_chat(&self, phase: Phase) {
        self.end_media();
        self.current.set(None);
        self.peer_typing.set(false);
        self.phase.set(phase);
    }

    /// Sends a chat line to the stranger (trimmed; empty lines are ignored). Returns
    /// whether it went out: not without a match, nor while our link is down (the socket
    /// would drop it, and the log must not show a line the stranger never gets).
    pub fn say(self, text: &str) -> bool {
        let text = text.trim();
        let Some(info) = self.current.get_untracked() else { return false };
        if self.link.get_untracked() != Link::Connected
            || text.is_empty()
            || text.chars().count() > protocol::limits::MAX_CHAT_CHARS
        {
            return false;
        }
        self.push_line(Author::Me, text);
        self.send(ClientMsg::Chat { match_id: info.id, text: text.to_string() });
        self.send(ClientMsg::Typing { match_id: info.id, typing: false });
        true
    }

    /// Tells the stranger whether we are typing.
    pub fn typing(self, typing: bool) {
        if let Some(info) = self.current.get_untracked() {
            self.send(ClientMsg::Typing { match_id: info.id, typing });
        }
    }

    /// The match that report/block refer to: the current one, else the one that just ended.
    fn last_match_id(&self) -> Option<MatchId> {
        self.current.get_untracked().map(|m| m.id).or_else(|| self.ended.get_value())
    }

    /// Reports the stranger of the current (or just ended) chat.
    pub fn report(self, reason: ReportReason) {
        if let Some(match_id) = self.last_match_id() {
            self.send(ClientMsg::Report { match_id, reason });
            self.push_line(Author::System, "Thanks. Your report was sent.");
        }
    }

    /// Never meet this stranger again; ends the chat without looking for the next (and
    /// without auto-next, also when the stranger had already left).
    pub fn block(self) {
        if let Some(match_id) = self.last_match_id() {
            let ends_chat =
                self.current.get_untracked().is_some() || matches!(self.phase.get_untracked(), Phase::PeerLeft(_));
            self.send(ClientMsg::Block { match_id });
            self.push_line(Author::System, "Blocked. You won't be matched with this stranger again.");
            if ends_chat {
                self.end_chat(Phase::Blocked);
            }
        }
    }

    fn end_media(&self) {
        if let Some(info) = self.current.get_untracked() {
            self.ended.set_value(Some(info.id));
        }
        platform::end_peer(*self);
        self.stats.set(None);
    }

    /// Applies a message from the server to the state.
    pub fn apply(self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { online, ice_servers, resumed, relay, country, .. } => {
                self.welcomed(online, ice_servers, resumed, relay, country)
            }
            ServerMsg::Online(counts) => self.online.set(Some(counts)),
            // Both may answer a join we have stopped since (the server does not answer
            // `stop`): then they are stale, and the server has ended that wait or match.
            ServerMsg::Queued { .. } | ServerMsg::Matched { .. }
                if self.stop_sent.get_value() || matches!(self.phase.get_untracked(), Phase::Banned { .. }) => {}
            // On a fresh page (Idle) this restores our wait after a reload.
            ServerMsg::Queued { .. } => self.phase.set(Phase::Waiting),
            ServerMsg::Matched { match_id, role, common_interests, peer_country, ice_servers, generation } => {
                if let Some(servers) = ice_servers {
                    self.ice_servers.set(servers);
                }
                self.matched(match_id, role, common_interests, peer_country, generation.unwrap_or(0));
            }
            ServerMsg::Error { code, message, .. } => match code {
                // Races with a match that just ended: nothing for the user to do.
                ErrorCode::StaleMatch => {}
                _ => self.notice.set(Some(message)),
            },
            ServerMsg::Banned { reason, until } => {
                self.end_chat(Phase::Banned { reason, until });
                platform::release_local(self);
            }
            about_a_match => self.in_match(about_a_match),
        }
    }

    fn welcomed(
        self,
        online: OnlineCounts,
        ice_servers: Vec<IceServer>,
        resumed: bool,
        relay: bool,
        country: Option<String>,
    ) {
        self.relay_offered.set(relay);
        self.country.set(country);
        self.link.set(Link::Connected);
        // Let in again: whatever ban there was is over.
        if matches!(self.phase.get_untracked(), Phase::Banned { .. }) {
            self.phase.set(Phase::Idle);
        }
        self.online.set(Some(online));
        self.ice_servers.set(ice_servers);
        if !resumed {
            self.session_lost();
        }
    }

    fn matched(
        self,
        match_id: MatchId,
        role: Role,
        common_interests: Vec<String>,
        peer_country: Option<String>,
        generation: u32,
    ) {
        let mode = self.prefs.get_untracked().map_or(Mode::Text, |p| p.mode);
        // The server may also name a country the stranger picked without insisting on
        // it; "both from" only holds when we insisted too.
        let insisted = self.prefs.get_untracked().is_some_and(|p| p.same_country);
        let shared_country = peer_country.filter(|_| insisted);
        let same =
            self.current.get_untracked().is_some_and(|m| m.id == match_id) || self.ended.get_value() == Some(match_id);
        if !same {
            // A new stranger: the previous conversation goes.
            self.log.set(Vec::new());
            let met = met_line(&common_interests, shared_country.as_deref());
            let hello =
                if common_interests.is_empty() && shared_country.is_none() { format!("{met} Say hi!") } else { met };
            self.push_line(Author::System, hello);
        }
        self.current.set(Some(MatchInfo { id: match_id, role, mode, common_interests, shared_country, generation }));
        self.peer_typing.set(false);
        match mode {
            Mode::Text => {
                self.phase.set(Phase::Connected);
                self.send(ClientMsg::Ready { match_id });
            }
            Mode::Video => {
                self.phase.set(Phase::Connecting);
                // After a reload the camera has to be opened again first.
                platform::acquire_then(self, platform::start_peer);
            }
        }
    }

    /// A message about one match: it counts only for the current one (the server may
    /// still be telling us about a match we have left).
    fn in_match(self, msg: ServerMsg) {
        let Some(info) = self.current.get_untracked() else { return };
        let about = match &msg {
            ServerMsg::Signal { match_id, .. }
            | ServerMsg::Chat { match_id, .. }
            | ServerMsg::Typing { match_id, .. }
            | ServerMsg::PeerLeft { match_id, .. }
            | ServerMsg::PeerReconnecting { match_id }
            | ServerMsg::IceServers { match_id, .. }
            | ServerMsg::PeerResumed { match_id, .. } => *match_id,
            _ => return,
        };
        if about != info.id {
            return;
        }
        match msg {
            ServerMsg::Signal { payload, .. } => platform::on_signal(self, payload),
            ServerMsg::Chat { text, .. } => {
                self.peer_typing.set(false);
                self.push_line(Author::Stranger, text);
            }
            ServerMsg::Typing { typing, .. } => self.peer_typing.set(typing),
            ServerMsg::PeerLeft { reason, .. } => {
                self.push_line(Author::System, "Stranger has disconnected.");
                self.end_chat(Phase::PeerLeft(reason));
            }
            ServerMsg::PeerReconnecting { .. } => self.phase.set(Phase::PeerReconnecting),
            ServerMsg::IceServers { ice_servers, .. } => {
                self.ice_servers.set(ice_servers);
                // Before the credentials in use expire: the connection moves over.
                platform::refresh_ice(self);
            }
            ServerMsg::PeerResumed { generation, .. } => self.peer_resumed(info, generation),
            _ => {}
        }
    }

    /// The stranger is back: a new negotiation generation, and a new peer connection.
    fn peer_resumed(self, mut info: MatchInfo, generation: Option<u32>) {
        if let Some(g) = generation {
            info.generation = g;
            self.current.set(Some(info.clone()));
        }
        match info.mode {
            Mode::Text => self.phase.set(Phase::Connected),
            Mode::Video => {
                // The stranger's page starts a new peer connection: so do we.
                self.phase.set(Phase::Connecting);
                platform::start_peer(self);
            }
        }
    }

    /// The server did not know our session any more (grace period over, or a server
    /// without our state). Whatever we were doing on it is gone.
    fn session_lost(self) {
        match self.phase.get_untracked() {
            Phase::Waiting => {
                // Still looking: look again on the new session.
                if let Some(prefs) = self.prefs.get_untracked() {
                    self.send(ClientMsg::Join(prefs));
                }
            }
            Phase::Connecting | Phase::Connected | Phase::PeerReconnecting => {
                self.push_line(Author::System, "Connection lost. The chat has ended.");
                self.end_chat(Phase::PeerLeft(LeftReason::Disconnected));
                // Report and block refer to a match this server never knew.
                self.ended.set_value(None);
            }
            _ => {}
        }
    }
}

/// "a", "a and b", "a, b and c".
/// "You're now chatting with a stranger." and what the two have in common: shared
/// interests, and the country when the server told it.
pub fn met_line(common_interests: &[String], country: Option<&str>) -> String {
    let mut line = "You're now chatting with a stranger.".to_string();
    if !common_interests.is_empty() {
        line.push_str(&format!(" You both like {}.", join_words(common_interests)));
    }
    if let Some(code) = country {
        line.push_str(&format!(" You're both from {}.", crate::country::name(code)));
    }
    line
}

pub fn join_words(words: &[String]) -> String {
    match words {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_words_like_a_person() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(join_words(&w(&["music"])), "music");
        assert_eq!(join_words(&w(&["music", "go"])), "music and go");
        assert_eq!(join_words(&w(&["a", "b", "c"])), "a, b and c");
    }
}
