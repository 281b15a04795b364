//! The hub core: every protocol rule, as a state machine with no I/O.
//!
//! [`HubCore::handle`] takes one [`Input`] and the current time; [`HubCore::poll_output`]
//! then yields what to do (send a frame, close a socket, count a metric, ask the
//! backend). [`HubCore::poll_timeout`] says when to come back with [`Input::Timer`].
//! Ids and tokens come from an injected [`IdSource`]. Each session changes only its own
//! state: what another session must do goes out as an [`Envelope`] through the bus, so
//! the two sides of a match may live on different nodes.

use super::backend::{Entry, Event, Paired, Request, Resolved};
use super::config::HubConfig;
use super::io::{Command, Dropped, Ended, Input, Metric, Output};
use super::matches::{self, Named};
use super::model::{Body, ConnId, Envelope, Frame, Parting, RelayKind, Session, Started, State};
use super::moderation::Moderation;
use super::relay::Accepted;
use super::sessions::Sessions;
use matcher::Millis;
use protocol::{
    ErrorCode, LeftReason, MatchId, OnlineCounts, Preferences, ReportReason, ResumeToken, Role, ServerMsg, SessionId,
    close,
};
use std::collections::VecDeque;
use uuid::Uuid;

/// Where session ids, match ids and resume tokens come from.
pub trait IdSource: Send {
    fn next_id(&mut self) -> Uuid;
}

/// Random version-4 UUIDs (resume tokens are credentials: they must not be guessable).
#[derive(Debug, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn next_id(&mut self) -> Uuid {
        Uuid::new_v4()
    }
}

/// Sizes the core can tell cheaply (no walk over sessions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sessions: usize,
    pub live_sockets: usize,
    pub in_match: usize,
}

/// When `online` counts go out next.
#[derive(Debug, Default)]
struct OnlinePush {
    /// The counts last pushed.
    pushed: OnlineCounts,
    last_at: Option<Millis>,
    /// A push is due at this time (the counts changed since the last one).
    due: Option<Millis>,
}

/// The rules. See the module docs.
pub struct HubCore {
    config: HubConfig,
    ids: Box<dyn IdSource>,
    /// Unix seconds at millisecond 0 of the core's clock (TURN credential expiry).
    unix_at_zero: u64,
    sessions: Sessions,
    moderation: Moderation,
    /// Sessions of this node in a match.
    chatting: u32,
    online: OnlinePush,
    out: VecDeque<Output>,
    now: Millis,
}

impl std::fmt::Debug for HubCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubCore").field("sessions", &self.sessions.len()).field("now", &self.now).finish()
    }
}

impl HubCore {
    /// A core with no sessions. `unix_at_zero`: the wall clock (Unix seconds) when
    /// the caller's millisecond clock read 0.
    pub fn new(config: HubConfig, ids: Box<dyn IdSource>, unix_at_zero: u64) -> Self {
        Self {
            config,
            ids,
            unix_at_zero,
            sessions: Sessions::default(),
            moderation: Moderation::default(),
            chatting: 0,
            online: OnlinePush::default(),
            out: VecDeque::new(),
            now: 0,
        }
    }

    /// Takes one input at time `now` (milliseconds on a monotonic scale).
    pub fn handle(&mut self, input: Input, now: Millis) {
        self.now = self.now.max(now);
        match input {
            Input::Connect { conn, ip, resume } => {
                self.sessions.open(conn, ip, resume.clone());
                self.request(Request::Resolve { conn, ip, token: resume });
            }
            Input::Command { conn, cmd } => {
                if let Some(sid) = self.sessions.of_conn(conn) {
                    self.command(sid, cmd);
                }
            }
            Input::Relay { conn, match_id, kind, frame } => {
                if let Some(sid) = self.sessions.of_conn(conn) {
                    self.relay(sid, match_id, kind, frame);
                }
            }
            Input::Disconnect { conn } => self.disconnect(conn),
            Input::Drain => {
                let conns: Vec<ConnId> = self.sessions.live_conns().collect();
                for conn in conns {
                    self.out.push_back(Output::Close {
                        conn,
                        code: close::SERVICE_RESTART,
                        reason: "server restarting",
                    });
                }
            }
            Input::Timer => {
                while let Some(sid) = self.sessions.expired(self.now) {
                    self.expire(sid);
                }
            }
            Input::Backend(Event::Resolved(r)) => self.resolved(r),
            Input::Backend(Event::Delivered { to, envelope }) => self.deliver(to, envelope),
            Input::Backend(Event::Paired(p)) => self.paired(p),
        }
        self.push_online();
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`HubCore::handle`] with [`Input::Timer`] next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        [self.sessions.next_expiry(), self.online.due].into_iter().flatten().min()
    }

    /// The session registry (read-only, for statistics).
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Reports counted so far.
    pub fn reports(&self) -> u64 {
        self.moderation.total()
    }

    pub fn counts(&self) -> Counts {
        Counts { sessions: self.sessions.len(), live_sockets: self.sessions.live(), in_match: self.chatting as usize }
    }

    // ----- output helpers ------------------------------------------------------

    fn request(&mut self, req: Request) {
        self.out.push_back(Output::Backend(req));
    }

    fn metric(&mut self, m: Metric) {
        self.out.push_back(Output::Metric(m));
    }

    fn forward(&mut self, to: SessionId, from: SessionId, match_id: MatchId, body: Body) {
        self.request(Request::Forward { to, envelope: Envelope { from, match_id, body } });
    }

    /// Queues `frame` on `sid`'s socket; `false` when it has none (away).
    fn send_frame(&mut self, sid: SessionId, frame: Frame) -> bool {
        match self.sessions.get(sid).and_then(|s| s.conn) {
            Some(conn) => {
                self.out.push_back(Output::Send { conn, frame });
                true
            }
            None => false,
        }
    }

    fn send(&mut self, sid: SessionId, msg: &ServerMsg) -> bool {
        self.send_frame(sid, msg.to_json().into())
    }

    fn error(&mut self, sid: SessionId, code: ErrorCode, message: &str, match_id: Option<MatchId>) {
        self.metric(Metric::ClientError(code));
        self.send(sid, &ServerMsg::error(code, message, match_id));
    }

    fn online_counts(&self) -> OnlineCounts {
        OnlineCounts { count: self.sessions.len() as u32, chatting: self.chatting }
    }

    /// Pushes `online` to every socket when the counts changed, at most once per
    /// `online_interval`.
    fn push_online(&mut self) {
        let counts = self.online_counts();
        if counts == self.online.pushed {
            self.online.due = None;
            return;
        }
        let interval = self.config.online_interval.as_millis() as Millis;
        let due =
            *self.online.due.get_or_insert(self.online.last_at.map_or(self.now, |t| (t + interval).max(self.now)));
        if due > self.now {
            return;
        }
        self.online = OnlinePush { pushed: counts, last_at: Some(self.now), due: None };
        let frame: Frame = ServerMsg::Online(counts).to_json().into();
        let conns: Vec<ConnId> = self.sessions.live_conns().collect();
        for conn in conns {
            self.out.push_back(Output::Send { conn, frame: frame.clone() });
        }
    }

    // ----- connections ---------------------------------------------------------

    /// The directory answered for a new socket: resume its session or start one.
    fn resolved(&mut self, r: Resolved) {
        let Some((ip, _)) = self.sessions.take_pending(r.conn) else {
            return; // closed before its welcome
        };
        if let Some(sid) = r.session.filter(|&s| self.sessions.get(s).is_some()) {
            self.attach(sid, r.conn, ip);
            self.welcome(sid, true);
            self.restore(sid);
            return;
        }
        if r.at_address >= self.config.max_sessions_per_ip
            && let Some(oldest) = self.sessions.longest_away(ip)
        {
            self.expire(oldest);
        }
        let sid = SessionId(self.ids.next_id());
        let token = ResumeToken(self.ids.next_id());
        self.sessions.insert(sid, Session::new(token.clone(), r.conn, ip));
        self.request(Request::Register { session: sid, token, ip });
        self.welcome(sid, false);
    }

    fn welcome(&mut self, sid: SessionId, resumed: bool) {
        let session = self.sessions.get(sid).expect("welcoming a session of this node");
        let welcome = ServerMsg::Welcome {
            protocol: protocol::PROTOCOL_VERSION,
            session_id: sid,
            resume_token: session.token.clone(),
            resumed,
            ice_servers: self.config.ice.servers_at(sid, self.unix_now()),
            online: self.online_counts(),
        };
        self.send(sid, &welcome);
    }

    fn unix_now(&self) -> u64 {
        self.unix_at_zero + self.now / 1000
    }

    /// Gives `sid` the socket `conn`, replacing a live one (closed with 4001) or
    /// ending its grace period.
    fn attach(&mut self, sid: SessionId, conn: ConnId, ip: std::net::IpAddr) {
        let attached = self.sessions.attach(sid, conn, ip);
        if let Some(old) = attached.replaced {
            self.out.push_back(Output::Close {
                conn: old,
                code: close::REPLACED,
                reason: "replaced by a newer connection",
            });
        }
        let session = self.sessions.get(sid).expect("just attached");
        if attached.moved {
            let token = session.token.clone();
            self.request(Request::Register { session: sid, token, ip });
        }
        // Either way the session's client starts a new peer connection (see
        // `restore`), so the peer must negotiate again.
        if (attached.replaced.is_some() || attached.returned)
            && let Some(side) = self.sessions.get(sid).and_then(Session::current_match)
        {
            let (peer, id) = (side.peer, side.id);
            self.forward(peer, sid, id, Body::Back);
        }
    }

    /// Tells a resumed session where it stands.
    fn restore(&mut self, sid: SessionId) {
        let session = self.sessions.get_mut(sid).expect("restoring a session of this node");
        let mut frames: Vec<Frame> = Vec::new();
        let mut requeue = None;
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
                    // `welcome` just carried fresh ICE servers.
                    ice_servers: None,
                };
                frames.push(matched.to_json().into());
                frames.extend(session.inbox.reconnected());
            }
        }
        for frame in frames {
            self.send_frame(sid, frame);
        }
        if let Some(since) = requeue {
            self.submit(sid, since);
        }
    }

    fn disconnect(&mut self, conn: ConnId) {
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

    /// The session is gone for good (its grace period ran out, or its address needs
    /// the room).
    fn expire(&mut self, sid: SessionId) {
        self.end_match(sid, LeftReason::Disconnected, Parting::Free);
        if let Some(session) = self.sessions.remove(sid) {
            if matches!(session.state, State::Queued { .. }) && session.conn.is_some() {
                self.request(Request::Withdraw { session: sid });
            }
            self.request(Request::Unregister { session: sid });
        }
    }

    // ----- matching ------------------------------------------------------------

    /// Puts a queued session's ticket into matchmaking.
    fn submit(&mut self, sid: SessionId, since: Millis) {
        let now = self.now;
        let session = self.sessions.get_mut(sid).expect("submitting a session of this node");
        let ticket = matches::ticket(sid, session, now);
        let ip = session.ip;
        self.request(Request::Submit(Entry { ticket, since, ip }));
    }

    /// Matchmaking paired two tickets: the first side starts here and tells the
    /// second, wherever it lives.
    fn paired(&mut self, p: Paired) {
        let Paired { pair, first, second } = p;
        let id = MatchId(self.ids.next_id());
        let common = pair.common_interests;
        let to_second = Started {
            role: Role::Answerer,
            common_interests: common.clone(),
            peer_country: first.country,
            peer_ip: first.ip,
        };
        let to_first =
            Started { role: Role::Offerer, common_interests: common, peer_country: second.country, peer_ip: second.ip };
        self.metric(Metric::MatchStarted(pair.mode));
        tracing::debug!(match_id = %id, mode = pair.mode.as_str(), "matched");
        self.start_side(pair.first, pair.second, id, to_first);
        self.forward(pair.second, pair.first, id, Body::Started(Box::new(to_second)));
    }

    fn start_side(&mut self, me: SessionId, peer: SessionId, id: MatchId, started: Started) {
        let role = started.role;
        let with_turn = self.config.ice.has_turn();
        let ice = with_turn.then(|| self.config.ice.servers_at(me, self.unix_now()));
        let Some(session) = self.sessions.get_mut(me) else {
            return self.forward(peer, me, id, Body::Left { reason: LeftReason::Disconnected, parting: Parting::Free });
        };
        let matched = ServerMsg::Matched {
            match_id: id,
            role,
            common_interests: started.common_interests.clone(),
            peer_country: started.peer_country.clone(),
            // TURN credentials expire: every match brings fresh ones.
            ice_servers: ice,
        };
        let Some(since) = matches::start_side(session, id, peer, started) else {
            // No longer waiting (raced with a stop on another node): the match is off.
            return self.forward(peer, me, id, Body::Left { reason: LeftReason::Stopped, parting: Parting::Free });
        };
        self.chatting += 1;
        self.metric(Metric::QueueWait(self.now.saturating_sub(since)));
        self.send(me, &matched);
    }

    /// Ends `sid`'s match, if any; its peer is told through the bus.
    fn end_match(&mut self, sid: SessionId, reason: LeftReason, parting: Parting) -> Option<MatchId> {
        let avoid_limit = self.config.avoid_limit;
        let side = matches::end_side(self.sessions.get_mut(sid)?, parting, avoid_limit)?;
        self.chatting -= 1;
        self.forward(side.peer, sid, side.id, Body::Left { reason, parting });
        let ended = match (reason, parting) {
            (_, Parting::Block) => Ended::Blocked,
            (LeftReason::Skipped, _) => Ended::Skipped,
            (LeftReason::Stopped, _) => Ended::Stopped,
            (LeftReason::Disconnected, _) => Ended::Disconnected,
            (LeftReason::Banned, _) => Ended::Banned,
        };
        self.metric(Metric::MatchEnded(ended));
        Some(side.id)
    }

    // ----- client commands -----------------------------------------------------

    fn command(&mut self, sid: SessionId, cmd: Command) {
        match cmd {
            Command::Join(prefs) => self.join(sid, prefs),
            Command::Ready { match_id } => self.ready(sid, match_id),
            Command::Next => self.next(sid),
            Command::Stop => self.stop(sid),
            Command::Report { match_id, reason } => self.report(sid, match_id, reason),
            Command::Block { match_id } => self.block(sid, match_id),
        }
    }

    fn join(&mut self, sid: SessionId, prefs: Preferences) {
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
        self.submit(sid, since);
    }

    fn ready(&mut self, sid: SessionId, match_id: MatchId) {
        let session = self.sessions.get_mut(sid).expect("commands come from sessions of this node");
        if session.side(match_id).is_none() {
            return self.error(sid, ErrorCode::StaleMatch, "that match is not your current one", Some(match_id));
        }
        if let Some(held) = session.inbox.ready() {
            for frame in held {
                self.send_frame(sid, frame);
            }
        }
    }

    fn next(&mut self, sid: SessionId) {
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
        self.submit(sid, now);
    }

    /// Leaves the match or the queue. Unlike `next`, no cooldown: rule 5 of the
    /// protocol keeps apart only sessions that skipped each other.
    fn stop(&mut self, sid: SessionId) {
        self.end_match(sid, LeftReason::Stopped, Parting::Free);
        let session = self.sessions.get_mut(sid).expect("commands come from sessions of this node");
        if matches!(std::mem::replace(&mut session.state, State::Idle), State::Queued { .. }) {
            self.request(Request::Withdraw { session: sid });
        }
    }

    /// The match `match_id` if it is `sid`'s current or last one; otherwise answers
    /// `stale_match`.
    fn named(&mut self, sid: SessionId, match_id: MatchId) -> Option<Named> {
        let found = matches::named(self.sessions.get(sid)?, match_id);
        if found.is_none() {
            self.error(sid, ErrorCode::StaleMatch, "that match is not your current or last one", Some(match_id));
        }
        found
    }

    fn report(&mut self, sid: SessionId, match_id: MatchId, reason: ReportReason) {
        let Some(named) = self.named(sid, match_id) else {
            return;
        };
        let session = self.sessions.get_mut(sid).expect("named found the session");
        if let Some(count) = self.moderation.report(session, match_id, named.peer_ip) {
            self.metric(Metric::Report);
            tracing::info!(reporter = %sid, reported = %named.peer, ?reason, reports = count, "report");
        }
    }

    fn block(&mut self, sid: SessionId, match_id: MatchId) {
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
    fn avoid_forever(&mut self, sid: SessionId, peer: SessionId) {
        let limit = self.config.avoid_limit;
        let Some(session) = self.sessions.get_mut(sid) else { return };
        matches::add_avoid(&mut session.avoid, peer, None, limit);
        if let State::Queued { since } = session.state
            && session.conn.is_some()
        {
            self.submit(sid, since);
        }
    }

    // ----- relay ---------------------------------------------------------------

    /// A per-match message from `sid`: addressed to its peer, wherever it lives.
    fn relay(&mut self, sid: SessionId, match_id: MatchId, kind: RelayKind, frame: Frame) {
        let session = self.sessions.get(sid).expect("relays come from sessions of this node");
        let Some(peer) = session.side(match_id).map(|s| s.peer) else {
            self.metric(Metric::Dropped(Dropped::StaleMatch));
            return self.error(sid, ErrorCode::StaleMatch, "that match is not your current one", Some(match_id));
        };
        self.forward(peer, sid, match_id, Body::Relay { kind, frame });
    }

    /// An envelope for `to`, a session of this node.
    fn deliver(&mut self, to: SessionId, env: Envelope) {
        let Envelope { from, match_id, body } = env;
        let Some(session) = self.sessions.get_mut(to) else {
            return; // ended meanwhile
        };
        match body {
            Body::Started(started) => return self.start_side(to, from, match_id, *started),
            Body::Block => return self.avoid_forever(to, from),
            _ => {}
        }
        // Everything else is about a match: once it is over here, it is stale.
        if session.side(match_id).is_none_or(|s| s.peer != from) {
            return;
        }
        match body {
            Body::Relay { kind, frame } => self.receive(to, from, match_id, kind, frame),
            Body::BufferFull => {
                self.metric(Metric::Dropped(Dropped::BufferFull));
                self.error(
                    to,
                    ErrorCode::RateLimited,
                    "too many signals are waiting for your peer to get ready; this one was dropped",
                    Some(match_id),
                );
            }
            Body::Left { reason, parting } => {
                let limit = self.config.avoid_limit;
                matches::end_side(session, parting, limit);
                self.chatting -= 1;
                if !self.send(to, &ServerMsg::PeerLeft { match_id, reason }) {
                    // Away within its grace period: tell it when it comes back.
                    let session = self.sessions.get_mut(to).expect("checked above");
                    session.missed_left = Some((match_id, reason));
                }
            }
            Body::Away => {
                self.send(to, &ServerMsg::PeerReconnecting { match_id });
            }
            Body::Back => {
                self.send(to, &ServerMsg::PeerResumed { match_id });
            }
            Body::Started(_) | Body::Block => unreachable!("handled above"),
        }
    }

    /// A relayed message reaches `to`'s inbox, which sends it on or holds it.
    fn receive(&mut self, to: SessionId, from: SessionId, match_id: MatchId, kind: RelayKind, frame: Frame) {
        let limits = self.config.inbox;
        let session = self.sessions.get_mut(to).expect("delivering to a session of this node");
        let conn = session.conn;
        match session.inbox.accept(kind, frame, conn.is_some(), limits) {
            Accepted::Now(frame) => {
                let conn = conn.expect("sent at once only to a live socket");
                self.out.push_back(Output::Send { conn, frame });
                self.metric(Metric::Relayed { kind, buffered: false });
            }
            Accepted::Held => self.metric(Metric::Relayed { kind, buffered: true }),
            Accepted::HeldDroppingOldest => {
                self.metric(Metric::Dropped(Dropped::MissedChatFull));
                self.metric(Metric::Relayed { kind, buffered: true });
            }
            Accepted::Full => self.forward(from, to, match_id, Body::BufferFull),
            Accepted::Dropped(why) => self.metric(Metric::Dropped(why)),
        }
    }
}
