//! The server's word: [`Engine::apply`] is the only place where a server message
//! changes the state, each kind in a small function of its own.

use super::{Author, Engine, Link, MatchInfo, Phase, Veil, met_line};
use crate::platform;
use leptos::prelude::*;
use protocol::{
    ErrorCode, IceServer, LeftReason, MatchId, Mode, Moderation, OnlineCounts, Role, ServerMsg, SignalPayload,
};

impl Engine {
    /// Applies a message from the server to the state.
    pub fn apply(self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { online, ice_servers, resumed, relay, country, moderation, .. } => {
                self.welcomed(online, ice_servers, resumed, relay, country, moderation)
            }
            ServerMsg::Online(counts) => self.link.set_online.set(Some(counts)),
            // Both may answer a join we have stopped since (the server does not answer
            // `stop`): then they are stale, and the server has ended that wait or match.
            ServerMsg::Queued { .. } | ServerMsg::Matched { .. }
                if self.chat.stop_sent.get_value()
                    || matches!(self.chat.phase.get_untracked(), Phase::Banned { .. }) => {}
            // On a fresh page (Idle) this restores our wait after a reload.
            ServerMsg::Queued { .. } => self.chat.set_phase.set(Phase::Waiting),
            ServerMsg::Matched { match_id, role, common_interests, peer_country, ice_servers, generation } => {
                if let Some(servers) = ice_servers {
                    self.link.set_ice_servers.set(servers);
                }
                self.matched(match_id, role, common_interests, peer_country, generation.unwrap_or(0));
            }
            ServerMsg::Error { code, message, .. } => match code {
                // Races with a match that just ended: nothing for the user to do.
                ErrorCode::StaleMatch => {}
                _ => self.notify(message),
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
        moderation: Option<Moderation>,
    ) {
        self.link.set_relay_offered.set(relay);
        // Set before `session_lost` below, which may join the queue again (the gate).
        self.moderation.set_plan.set(moderation);
        self.moderation.gate.update_value(|g| g.welcomed(resumed));
        self.link.set_country.set(country);
        self.link.set_state.set(Link::Connected);
        // Let in again: whatever ban there was is over.
        if matches!(self.chat.phase.get_untracked(), Phase::Banned { .. }) {
            self.chat.set_phase.set(Phase::Idle);
        }
        self.link.set_online.set(Some(online));
        self.link.set_ice_servers.set(ice_servers);
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
        let prefs = self.chat.prefs.get_untracked();
        let mode = prefs.as_ref().map_or(Mode::Text, |p| p.mode);
        // The server may also name a country the stranger picked without insisting on
        // it; "both from" only holds when we insisted too.
        let insisted = prefs.is_some_and(|p| p.same_country);
        let shared_country = peer_country.filter(|_| insisted);
        let same = self.chat.current.get_untracked().is_some_and(|m| m.id == match_id)
            || self.chat.ended.get_value() == Some(match_id);
        if !same {
            // A new stranger: the previous conversation goes, and so does any blur.
            self.chat.set_log.set(Vec::new());
            self.moderation.set_veil.set(Veil::Clear);
            let met = met_line(&common_interests, shared_country.as_deref());
            let hello =
                if common_interests.is_empty() && shared_country.is_none() { format!("{met} Say hi!") } else { met };
            self.chat.push_line(Author::System, hello);
        }
        let info = MatchInfo { id: match_id, role, mode, common_interests, shared_country, generation };
        self.chat.set_current.set(Some(info));
        self.chat.set_peer_typing.set(false);
        match mode {
            Mode::Text => {
                self.chat.set_phase.set(Phase::Connected);
                self.send(protocol::ClientMsg::Ready { match_id });
            }
            Mode::Video => {
                self.chat.set_phase.set(Phase::Connecting);
                self.sample_match(match_id);
                // After a reload the camera has to be opened again first.
                platform::acquire_then(self, Engine::start_peer);
            }
        }
    }

    /// A message about one match: it counts only for the current one (the server may
    /// still be telling us about a match we have left).
    fn in_match(self, msg: ServerMsg) {
        let Some(info) = self.chat.current.get_untracked() else { return };
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
            ServerMsg::Signal { payload, .. } => self.signal_in(payload),
            ServerMsg::Chat { text, .. } => {
                self.chat.set_peer_typing.set(false);
                self.chat.push_line(Author::Stranger, text);
            }
            ServerMsg::Typing { typing, .. } => self.chat.set_peer_typing.set(typing),
            ServerMsg::PeerLeft { reason, .. } => {
                let line = match reason {
                    LeftReason::Banned => "Stranger was removed for breaking the rules.",
                    _ => "Stranger has disconnected.",
                };
                self.chat.push_line(Author::System, line);
                self.end_chat(Phase::PeerLeft(reason));
            }
            ServerMsg::PeerReconnecting { .. } => self.chat.set_phase.set(Phase::PeerReconnecting),
            ServerMsg::IceServers { ice_servers, .. } => {
                self.link.set_ice_servers.set(ice_servers);
                // Before the credentials in use expire: the connection moves over.
                platform::refresh_ice(self);
            }
            ServerMsg::PeerResumed { generation, .. } => self.peer_resumed(info, generation),
            _ => {}
        }
    }

    /// A signal from the stranger: the badge notes its candidate types, the peer
    /// connection applies it.
    fn signal_in(self, payload: SignalPayload) {
        match &payload {
            SignalPayload::Offer { sdp } | SignalPayload::Answer { sdp } => self.media.note_candidate_types(sdp),
            SignalPayload::Candidate { candidate, .. } => self.media.note_candidate_types(candidate),
            SignalPayload::EndOfCandidates => {}
        }
        platform::on_signal(self, payload);
    }

    /// The stranger is back: a new negotiation generation, and a new peer connection.
    fn peer_resumed(self, mut info: MatchInfo, generation: Option<u32>) {
        if let Some(g) = generation {
            info.generation = g;
            self.chat.set_current.set(Some(info.clone()));
        }
        match info.mode {
            Mode::Text => self.chat.set_phase.set(Phase::Connected),
            Mode::Video => {
                // The stranger's page starts a new peer connection: so do we.
                self.chat.set_phase.set(Phase::Connecting);
                self.start_peer();
            }
        }
    }

    /// The server did not know our session any more (grace period over, or a server
    /// without our state). Whatever we were doing on it is gone.
    fn session_lost(self) {
        match self.chat.phase.get_untracked() {
            Phase::Waiting => {
                // Still looking: look again on the new session.
                if let Some(prefs) = self.chat.prefs.get_untracked() {
                    self.send(protocol::ClientMsg::Join(prefs));
                    self.gate_if_needed();
                }
            }
            Phase::Connecting | Phase::Connected | Phase::PeerReconnecting => {
                self.chat.push_line(Author::System, "Connection lost. The chat has ended.");
                self.end_chat(Phase::PeerLeft(LeftReason::Disconnected));
                // Report and block refer to a match this server never knew.
                self.chat.ended.set_value(None);
            }
            _ => {}
        }
    }
}
