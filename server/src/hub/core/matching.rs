//! Tickets in, pairs out: starting and ending matches, one side at a time.

use super::HubCore;
use crate::hub::backend::{Entry, Paired, Request, Seat};
use crate::hub::io::{Ended, Metric};
use crate::hub::matches;
use crate::hub::model::{Body, Parting, Started};
use matcher::Millis;
use protocol::{LeftReason, MatchId, Role, ServerMsg, SessionId};

impl HubCore {
    /// Puts a queued session's ticket into matchmaking (with the video gate on, once
    /// its camera has passed: see `safety`).
    pub(super) fn submit(&mut self, sid: SessionId, since: Millis) {
        if self.gated(sid) {
            return;
        }
        let now = self.now;
        let session = self.sessions.get_mut(sid).expect("submitting a session of this node");
        let ticket = matches::ticket(sid, session, now);
        let ip = session.ip;
        let declared = matches::declared_country(session);
        self.request(Request::Submit(Entry { ticket, since, ip, declared }));
    }

    /// Matchmaking paired two tickets: the first side starts here and tells the
    /// second, wherever it lives.
    pub(super) fn paired(&mut self, p: Paired) {
        let Paired { pair, first, second } = p;
        let id = MatchId(self.ids.next_id());
        let common = pair.common_interests;
        // Two who both insisted on their own country learn it (it is the same for
        // both). Otherwise each learns only what the other declared: a country from
        // the IP database says where someone connects from, and is never told.
        let both = first.same_country && second.same_country;
        let told = |seat: &Seat| if both { seat.country.clone() } else { seat.declared.clone() };
        let (first_country, second_country) = (told(&first), told(&second));
        let to_second = Started {
            role: Role::Answerer,
            common_interests: common.clone(),
            peer_country: first_country,
            peer_ip: first.ip,
        };
        let to_first =
            Started { role: Role::Offerer, common_interests: common, peer_country: second_country, peer_ip: second.ip };
        self.metric(Metric::MatchStarted(pair.mode));
        tracing::debug!(match_id = %id, mode = pair.mode.as_str(), "matched");
        // The second hears of the match before anything the first side may say about
        // it: should the first have stopped meanwhile, its `Left` then ends the match
        // on both sides instead of reaching the second before it started.
        self.forward(pair.second, pair.first, id, Body::Started(Box::new(to_second)));
        self.start_side(pair.first, pair.second, id, to_first);
    }

    pub(super) fn start_side(&mut self, me: SessionId, peer: SessionId, id: MatchId, started: Started) {
        let role = started.role;
        let ice = self.fresh_turn(me);
        let Some(session) = self.sessions.get_mut(me) else {
            return self.forward(peer, me, id, Body::Left { reason: LeftReason::Disconnected, parting: Parting::Free });
        };
        let matched = ServerMsg::Matched {
            match_id: id,
            role,
            common_interests: started.common_interests.clone(),
            peer_country: started.peer_country.clone(),
            // TURN credentials expire: every match brings fresh ones (and `welcome`
            // none, so a socket that never joins cannot collect them).
            ice_servers: ice,
            generation: Some(0),
        };
        let Some(since) = matches::start_side(session, id, peer, started) else {
            // No longer waiting (raced with a stop on another node): the match is off.
            return self.forward(peer, me, id, Body::Left { reason: LeftReason::Stopped, parting: Parting::Free });
        };
        self.chatting += 1;
        self.touch(me);
        self.metric(Metric::QueueWait(self.now.saturating_sub(since)));
        self.send(me, &matched);
        self.await_ready(me);
        self.schedule_refresh(me);
    }

    /// Ends `sid`'s match, if any; its peer is told through the bus.
    pub(super) fn end_match(&mut self, sid: SessionId, reason: LeftReason, parting: Parting) -> Option<MatchId> {
        let ended = match (reason, parting) {
            (_, Parting::Block) => Ended::Blocked,
            (LeftReason::Skipped, _) => Ended::Skipped,
            (LeftReason::Stopped, _) => Ended::Stopped,
            (LeftReason::Disconnected, _) => Ended::Disconnected,
            (LeftReason::Banned, _) => Ended::Banned,
        };
        self.end_match_as(sid, reason, parting, ended)
    }

    /// [`HubCore::end_match`], counted as `ended`.
    pub(super) fn end_match_as(
        &mut self,
        sid: SessionId,
        reason: LeftReason,
        parting: Parting,
        ended: Ended,
    ) -> Option<MatchId> {
        let avoid_limit = self.config.avoid_limit;
        let side = matches::end_side(self.sessions.get_mut(sid)?, parting, avoid_limit)?;
        self.touch(sid);
        self.forget_deadlines(sid, &side);
        self.chatting -= 1;
        self.forward(side.peer, sid, side.id, Body::Left { reason, parting });
        self.metric(Metric::MatchEnded(ended));
        Some(side.id)
    }
}
