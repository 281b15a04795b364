//! The hub: one task that owns every session, match, relay buffer and the matcher.
//!
//! Socket tasks talk to it through a bounded command channel ([`HubHandle`]); it
//! answers by queueing frames on each socket's bounded outbox ([`Conn::send`]). With a
//! single owner there are no locks, and state that must change together (a session,
//! its peer, the queue) always does.

use crate::conn::{Conn, ConnId, SendError};
use crate::metrics as m;
use axum::extract::ws::Utf8Bytes;
use matcher::{Avoid, Matcher, Millis, Pair, Ticket};
use protocol::close;
use protocol::{
    ClientMsg, ErrorCode, LeftReason, MatchId, OnlineCounts, Preferences, ReportReason, ResumeToken, Role, ServerMsg,
    SessionId,
};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

/// Settings the hub needs (a subset of the server configuration).
#[derive(Clone, Debug)]
pub struct HubConfig {
    pub grace: Duration,
    pub interest_fallback: Duration,
    pub rematch_cooldown: Duration,
    pub signal_buffer: usize,
    pub signal_buffer_bytes: usize,
    pub ice: crate::ice::IceConfig,
    /// How often `online` counts may be pushed.
    pub online_interval: Duration,
    /// Most sessions one address may hold, live or within their grace period. A new
    /// session beyond it ends that address's longest-absent one, so connecting and
    /// dropping in a loop cannot pile up sessions (or inflate the online count).
    pub max_sessions_per_ip: usize,
}

/// Most chat lines kept for a peer whose socket is down, delivered when it resumes.
const MISSED_CHAT_LIMIT: usize = 50;
/// Most avoid entries one session keeps (blocks and cooldowns); the oldest go first.
const AVOID_LIMIT: usize = 256;
/// Capacity of the command channel: socket tasks wait when the hub is this far behind.
const COMMAND_CHANNEL: usize = 4096;

/// Per-match messages relayed to the peer, serialized by the sender's task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayKind {
    /// Buffered until the receiver's `ready`.
    Signal,
    /// Delivered at once (kept briefly if the peer is reconnecting).
    Chat,
    /// Delivered at once, or dropped.
    Typing,
}

/// Commands from socket tasks.
#[derive(Debug)]
pub enum Command {
    /// A socket opened: send `welcome` (new or resumed session) on it.
    Connect { conn: Conn, resume: Option<ResumeToken> },
    /// A validated message that the hub acts on.
    Client { conn: ConnId, msg: ClientMsg },
    /// A per-match message, already serialized as the frame the peer receives.
    Relay { conn: ConnId, match_id: MatchId, kind: RelayKind, frame: Utf8Bytes, received: std::time::Instant },
    /// A socket closed.
    Disconnect { conn: ConnId },
    /// Tell every socket to reconnect (close 1012), for a graceful restart.
    Drain,
    /// Report the sizes of every internal table (tests and diagnostics).
    Stats { reply: oneshot::Sender<HubStats> },
}

/// Sizes of the hub's tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    pub sessions: usize,
    pub live_sockets: usize,
    pub tokens: usize,
    pub waiting: usize,
    pub waiting_video: usize,
    pub in_match: usize,
    pub grace_timers: usize,
    pub buffered_signals: usize,
    /// Reports counted so far, over all reported addresses.
    pub reports: u64,
    /// Addresses holding sessions.
    pub addresses: usize,
    /// Entries in the per-address queues of sessions within their grace period.
    pub away: usize,
}

impl HubStats {
    /// Whether every table is empty (reports are kept on purpose).
    pub fn is_empty(&self) -> bool {
        let HubStats {
            sessions,
            live_sockets,
            tokens,
            waiting,
            waiting_video: _,
            in_match,
            grace_timers,
            buffered_signals,
            reports: _,
            addresses,
            away,
        } = *self;
        sessions + live_sockets + tokens + waiting + in_match + grace_timers + buffered_signals + addresses + away == 0
    }
}

/// Cloneable sender of hub commands.
#[derive(Clone, Debug)]
pub struct HubHandle {
    tx: mpsc::Sender<Command>,
}

/// The hub has stopped (server shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the hub has stopped")]
pub struct HubGone;

impl HubHandle {
    /// Sends a command, waiting while the hub's queue is full (backpressure).
    pub async fn send(&self, cmd: Command) -> Result<(), HubGone> {
        self.tx.send(cmd).await.map_err(|_| HubGone)
    }

    /// Current table sizes.
    pub async fn stats(&self) -> Result<HubStats, HubGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Stats { reply }).await?;
        rx.await.map_err(|_| HubGone)
    }
}

/// Starts the hub task.
pub fn spawn(config: HubConfig) -> HubHandle {
    let (tx, rx) = mpsc::channel(COMMAND_CHANNEL);
    let hub = Hub::new(config);
    tokio::spawn(hub.run(rx));
    HubHandle { tx }
}

/// Where a session is.
#[derive(Debug)]
enum State {
    Idle,
    /// Waiting since this time (kept across reconnects and preference changes).
    Queued {
        since: Millis,
    },
    Matched(Box<Side>),
}

/// One session's side of a match.
#[derive(Debug)]
struct Side {
    id: MatchId,
    peer: SessionId,
    role: Role,
    common_interests: Vec<String>,
    peer_country: Option<String>,
    /// This side's client has sent `ready` for this match (since its current socket).
    ready: bool,
    /// Signals for this side, held until `ready`.
    pending: VecDeque<Utf8Bytes>,
    pending_bytes: usize,
    /// Chat lines that arrived while this side's socket was down.
    missed_chat: VecDeque<Utf8Bytes>,
}

/// The match a session was in last, for `report` / `block` after it ended.
#[derive(Debug, Clone, Copy)]
struct PastMatch {
    id: MatchId,
    peer: SessionId,
    peer_ip: IpAddr,
}

#[derive(Debug)]
struct Session {
    token: ResumeToken,
    /// The live socket; `None` while within the grace period.
    conn: Option<Conn>,
    ip: IpAddr,
    /// When the grace period ends, while the socket is down.
    grace_until: Option<Instant>,
    /// The last accepted preferences (`next` reuses them).
    prefs: Option<Preferences>,
    state: State,
    /// Sessions not to be paired with: cooldowns after next/stop, blocks forever.
    avoid: Vec<Avoid>,
    last_match: Option<PastMatch>,
    /// Matches this session has reported (at most its current and last): one report
    /// per match counts, however often it is sent.
    reported: Vec<MatchId>,
    /// A `peer_left` that could not be delivered because the socket was down; sent
    /// when the session resumes.
    missed_left: Option<(MatchId, LeftReason)>,
}

/// One address's sessions, for its cap.
#[derive(Debug, Default)]
struct IpSessions {
    /// Sessions whose last socket came from this address.
    count: usize,
    /// Its sessions within their grace period, in the order they went away (each
    /// once: taken out when it comes back or ends).
    away: VecDeque<SessionId>,
}

struct Hub {
    config: HubConfig,
    sessions: HashMap<SessionId, Session>,
    tokens: HashMap<ResumeToken, SessionId>,
    sockets: HashMap<ConnId, SessionId>,
    matcher: Matcher,
    grace: BTreeSet<(Instant, SessionId)>,
    /// Sessions currently in a match.
    chatting: u32,
    /// Reports received per reported address (the input for automatic bans).
    reports: HashMap<IpAddr, u32>,
    /// Sessions per address (live or within their grace period).
    per_ip: HashMap<IpAddr, IpSessions>,
    /// Zero of the matcher's millisecond clock.
    epoch: Instant,
    last_online: OnlineCounts,
}

impl Hub {
    fn new(config: HubConfig) -> Self {
        let matcher =
            Matcher::new(matcher::Config { interest_fallback: config.interest_fallback.as_millis() as Millis });
        Self {
            config,
            sessions: HashMap::new(),
            tokens: HashMap::new(),
            sockets: HashMap::new(),
            matcher,
            grace: BTreeSet::new(),
            chatting: 0,
            reports: HashMap::new(),
            per_ip: HashMap::new(),
            epoch: Instant::now(),
            last_online: OnlineCounts::default(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut online = tokio::time::interval(self.config.online_interval);
        online.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.next_wake();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => break,
                },
                _ = sleep_until_opt(wake) => self.on_timers(),
                _ = online.tick() => self.push_online(),
            }
        }
    }

    fn now_ms(&self) -> Millis {
        Instant::now().saturating_duration_since(self.epoch).as_millis() as Millis
    }

    fn next_wake(&self) -> Option<Instant> {
        let grace = self.grace.first().map(|&(t, _)| t);
        let matcher = self.matcher.next_deadline().map(|ms| self.epoch + Duration::from_millis(ms));
        grace.into_iter().chain(matcher).min()
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        while let Some(&(t, sid)) = self.grace.first() {
            if t > now {
                break;
            }
            self.grace.pop_first();
            self.expire(sid);
        }
        let pairs = self.matcher.tick(self.now_ms());
        self.start_matches(pairs);
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Connect { conn, resume } => self.connect(conn, resume),
            Command::Client { conn, msg } => {
                if let Some(&sid) = self.sockets.get(&conn) {
                    self.client(sid, msg);
                }
            }
            Command::Relay { conn, match_id, kind, frame, received } => {
                if let Some(&sid) = self.sockets.get(&conn)
                    && self.relay(sid, match_id, kind, frame)
                {
                    metrics::histogram!(m::RELAY_LATENCY).record(received.elapsed().as_secs_f64());
                }
            }
            Command::Disconnect { conn } => self.disconnect(conn),
            Command::Drain => {
                for s in self.sessions.values() {
                    if let Some(c) = &s.conn {
                        c.close(close::SERVICE_RESTART, "server restarting");
                    }
                }
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
        }
    }

    fn stats(&self) -> HubStats {
        let mut buffered_signals = 0;
        let mut in_match = 0;
        for s in self.sessions.values() {
            if let State::Matched(side) = &s.state {
                in_match += 1;
                buffered_signals += side.pending.len() + side.missed_chat.len();
            }
        }
        HubStats {
            sessions: self.sessions.len(),
            live_sockets: self.sockets.len(),
            tokens: self.tokens.len(),
            waiting: self.matcher.len(),
            waiting_video: self.matcher.waiting_count(protocol::Mode::Video),
            in_match,
            grace_timers: self.grace.len(),
            buffered_signals,
            reports: self.reports.values().map(|&n| u64::from(n)).sum(),
            addresses: self.per_ip.len(),
            away: self.per_ip.values().map(|e| e.away.len()).sum(),
        }
    }

    fn online(&self) -> OnlineCounts {
        OnlineCounts { count: self.sessions.len() as u32, chatting: self.chatting }
    }

    /// Pushes `online` to every socket when the counts changed since the last push.
    fn push_online(&mut self) {
        let counts = self.online();
        if counts == self.last_online {
            return;
        }
        self.last_online = counts;
        let frame: Utf8Bytes = ServerMsg::Online(counts).to_json().into();
        for s in self.sessions.values() {
            if let Some(c) = &s.conn {
                let _ = c.send(frame.clone());
            }
        }
    }

    // ----- sending -------------------------------------------------------------

    fn send_frame(&self, sid: SessionId, frame: Utf8Bytes) -> bool {
        match self.sessions.get(&sid).and_then(|s| s.conn.as_ref()) {
            Some(c) => match c.send(frame) {
                Ok(()) => true,
                Err(SendError::Full) => {
                    tracing::info!(session = %sid, "closing a socket that does not read its messages");
                    false
                }
                Err(SendError::Closed) => false,
            },
            None => false,
        }
    }

    fn send(&self, sid: SessionId, msg: &ServerMsg) {
        self.send_frame(sid, msg.to_json().into());
    }

    fn error(&self, sid: SessionId, code: ErrorCode, message: &str, match_id: Option<MatchId>) {
        metrics::counter!(m::CLIENT_ERRORS, "code" => code.as_str()).increment(1);
        self.send(sid, &ServerMsg::error(code, message, match_id));
    }

    // ----- connections ---------------------------------------------------------

    fn connect(&mut self, conn: Conn, resume: Option<ResumeToken>) {
        let resumed = resume.and_then(|t| self.tokens.get(&t).copied());
        let sid = match resumed {
            Some(sid) => {
                self.attach(sid, conn);
                sid
            }
            None => {
                let conn_ip = conn.ip;
                self.make_room_for(conn_ip);
                let sid = SessionId(Uuid::new_v4());
                let token = ResumeToken(Uuid::new_v4());
                self.tokens.insert(token.clone(), sid);
                self.sockets.insert(conn.id, sid);
                self.sessions.insert(
                    sid,
                    Session {
                        token,
                        ip: conn.ip,
                        conn: Some(conn),
                        grace_until: None,
                        prefs: None,
                        state: State::Idle,
                        avoid: Vec::new(),
                        last_match: None,
                        reported: Vec::new(),
                        missed_left: None,
                    },
                );
                self.count_ip(conn_ip, 1);
                sid
            }
        };
        let session = &self.sessions[&sid];
        let welcome = ServerMsg::Welcome {
            protocol: protocol::PROTOCOL_VERSION,
            session_id: sid,
            resume_token: session.token.clone(),
            resumed: resumed.is_some(),
            ice_servers: self.config.ice.servers_for(sid),
            online: self.online(),
        };
        self.send(sid, &welcome);
        if resumed.is_some() {
            self.restore(sid);
        }
    }

    /// Gives session `sid` the socket `conn`, replacing a live one (closed with 4001)
    /// or ending its grace period.
    fn attach(&mut self, sid: SessionId, conn: Conn) {
        self.sockets.insert(conn.id, sid);
        let session = self.sessions.get_mut(&sid).expect("a token maps to a live session");
        let (old_ip, new_ip) = (std::mem::replace(&mut session.ip, conn.ip), conn.ip);
        let replaced = session.conn.replace(conn);
        if let Some(old) = &replaced {
            self.sockets.remove(&old.id);
            old.close(close::REPLACED, "replaced by a newer connection");
        }
        let returned = session.grace_until.take();
        if let Some(t) = returned {
            self.grace.remove(&(t, sid));
        }
        // Either way the session's client starts a new peer connection (see `restore`),
        // so the peer must negotiate again.
        if (replaced.is_some() || returned.is_some())
            && let State::Matched(side) = &session.state
        {
            let (peer, id) = (side.peer, side.id);
            self.send(peer, &ServerMsg::PeerResumed { match_id: id });
        }
        if returned.is_some() {
            self.forget_away(old_ip, sid);
        }
        if old_ip != new_ip {
            self.count_ip(old_ip, -1);
            self.count_ip(new_ip, 1);
        }
    }

    /// Tells a resumed session where it stands.
    fn restore(&mut self, sid: SessionId) {
        let now = self.now_ms();
        let session = self.sessions.get_mut(&sid).expect("restoring a live session");
        let missed_left = session.missed_left.take();
        match &mut session.state {
            State::Idle => {
                if let Some((match_id, reason)) = missed_left {
                    self.send(sid, &ServerMsg::PeerLeft { match_id, reason });
                }
            }
            State::Queued { since } => {
                let since = *since;
                let prefs = session.prefs.clone().expect("a queued session has preferences");
                self.send(sid, &ServerMsg::Queued { mode: prefs.mode });
                self.enqueue(sid, since, now);
            }
            State::Matched(side) => {
                // The client starts a new peer connection: whatever was held for the old
                // one is stale, and it must say `ready` again.
                side.ready = false;
                side.pending.clear();
                side.pending_bytes = 0;
                let matched = ServerMsg::Matched {
                    match_id: side.id,
                    role: side.role,
                    common_interests: side.common_interests.clone(),
                    peer_country: side.peer_country.clone(),
                    // `welcome` just carried fresh ICE servers.
                    ice_servers: None,
                };
                let missed: Vec<Utf8Bytes> = side.missed_chat.drain(..).collect();
                self.send(sid, &matched);
                for frame in missed {
                    self.send_frame(sid, frame);
                }
            }
        }
    }

    fn disconnect(&mut self, conn: ConnId) {
        let Some(sid) = self.sockets.remove(&conn) else {
            return;
        };
        let until = Instant::now() + self.config.grace;
        let session = self.sessions.get_mut(&sid).expect("a socket maps to a live session");
        if session.conn.as_ref().is_none_or(|c| c.id != conn) {
            return;
        }
        session.conn = None;
        session.grace_until = Some(until);
        self.grace.insert((until, sid));
        if let Some(entry) = self.per_ip.get_mut(&session.ip) {
            entry.away.push_back(sid);
        }
        match &mut session.state {
            State::Idle => {}
            // Out of the pool while away, so nobody is paired with an empty chair;
            // `since` is kept, so resuming restores the place.
            State::Queued { .. } => {
                self.matcher.remove(sid);
            }
            State::Matched(side) => {
                side.ready = false;
                let (peer, id) = (side.peer, side.id);
                self.send(peer, &ServerMsg::PeerReconnecting { match_id: id });
            }
        }
    }

    /// The grace period ran out: the session is gone for good.
    fn expire(&mut self, sid: SessionId) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        if session.conn.is_some() {
            return;
        }
        self.end_match(sid, LeftReason::Disconnected, None);
        self.matcher.remove(sid);
        let session = self.sessions.remove(&sid).expect("checked above");
        self.tokens.remove(&session.token);
        self.forget_away(session.ip, sid);
        self.count_ip(session.ip, -1);
    }

    /// Keeps `ip` under its session cap: beyond it, its session away the longest
    /// (within its grace period) ends now. Live sessions are capped by the
    /// per-address connection limit already.
    fn make_room_for(&mut self, ip: IpAddr) {
        let Some(entry) = self.per_ip.get_mut(&ip) else { return };
        if entry.count < self.config.max_sessions_per_ip {
            return;
        }
        if let Some(&sid) = entry.away.front()
            && let Some(t) = self.sessions.get(&sid).and_then(|s| s.grace_until)
        {
            self.grace.remove(&(t, sid));
            self.expire(sid);
        }
    }

    /// `sid` is no longer away from `ip` (it came back or ended). Sessions usually
    /// come back soon and end in the order they left, so the search is short.
    fn forget_away(&mut self, ip: IpAddr, sid: SessionId) {
        if let Some(entry) = self.per_ip.get_mut(&ip)
            && let Some(i) = entry.away.iter().rposition(|&s| s == sid)
        {
            entry.away.remove(i);
        }
    }

    fn count_ip(&mut self, ip: IpAddr, delta: isize) {
        let entry = self.per_ip.entry(ip).or_default();
        entry.count = entry.count.saturating_add_signed(delta);
        if entry.count == 0 {
            self.per_ip.remove(&ip);
        }
    }

    // ----- client messages -----------------------------------------------------

    fn client(&mut self, sid: SessionId, msg: ClientMsg) {
        match msg {
            ClientMsg::Join(prefs) => self.join(sid, prefs),
            ClientMsg::Ready { match_id } => self.ready(sid, match_id),
            ClientMsg::Next => self.next(sid),
            ClientMsg::Stop => self.stop(sid),
            ClientMsg::Report { match_id, reason } => self.report(sid, match_id, reason),
            ClientMsg::Block { match_id } => self.block(sid, match_id),
            // Socket tasks turn these into `Relay` commands; accept them anyway.
            ClientMsg::Signal { match_id, payload } => {
                let frame = ServerMsg::Signal { match_id, payload }.to_json().into();
                self.relay(sid, match_id, RelayKind::Signal, frame);
            }
            ClientMsg::Chat { match_id, text } => {
                let frame = ServerMsg::Chat { match_id, text }.to_json().into();
                self.relay(sid, match_id, RelayKind::Chat, frame);
            }
            ClientMsg::Typing { match_id, typing } => {
                let frame = ServerMsg::Typing { match_id, typing }.to_json().into();
                self.relay(sid, match_id, RelayKind::Typing, frame);
            }
        }
    }

    fn join(&mut self, sid: SessionId, prefs: Preferences) {
        let now = self.now_ms();
        let session = self.sessions.get_mut(&sid).expect("messages come from live sessions");
        let since = match session.state {
            State::Matched(_) => {
                return self.error(sid, ErrorCode::NotAllowed, "already in a match: send next or stop first", None);
            }
            // The same preferences again change nothing: no new search of the pool.
            State::Queued { .. } if session.prefs.as_ref() == Some(&prefs) => {
                return self.send(sid, &ServerMsg::Queued { mode: prefs.mode });
            }
            State::Queued { since } => since,
            State::Idle => now,
        };
        let mode = prefs.mode;
        session.prefs = Some(prefs);
        session.state = State::Queued { since };
        self.send(sid, &ServerMsg::Queued { mode });
        self.enqueue(sid, since, now);
    }

    /// Puts a queued session's ticket into the matcher and starts what it pairs.
    fn enqueue(&mut self, sid: SessionId, since: Millis, now: Millis) {
        let session = self.sessions.get_mut(&sid).expect("enqueueing a live session");
        session.avoid.retain(|a| a.until.is_none_or(|t| t > now));
        let prefs = session.prefs.as_ref().expect("a queued session has preferences");
        let ticket = Ticket {
            session: sid,
            mode: prefs.mode,
            interests: prefs.interests.clone(),
            country: prefs.country.clone(),
            same_country: prefs.same_country,
            avoid: session.avoid.clone(),
        };
        let pairs = self.matcher.insert(ticket, since, now);
        self.start_matches(pairs);
    }

    fn start_matches(&mut self, pairs: Vec<Pair>) {
        for pair in pairs {
            self.start_match(pair);
        }
    }

    fn start_match(&mut self, pair: Pair) {
        let id = MatchId(Uuid::new_v4());
        let country = |hub: &Self, s: SessionId| hub.sessions[&s].prefs.as_ref().and_then(|p| p.country.clone());
        let (c1, c2) = (country(self, pair.first), country(self, pair.second));
        for (me, peer, role, peer_country) in
            [(pair.first, pair.second, Role::Offerer, c2), (pair.second, pair.first, Role::Answerer, c1)]
        {
            let side = Side {
                id,
                peer,
                role,
                common_interests: pair.common_interests.clone(),
                peer_country: peer_country.clone(),
                ready: false,
                pending: VecDeque::new(),
                pending_bytes: 0,
                missed_chat: VecDeque::new(),
            };
            let now = self.now_ms();
            let session = self.sessions.get_mut(&me).expect("paired sessions are live");
            if let State::Queued { since } = session.state {
                metrics::histogram!(m::QUEUE_WAIT).record(now.saturating_sub(since) as f64 / 1000.0);
            }
            session.state = State::Matched(Box::new(side));
            self.chatting += 1;
            self.send(
                me,
                &ServerMsg::Matched {
                    match_id: id,
                    role,
                    common_interests: pair.common_interests.clone(),
                    peer_country,
                    // TURN credentials expire: every match brings fresh ones.
                    ice_servers: self.config.ice.has_turn().then(|| self.config.ice.servers_for(me)),
                },
            );
        }
        metrics::counter!(m::MATCHES_STARTED, "mode" => pair.mode.as_str()).increment(1);
        tracing::debug!(match_id = %id, mode = pair.mode.as_str(), "matched");
    }

    /// Ends `sid`'s match, if any: the peer is told `reason` and becomes idle.
    /// `cooldown`: keep the two apart for that long (`Some(None)`: forever).
    /// Returns the ended match.
    fn end_match(&mut self, sid: SessionId, reason: LeftReason, cooldown: Option<Option<Millis>>) -> Option<MatchId> {
        let session = self.sessions.get_mut(&sid)?;
        if !matches!(session.state, State::Matched(_)) {
            return None;
        }
        let State::Matched(side) = std::mem::replace(&mut session.state, State::Idle) else {
            unreachable!("checked just above")
        };
        let my_ip = session.ip;
        let peer_ip = self.sessions.get(&side.peer).map_or(my_ip, |p| p.ip);
        self.set_ended(sid, PastMatch { id: side.id, peer: side.peer, peer_ip }, cooldown);
        if let Some(peer) = self.sessions.get_mut(&side.peer)
            && matches!(&peer.state, State::Matched(p) if p.id == side.id)
        {
            peer.state = State::Idle;
            self.chatting -= 1;
            self.set_ended(side.peer, PastMatch { id: side.id, peer: sid, peer_ip: my_ip }, cooldown);
            if !self.send_frame(side.peer, ServerMsg::PeerLeft { match_id: side.id, reason }.to_json().into()) {
                // Away within its grace period: tell it when it comes back.
                let peer = self.sessions.get_mut(&side.peer).expect("checked above");
                peer.missed_left = Some((side.id, reason));
            }
        }
        self.chatting -= 1;
        let label = match (reason, cooldown) {
            (_, Some(None)) => "blocked",
            (LeftReason::Skipped, _) => "skipped",
            (LeftReason::Stopped, _) => "stopped",
            (LeftReason::Disconnected, _) => "disconnected",
            (LeftReason::Banned, _) => "banned",
        };
        metrics::counter!(m::MATCHES_ENDED, "reason" => label).increment(1);
        Some(side.id)
    }

    fn set_ended(&mut self, sid: SessionId, past: PastMatch, cooldown: Option<Option<Millis>>) {
        let session = self.sessions.get_mut(&sid).expect("ending a live session's match");
        session.last_match = Some(past);
        if let Some(until) = cooldown {
            add_avoid(&mut session.avoid, past.peer, until);
        }
    }

    fn cooldown_until(&self) -> Option<Option<Millis>> {
        Some(Some(self.now_ms() + self.config.rematch_cooldown.as_millis() as Millis))
    }

    fn ready(&mut self, sid: SessionId, match_id: MatchId) {
        let Some(side) = self.current_side(sid, match_id) else {
            return;
        };
        if side.ready {
            return;
        }
        side.ready = true;
        side.pending_bytes = 0;
        let pending: Vec<Utf8Bytes> = side.pending.drain(..).collect();
        for frame in pending {
            self.send_frame(sid, frame);
        }
    }

    /// `sid`'s side of its match if that match is `match_id`; otherwise answers
    /// `stale_match` and returns `None`.
    fn current_side(&mut self, sid: SessionId, match_id: MatchId) -> Option<&mut Side> {
        let current = match &self.sessions.get(&sid)?.state {
            State::Matched(side) => side.id == match_id,
            _ => false,
        };
        if !current {
            self.error(sid, ErrorCode::StaleMatch, "that match is not your current one", Some(match_id));
            return None;
        }
        match &mut self.sessions.get_mut(&sid)?.state {
            State::Matched(side) => Some(side),
            _ => None,
        }
    }

    /// Relays, buffers or refuses a per-match message. Returns whether it was sent on
    /// to the peer right away.
    fn relay(&mut self, sid: SessionId, match_id: MatchId, kind: RelayKind, frame: Utf8Bytes) -> bool {
        let label = match kind {
            RelayKind::Signal => "signal",
            RelayKind::Chat => "chat",
            RelayKind::Typing => "typing",
        };
        let Some(side) = self.current_side(sid, match_id) else {
            metrics::counter!(m::DROPPED, "reason" => "stale_match").increment(1);
            return false;
        };
        let peer_id = side.peer;
        let limits = (self.config.signal_buffer, self.config.signal_buffer_bytes);
        let Some(peer) = self.sessions.get_mut(&peer_id) else {
            return false;
        };
        let online = peer.conn.is_some();
        let State::Matched(pside) = &mut peer.state else {
            return false;
        };
        match kind {
            RelayKind::Signal if online && pside.ready => {}
            RelayKind::Signal => {
                if pside.pending.len() >= limits.0 || pside.pending_bytes + frame.len() > limits.1 {
                    metrics::counter!(m::DROPPED, "reason" => "buffer_full").increment(1);
                    self.error(
                        sid,
                        ErrorCode::RateLimited,
                        "too many signals are waiting for your peer to get ready; this one was dropped",
                        Some(match_id),
                    );
                    return false;
                }
                pside.pending_bytes += frame.len();
                pside.pending.push_back(frame);
                metrics::counter!(m::RELAYED, "kind" => label, "delivery" => "buffered").increment(1);
                return false;
            }
            RelayKind::Chat if !online => {
                if pside.missed_chat.len() == MISSED_CHAT_LIMIT {
                    pside.missed_chat.pop_front();
                    metrics::counter!(m::DROPPED, "reason" => "missed_chat_full").increment(1);
                }
                pside.missed_chat.push_back(frame);
                metrics::counter!(m::RELAYED, "kind" => label, "delivery" => "buffered").increment(1);
                return false;
            }
            RelayKind::Typing if !online => {
                metrics::counter!(m::DROPPED, "reason" => "peer_offline").increment(1);
                return false;
            }
            RelayKind::Chat | RelayKind::Typing => {}
        }
        let sent = self.send_frame(peer_id, frame);
        metrics::counter!(m::RELAYED, "kind" => label, "delivery" => "direct").increment(1);
        sent
    }

    fn next(&mut self, sid: SessionId) {
        let cooldown = self.cooldown_until();
        let now = self.now_ms();
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        let Some(mode) = session.prefs.as_ref().map(|p| p.mode) else {
            return self.error(sid, ErrorCode::NotInMatch, "nothing to skip and no earlier join to repeat", None);
        };
        self.end_match(sid, LeftReason::Skipped, cooldown);
        self.matcher.remove(sid);
        let session = self.sessions.get_mut(&sid).expect("checked above");
        session.state = State::Queued { since: now };
        self.send(sid, &ServerMsg::Queued { mode });
        self.enqueue(sid, now, now);
    }

    /// Leaves the match or the queue. Unlike `next`, no cooldown: rule 5 of the
    /// protocol keeps apart only sessions that skipped each other.
    fn stop(&mut self, sid: SessionId) {
        self.end_match(sid, LeftReason::Stopped, None);
        self.matcher.remove(sid);
        if let Some(session) = self.sessions.get_mut(&sid) {
            session.state = State::Idle;
        }
    }

    /// The match `match_id` if it is `sid`'s current or last one: (peer, peer address, current?).
    fn named_match(&mut self, sid: SessionId, match_id: MatchId) -> Option<(SessionId, IpAddr, bool)> {
        let session = self.sessions.get(&sid)?;
        let found = match &session.state {
            State::Matched(side) if side.id == match_id => {
                let ip = self.sessions.get(&side.peer).map(|p| p.ip)?;
                Some((side.peer, ip, true))
            }
            _ => session.last_match.filter(|m| m.id == match_id).map(|m| (m.peer, m.peer_ip, false)),
        };
        if found.is_none() {
            self.error(sid, ErrorCode::StaleMatch, "that match is not your current or last one", Some(match_id));
        }
        found
    }

    fn report(&mut self, sid: SessionId, match_id: MatchId, reason: ReportReason) {
        let Some((peer, peer_ip, _)) = self.named_match(sid, match_id) else {
            return;
        };
        let session = self.sessions.get_mut(&sid).expect("named_match found the session");
        if session.reported.contains(&match_id) {
            return;
        }
        // Only the current and the last match can be reported: two entries suffice.
        if session.reported.len() == 2 {
            session.reported.remove(0);
        }
        session.reported.push(match_id);
        let count = self.reports.entry(peer_ip).or_default();
        *count = count.saturating_add(1);
        metrics::counter!(m::REPORTS).increment(1);
        tracing::info!(reporter = %sid, reported = %peer, ?reason, reports = *count, "report");
    }

    fn block(&mut self, sid: SessionId, match_id: MatchId) {
        let Some((peer, _, current)) = self.named_match(sid, match_id) else {
            return;
        };
        if current {
            self.end_match(sid, LeftReason::Skipped, Some(None));
        } else {
            let now = self.now_ms();
            for (a, b) in [(sid, peer), (peer, sid)] {
                let Some(s) = self.sessions.get_mut(&a) else { continue };
                add_avoid(&mut s.avoid, b, None);
                // A waiting ticket carries a copy of the avoid list: renew it in place.
                if let State::Queued { since } = s.state
                    && self.matcher.contains(a)
                {
                    self.enqueue(a, since, now);
                }
            }
        }
    }
}

/// Records that `peer` is to be avoided until `until` (forever when `None`),
/// keeping the stronger of an existing entry and this one.
fn add_avoid(list: &mut Vec<Avoid>, peer: SessionId, until: Option<Millis>) {
    if let Some(existing) = list.iter_mut().find(|a| a.session == peer) {
        existing.until = match (existing.until, until) {
            (None, _) | (_, None) => None,
            (Some(a), Some(b)) => Some(a.max(b)),
        };
        return;
    }
    if list.len() >= AVOID_LIMIT {
        // Drop the entry that ends first; blocks (None) are kept over cooldowns.
        if let Some(i) = (0..list.len()).min_by_key(|&i| list[i].until.unwrap_or(Millis::MAX)) {
            list.remove(i);
        }
    }
    list.push(Avoid { session: peer, until });
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
