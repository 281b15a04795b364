//! The client's commands: join, ready, next, stop, report, block.

use super::HubCore;
use crate::hub::backend::Request;
use crate::hub::io::{Command, Metric};
use crate::hub::matches::{self, Named};
use crate::hub::model::{Body, Parting, State};
use crate::hub::timers::Due;
use matcher::Millis;
use protocol::{ErrorCode, LeftReason, MatchId, Preferences, ServerMsg, SessionId};

impl HubCore {
    pub(super) fn command(&mut self, sid: SessionId, cmd: Command) {
        match cmd {
            Command::Hello => self.error(
                sid,
                ErrorCode::NotAllowed,
                "hello is only the first message of a socket opened with ?hello=1",
                None,
            ),
            Command::Join(prefs) => self.join(sid, prefs),
            Command::Ready { match_id } => self.ready(sid, match_id),
            Command::Next => self.next(sid),
            Command::Stop => self.stop(sid),
            Command::Report { match_id, reason } => self.report(sid, match_id, reason),
            Command::Block { match_id } => self.block(sid, match_id),
        }
    }

    pub(super) fn join(&mut self, sid: SessionId, prefs: Preferences) {
        let now = self.now;
        let session = self.sessions.get_mut(sid).expect("commands come from sessions of this node");
        let since = match session.state {
            State::Matched(_) => {
                return self.error(sid, ErrorCode::NotAllowed, "already in a match: send next or stop first", None);
            }
            // The same preferences again change nothing: no new search of the pool.
            State::Queued { .. } if session.prefs.as_ref() == Some(&prefs) => {
                self.send(sid, &ServerMsg::Queued { mode: prefs.mode });
                return;
            }
            State::Queued { since } => since,
            State::Idle => now,
        };
        let mode = prefs.mode;
        session.prefs = Some(prefs);
        session.state = State::Queued { since };
        self.send(sid, &ServerMsg::Queued { mode });
        self.search(sid, since);
    }

    pub(super) fn ready(&mut self, sid: SessionId, match_id: MatchId) {
        let session = self.sessions.get_mut(sid).expect("commands come from sessions of this node");
        if session.side(match_id).is_none() {
            return self.error(sid, ErrorCode::StaleMatch, "that match is not your current one", Some(match_id));
        }
        if let Some(held) = session.inbox.ready() {
            for frame in held {
                self.send_frame(sid, frame);
            }
            self.set_deadline(sid, Due::Ready, None);
        }
    }

    pub(super) fn next(&mut self, sid: SessionId) {
        let now = self.now;
        let session = self.sessions.get(sid).expect("commands come from sessions of this node");
        let Some(mode) = session.prefs.as_ref().map(|p| p.mode) else {
            return self.error(sid, ErrorCode::NotInMatch, "nothing to skip and no earlier join to repeat", None);
        };
        let cooldown = Parting::Cooldown(now + self.config.rematch_cooldown.as_millis() as Millis);
        self.end_match(sid, LeftReason::Skipped, cooldown);
        let session = self.sessions.get_mut(sid).expect("checked above");
        session.state = State::Queued { since: now };
        self.send(sid, &ServerMsg::Queued { mode });
        // A ticket already waiting is replaced (and its wait starts again).
        self.search(sid, now);
    }

    /// Submits `sid`'s ticket if its search budget allows; otherwise the search waits
    /// for the budget (the client already has its `queued`, and simply waits a little
    /// longer), with at most one search pending per session, made with the preferences
    /// of that time. A script that re-joins in a loop costs bookkeeping, not searches.
    pub(super) fn search(&mut self, sid: SessionId, since: Millis) {
        let (rate, now) = (self.config.join_rate, self.now);
        let session = self.sessions.get_mut(sid).expect("searching for a session of this node");
        if session.search_at.is_some() {
            return;
        }
        if session.joins.spend(rate, now) {
            return self.submit(sid, since);
        }
        let at = session.joins.next_allowed(rate, now);
        session.search_at = Some(at);
        self.timers.reset(sid, Due::Search, None, Some(at));
        self.metric(Metric::SearchDeferred);
    }

    /// Leaves the match or the queue. Unlike `next`, no cooldown: rule 5 of the
    /// protocol keeps apart only sessions that skipped each other.
    pub(super) fn stop(&mut self, sid: SessionId) {
        self.end_match(sid, LeftReason::Stopped, Parting::Free);
        let session = self.sessions.get_mut(sid).expect("commands come from sessions of this node");
        if matches!(std::mem::replace(&mut session.state, State::Idle), State::Queued { .. }) {
            self.request(Request::Withdraw { session: sid });
        }
    }

    /// The match `match_id` if it is `sid`'s current or last one; otherwise answers
    /// `stale_match`.
    pub(super) fn named(&mut self, sid: SessionId, match_id: MatchId) -> Option<Named> {
        let found = matches::named(self.sessions.get(sid)?, match_id);
        if found.is_none() {
            self.error(sid, ErrorCode::StaleMatch, "that match is not your current or last one", Some(match_id));
        }
        found
    }

    pub(super) fn block(&mut self, sid: SessionId, match_id: MatchId) {
        let Some(named) = self.named(sid, match_id) else {
            return;
        };
        if named.current {
            self.end_match(sid, LeftReason::Skipped, Parting::Block);
        } else {
            self.avoid_forever(sid, named.peer);
            self.forward(named.peer, sid, match_id, Body::Block);
        }
    }

    /// `sid` never meets `peer` again; a waiting ticket carries a copy of the avoid
    /// list, so it is renewed in place.
    pub(super) fn avoid_forever(&mut self, sid: SessionId, peer: SessionId) {
        let limit = self.config.avoid_limit;
        let Some(session) = self.sessions.get_mut(sid) else { return };
        matches::add_avoid(&mut session.avoid, peer, None, limit);
        if let State::Queued { since } = session.state
            && session.conn.is_some()
        {
            self.submit(sid, since);
        }
    }
}
