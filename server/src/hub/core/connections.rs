//! Sockets and sessions: welcome, resume, replacement, grace, expiry.

use super::HubCore;
use crate::hub::backend::{Request, Resolved};
use crate::hub::io::{Metric, Output};
use crate::hub::model::{Body, ConnId, Frame, Parting, Session, State};
use matcher::Millis;
use protocol::{ErrorCode, LeftReason, ResumeToken, ServerMsg, SessionId, close};

impl HubCore {
    /// The directory answered for a new socket: resume its session or start one.
    pub(super) fn resolved(&mut self, r: Resolved) {
        // A session another node held comes back to life here first, as one that is
        // away: should its socket have closed meanwhile (or the resume be refused),
        // it waits out its grace period here for the next try.
        if let (Some(sid), Some(snapshot)) = (r.session, r.imported)
            && self.sessions.get(sid).is_none()
        {
            self.import(sid, *snapshot, r.conn);
        }
        let Some((ip, country)) = self.sessions.take_pending(r.conn) else {
            return; // closed before its welcome
        };
        let (now, rate, cap) = (self.now, self.config.resume_rate, self.config.max_sessions_per_ip);
        if let Some(sid) = r.session.filter(|&s| self.sessions.get(s).is_some()) {
            let session = self.sessions.get_mut(sid).expect("filtered above");
            if !session.resumes.spend(rate, now) {
                // Each resume restarts the peer's video: a client that keeps reconnecting
                // waits (its session keeps its grace period; the token stays valid).
                self.metric(Metric::ClientError(ErrorCode::RateLimited));
                self.out.push_back(Output::Close {
                    conn: r.conn,
                    code: close::POLICY,
                    reason: "reconnecting too often",
                });
                return;
            }
            // Moving to another address takes a place there like a new session would.
            if session.ip != ip
                && r.at_address >= cap
                && let Some(oldest) = self.sessions.longest_away(ip)
            {
                self.expire(oldest);
            }
            self.attach(sid, r.conn, ip);
            if let Some(session) = self.sessions.get_mut(sid) {
                session.country = country;
            }
            self.welcome(sid, true);
            self.restore(sid);
            return;
        }
        if r.at_address >= cap
            && let Some(oldest) = self.sessions.longest_away(ip)
        {
            self.expire(oldest);
        }
        let sid = SessionId(self.ids.next_id());
        let token = ResumeToken(self.ids.next_id());
        let mut session = Session::new(token, r.conn, ip);
        session.country = country;
        self.sessions.insert(sid, session);
        self.welcome(sid, false);
    }

    /// Takes in a session another node held (it drained or died) as one away within
    /// its grace period, under the token it was claimed with; the resume that follows
    /// attaches `conn` (and, in a match, starts a new negotiation with the peer).
    fn import(&mut self, sid: SessionId, snapshot: crate::hub::snapshot::Snapshot, conn: ConnId) {
        let (token, ip) = (snapshot.token.clone(), snapshot.ip);
        let mut session = snapshot.into_session();
        if matches!(session.state, State::Matched(_)) {
            self.chatting += 1;
        }
        session.conn = Some(conn);
        self.sessions.insert(sid, session);
        let until = self.now + self.config.grace.as_millis() as Millis;
        self.sessions.detach(conn, until);
        self.request(Request::Register { session: sid, token, ip });
        self.metric(Metric::Imported);
    }

    /// Another node resumed `sid`: it is dropped here without ending its match or
    /// withdrawing its ticket (both carry on there). A socket still open is closed as
    /// replaced.
    pub(super) fn evict(&mut self, sid: SessionId) {
        let Some(session) = self.sessions.remove(sid) else { return };
        if let Some(conn) = session.conn {
            self.out.push_back(Output::Close { conn, code: close::REPLACED, reason: "resumed on another server" });
        }
        if let State::Matched(side) = &session.state {
            self.forget_deadlines(sid, side);
            self.chatting -= 1;
        }
        self.request(Request::Unregister { session: sid });
    }

    /// Sends `welcome`. Every welcome carries a fresh resume token: a resumed session
    /// gets a new one here, and the one it presented stops working (the directory
    /// keeps one token per session).
    pub(super) fn welcome(&mut self, sid: SessionId, resumed: bool) {
        if resumed {
            let fresh = ResumeToken(self.ids.next_id());
            self.sessions.set_token(sid, fresh);
        }
        let session = self.sessions.get(sid).expect("welcoming a session of this node");
        let (token, ip, country) = (session.token.clone(), session.ip, session.country.clone());
        self.request(Request::Register { session: sid, token: token.clone(), ip });
        self.touch(sid);
        let welcome = ServerMsg::Welcome {
            protocol: protocol::PROTOCOL_VERSION,
            session_id: sid,
            resume_token: token,
            resumed,
            // TURN credentials come with `matched` only.
            ice_servers: self.config.ice.stun_servers(),
            online: self.online_counts(),
            relay: self.config.ice.has_turn(),
            country,
            moderation: self.config.moderation.clone(),
        };
        self.send(sid, &welcome);
    }

    pub(super) fn unix_now(&self) -> u64 {
        self.unix_at_zero + self.now / 1000
    }

    /// Gives `sid` the socket `conn`, replacing a live one (closed with 4001) or
    /// ending its grace period.
    pub(super) fn attach(&mut self, sid: SessionId, conn: ConnId, ip: std::net::IpAddr) {
        let attached = self.sessions.attach(sid, conn, ip);
        if let Some(old) = attached.replaced {
            self.out.push_back(Output::Close {
                conn: old,
                code: close::REPLACED,
                reason: "replaced by a newer connection",
            });
        }
        // (`welcome`, next, registers the session's new token and address.)
        // Either way the session's client starts a new peer connection (see
        // `restore`): a new negotiation generation, which the peer joins.
        if (attached.replaced.is_some() || attached.returned)
            && let Some(side) = self.sessions.get_mut(sid).and_then(Session::current_match_mut)
        {
            side.generation += 1;
            let (peer, id, generation) = (side.peer, side.id, side.generation);
            self.forward(peer, sid, id, Body::Back { generation });
            self.touch(sid);
        }
    }

    /// Tells a resumed session where it stands.
    pub(super) fn restore(&mut self, sid: SessionId) {
        let ice = self.fresh_turn(sid);
        let session = self.sessions.get_mut(sid).expect("restoring a session of this node");
        let mut frames: Vec<Frame> = Vec::new();
        let mut requeue = None;
        let mut renegotiate = false;
        match &session.state {
            State::Idle => {
                if let Some((match_id, reason)) = session.missed_left.take() {
                    frames.push(ServerMsg::PeerLeft { match_id, reason }.to_json().into());
                }
            }
            &State::Queued { since } => {
                let mode = session.prefs.as_ref().expect("a queued session has preferences").mode;
                frames.push(ServerMsg::Queued { mode }.to_json().into());
                requeue = Some(since);
            }
            State::Matched(side) => {
                let matched = ServerMsg::Matched {
                    match_id: side.id,
                    role: side.role,
                    common_interests: side.common_interests.clone(),
                    peer_country: side.peer_country.clone(),
                    ice_servers: ice,
                    generation: Some(side.generation),
                };
                frames.push(matched.to_json().into());
                frames.extend(session.inbox.reconnected());
                renegotiate = true;
            }
        }
        for frame in frames {
            self.send_frame(sid, frame);
        }
        if renegotiate {
            self.await_ready(sid);
            self.schedule_refresh(sid);
        }
        if let Some(since) = requeue {
            self.submit(sid, since);
        }
    }

    pub(super) fn disconnect(&mut self, conn: ConnId) {
        if self.sessions.take_pending(conn).is_some() {
            return;
        }
        let until = self.now + self.config.grace.as_millis() as Millis;
        let Some(sid) = self.sessions.detach(conn, until) else {
            return;
        };
        let session = self.sessions.get_mut(sid).expect("just detached");
        match &session.state {
            State::Idle => {}
            // Out of the pool while away, so nobody is paired with an empty chair;
            // `since` is kept, so resuming restores the place.
            State::Queued { .. } => self.request(Request::Withdraw { session: sid }),
            State::Matched(side) => {
                let (peer, id) = (side.peer, side.id);
                session.inbox.went_away();
                self.forward(peer, sid, id, Body::Away);
            }
        }
    }

    /// The session, away within its grace period, is gone for good (the period ran
    /// out, or its address needs the room). It holds no ticket: that was withdrawn
    /// when it went away.
    pub(super) fn expire(&mut self, sid: SessionId) {
        self.end_match(sid, LeftReason::Disconnected, Parting::Free);
        if self.sessions.remove(sid).is_some() {
            self.request(Request::Unregister { session: sid });
        }
    }
}
