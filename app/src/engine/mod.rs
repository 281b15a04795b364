//! The client engine: one state machine for the whole chat, shared with every
//! component through context.
//!
//! - **State** ([`state`]): groups of read-only signals, [`Engine::link`] (our
//!   connection to the server), [`Engine::chat`] (phase, match, log) and
//!   [`Engine::media`] (camera, microphone, the stranger's connection), plus
//!   [`Engine::moderation`] (frame sampling, the gate, the blur over a flagged
//!   stranger) and the [`Engine::notice`]. Only the engine writes them.
//! - **Actions**: what the user does, by name: [`Engine::start`], [`Engine::next`],
//!   [`Engine::stop`], [`Engine::say`], [`Engine::toggle_mic`], ...
//! - **The server's word**: [`Engine::apply`] ([`apply`]), the only place the phase
//!   changes on a server message.
//! - **Moderation** ([`moderation`]): when frames are sampled and what their answers
//!   mean, as plain rules; the platform captures and sends the frames.
//! - **Platform events**: the browser side ([`crate::platform`]: the signaling
//!   connection, camera, microphone and the WebRTC peer) reports what happened through
//!   the methods under "events from the platform" and never writes state itself. Only
//!   the engine sends to the server. What the platform keeps for this engine (the
//!   open connection, the streams) lives in the engine too, as an opaque
//!   [`platform::Runtime`]: there is no global state.
//!
//! On the server (SSR) the platform does nothing and the same signals render the
//! initial page.

mod apply;
pub mod moderation;
mod state;

pub use moderation::{Outcome, Sample, Veil};
pub use state::{
    Author, ChatLine, ChatState, ConnStats, Device, DeviceKind, Link, LinkState, MatchInfo, MediaProblem, MediaState,
    ModerationState, Phase, Transport,
};

use crate::platform;
use leptos::prelude::*;
use protocol::{ClientMsg, MatchId, Mode, Preferences, ReportReason, SignalPayload};

/// Handle on the engine (cheap to copy).
#[derive(Clone, Copy, Debug)]
pub struct Engine {
    pub link: LinkState,
    pub chat: ChatState,
    pub media: MediaState,
    pub moderation: ModerationState,
    /// A problem to show (refused message, media trouble); cleared by the next action.
    pub notice: ReadSignal<Option<String>>,
    set_notice: WriteSignal<Option<String>>,
    /// What the platform keeps for this engine.
    runtime: StoredValue<platform::Runtime, platform::Local>,
}

impl Engine {
    /// Creates the engine and provides it to the component tree below.
    pub fn provide() -> Self {
        let (notice, set_notice) = signal(None);
        let engine = Self {
            link: LinkState::new(),
            chat: ChatState::new(),
            media: MediaState::new(),
            moderation: ModerationState::new(),
            notice,
            set_notice,
            runtime: StoredValue::new_with_storage(platform::Runtime::default()),
        };
        provide_context(engine);
        engine
    }

    /// The engine provided by [`crate::App`].
    pub fn expect() -> Self {
        expect_context::<Self>()
    }

    /// Restores this tab's preferences and the "Hide my IP" choice, then opens the
    /// signaling connection (browser only, after hydration, so the first render matches
    /// the server's; a no-op on the server).
    pub fn connect(self) {
        if self.chat.prefs.get_untracked().is_none() {
            self.chat.set_prefs.set(platform::load_prefs());
        }
        self.media.set_relay_only.set(platform::load_relay_only());
        platform::connect(self);
    }

    /// The platform's state for this engine; `None` once the engine is gone (a timer
    /// that outlived its page).
    pub fn runtime(&self) -> Option<platform::Runtime> {
        self.runtime.try_get_value()
    }

    /// Whether the server offers a TURN relay (so "Hide my IP" can work).
    pub fn has_relay(&self) -> bool {
        self.link.has_relay()
    }

    /// Whether a chat is under way or being looked for (the chat screen is relevant).
    pub fn in_chat(&self) -> bool {
        !matches!(self.chat.phase.get(), Phase::Idle | Phase::Banned { .. })
    }

    /// Whether Start, Next and Stop can do anything: not while banned, nor once the
    /// server has closed the connection for good.
    pub fn can_act(&self) -> bool {
        !matches!(self.chat.phase.get(), Phase::Banned { .. }) && self.link.state.get() != Link::Closed
    }

    fn send(&self, msg: ClientMsg) {
        platform::send(*self, msg);
    }

    fn set_phase(&self, phase: Phase) {
        self.chat.set_phase.set(phase);
    }

    // ----- actions ------------------------------------------------------------------

    /// Starts looking for a stranger with these preferences. For video, camera and
    /// microphone are requested first; if that fails the user is offered text mode.
    pub fn start(self, prefs: Preferences) {
        if !untrack(|| self.can_act()) {
            return;
        }
        self.set_notice.set(None);
        self.media.set_problem.set(None);
        self.chat.set_prefs.set(Some(prefs.clone()));
        platform::store_prefs(&prefs);
        platform::store_relay_only(self.media.relay_only.get_untracked());
        match prefs.mode {
            Mode::Text => self.join(prefs),
            Mode::Video => {
                self.set_phase(Phase::AskingMedia);
                platform::acquire_then(self, move |engine| engine.join(prefs));
            }
        }
    }

    fn join(self, prefs: Preferences) {
        self.chat.stop_sent.set_value(false);
        self.set_phase(Phase::Waiting);
        self.send(ClientMsg::Join(prefs));
        self.gate_if_needed();
    }

    /// Ends the current chat (if any) and looks for the next stranger.
    pub fn next(self) {
        if !untrack(|| self.can_act()) {
            return;
        }
        self.set_notice.set(None);
        let in_match = self.chat.current.get_untracked().is_some();
        self.end_chat(Phase::Waiting);
        self.chat.stop_sent.set_value(false);
        // Out of a match, join again with our preferences rather than `next`: a server
        // that restarted since has none of ours to repeat.
        match self.chat.prefs.get_untracked() {
            Some(prefs) if !in_match => self.send(ClientMsg::Join(prefs)),
            _ => self.send(ClientMsg::Next),
        }
        self.gate_if_needed();
    }

    /// Ends the current chat or stops waiting; back to idle (camera off). A ban stays.
    pub fn stop(self) {
        if !untrack(|| self.can_act()) {
            return;
        }
        self.set_notice.set(None);
        self.leave_server();
        self.stop_locally();
        platform::release_local(self);
    }

    /// Sends a chat line to the stranger (trimmed; empty lines are ignored). Returns
    /// whether it went out: not without a match, nor while our link is down (the
    /// connection would drop it, and the log must not show a line the stranger never
    /// gets).
    pub fn say(self, text: &str) -> bool {
        let text = text.trim();
        let Some(info) = self.chat.current.get_untracked() else { return false };
        if self.link.state.get_untracked() != Link::Connected
            || text.is_empty()
            || text.chars().count() > protocol::limits::MAX_CHAT_CHARS
        {
            return false;
        }
        self.chat.push_line(Author::Me, text);
        self.send(ClientMsg::Chat { match_id: info.id, text: text.to_string() });
        self.send(ClientMsg::Typing { match_id: info.id, typing: false });
        true
    }

    /// Tells the stranger whether we are typing.
    pub fn typing(self, typing: bool) {
        if let Some(info) = self.chat.current.get_untracked() {
            self.send(ClientMsg::Typing { match_id: info.id, typing });
        }
    }

    /// Reports the stranger of the current (or just ended) chat.
    pub fn report(self, reason: ReportReason) {
        if let Some(match_id) = self.chat.last_match_id() {
            self.send(ClientMsg::Report { match_id, reason });
            self.chat.push_line(Author::System, "Thanks. Your report was sent.");
        }
    }

    /// Never meet this stranger again; ends the chat without looking for the next (and
    /// without auto-next, also when the stranger had already left).
    pub fn block(self) {
        if let Some(match_id) = self.chat.last_match_id() {
            let ends_chat = self.chat.current.get_untracked().is_some()
                || matches!(self.chat.phase.get_untracked(), Phase::PeerLeft(_));
            self.send(ClientMsg::Block { match_id });
            self.chat.push_line(Author::System, "Blocked. You won't be matched with this stranger again.");
            if ends_chat {
                self.end_chat(Phase::Blocked);
            }
        }
    }

    /// Mutes or unmutes the microphone.
    pub fn toggle_mic(self) {
        self.media.set_mic_muted.update(|muted| *muted = !*muted);
        platform::apply_track_switches(self);
    }

    /// Turns the camera off or on (the stranger sees black).
    pub fn toggle_camera(self) {
        self.media.set_camera_off.update(|off| *off = !*off);
        platform::apply_track_switches(self);
    }

    /// Queue again by ourselves a few seconds after the stranger leaves, or not.
    pub fn set_auto_next(self, on: bool) {
        self.chat.set_auto_next.set(on);
    }

    /// "Hide my IP": relay media through TURN only (from the next match on; kept for
    /// the next visit when a chat starts).
    pub fn set_relay_only(self, on: bool) {
        self.media.set_relay_only.set(on);
    }

    /// Closes the notice.
    pub fn dismiss_notice(self) {
        self.set_notice.set(None);
    }

    /// Switches to another camera or microphone, in the middle of a call too.
    pub fn choose_device(self, kind: DeviceKind, device_id: String) {
        platform::switch_device(self, kind, device_id);
    }

    // ----- events from the platform ---------------------------------------------------

    /// The link to the server changed (dropped, restarting, closed for good). The
    /// server's `welcome` is what brings it to `Connected`.
    pub fn link_changed(self, link: Link) {
        self.link.set_state.set(link);
    }

    /// The link switched transports.
    pub fn transport_changed(self, transport: Transport) {
        self.link.set_transport.set(transport);
    }

    /// Another tab (a duplicate of this one) took our session over: this one starts
    /// afresh.
    pub fn session_taken_over(self) {
        self.notify("This chat continued in another tab.");
        self.stop_locally();
    }

    /// Something the user should know (a device that would not open, a connection to
    /// the stranger that keeps failing).
    pub fn notify(self, text: impl Into<String>) {
        self.set_notice.set(Some(text.into()));
    }

    /// Media failed: stop (leaving any match) and explain, offering text mode.
    pub fn media_failed(self, problem: MediaProblem) {
        self.leave_server();
        self.stop_locally();
        self.media.set_problem.set(Some(problem));
    }

    /// A media stream (ours or the stranger's) appeared, changed or went.
    pub fn media_changed(self) {
        self.media.set_rev.update(|r| *r += 1);
    }

    /// The peer connection reached the stranger.
    pub fn media_connected(self) {
        if matches!(self.chat.phase.get_untracked(), Phase::Connecting | Phase::PeerReconnecting) {
            self.set_phase(Phase::Connected);
        }
    }

    /// Fresh figures for the connection badge, if still about the current match.
    pub fn stats_sampled(self, match_id: MatchId, stats: ConnStats) {
        if self.chat.current.get_untracked().is_some_and(|m| m.id == match_id) {
            self.media.set_stats.set(Some(stats));
        }
    }

    /// The peer connection for `match_id` is set up: the server may start relaying
    /// the stranger's signals.
    pub fn peer_ready(self, match_id: MatchId) {
        self.send(ClientMsg::Ready { match_id });
    }

    /// A signal for the stranger, from the peer connection of `match_id`.
    pub fn signal_out(self, match_id: MatchId, generation: u32, payload: SignalPayload) {
        self.send(ClientMsg::Signal { match_id, payload, generation: Some(generation) });
    }

    // ----- internals ------------------------------------------------------------------

    /// (Re)starts the peer connection for the current match.
    fn start_peer(self) {
        self.media.set_remote_candidate_types.set(Vec::new());
        platform::start_peer(self);
    }

    /// Tells the server we stop, if it has us in a match or in the queue.
    fn leave_server(&self) {
        if self.chat.current.get_untracked().is_some() || self.chat.phase.get_untracked() == Phase::Waiting {
            self.chat.stop_sent.set_value(true);
            self.send(ClientMsg::Stop);
        }
    }

    /// Back to idle without telling the server (it already knows, or is gone).
    fn stop_locally(self) {
        self.end_chat(Phase::Idle);
    }

    /// Leaves the current match on our side (peer connection, frame sampling, typing
    /// indicator) and moves to `phase`.
    fn end_chat(&self, phase: Phase) {
        if let Some(info) = self.chat.current.get_untracked() {
            self.chat.ended.set_value(Some(info.id));
        }
        platform::stop_frames(*self);
        platform::end_peer(*self);
        self.moderation.set_veil.set(Veil::Clear);
        self.media.set_stats.set(None);
        self.chat.set_current.set(None);
        self.chat.set_peer_typing.set(false);
        self.set_phase(phase);
    }
}

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

/// "a", "a and b", "a, b and c".
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
