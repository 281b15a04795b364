//! The hub core: every protocol rule, as a state machine with no I/O.
//!
//! [`HubCore::handle`] takes one [`Input`] and the current time; [`HubCore::poll_output`]
//! then yields what to do (send a frame, close a socket, count a metric, ask the
//! backend). [`HubCore::poll_timeout`] says when to come back with [`Input::Timer`].
//! Ids and tokens come from an injected [`IdSource`]. Each session changes only its own
//! state: what another session must do goes out as an [`Envelope`] through the bus, so
//! the two sides of a match may live on different nodes.
//!
//! The rules are split by job: `connections` (welcome, resume, grace), `commands`
//! (what a client asks), `matching` (pairs in, matches started and ended) and
//! `delivery` (envelopes into the receiving session). This file holds the state, the
//! dispatch and the output helpers they share.

mod commands;
mod connections;
mod deadlines;
mod delivery;
mod matching;
mod safety;

use super::backend::{Event, Request};
use super::config::HubConfig;
use super::io::{Command, Input, Metric, Output};
use super::model::{Body, ConnId, Envelope, Frame};
use super::moderation::Moderation;
use super::sessions::Sessions;
use super::snapshot::Snapshot;
use super::timers::Timers;
use matcher::Millis;
use protocol::{ErrorCode, MatchId, OnlineCounts, ServerMsg, SessionId, close};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use uuid::Uuid;

/// Sampled frames one session may send for moderation: a burst of 6, then one every
/// 2 s (clients send one every 5–15 s on average: their own camera and the stranger's).
pub const FRAME_RATE: super::budget::Rate = super::budget::Rate::one_every(2, 6);

/// Where session ids, match ids and resume tokens come from.
pub trait IdSource: Send {
    fn next_id(&mut self) -> Uuid;
}

/// Random version-4 UUIDs from a ChaCha12 generator seeded once by the OS (resume
/// tokens are credentials: they must not be guessable), without a system call per id.
#[derive(Debug)]
pub struct RandomIds(StdRng);

impl RandomIds {
    pub fn from_os() -> Self {
        Self(StdRng::from_os_rng())
    }
}

impl IdSource for RandomIds {
    fn next_id(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.0.random()).into_uuid()
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
    /// Per-side deadlines (`ready`, TURN refresh).
    timers: Timers,
    moderation: Moderation,
    /// Sessions of this node in a match.
    chatting: u32,
    /// Sessions on the cluster's other nodes (none on a single node).
    others: OnlineCounts,
    online: OnlinePush,
    /// Sessions whose resumable state changed in this step (with `snapshots` on).
    dirty: Vec<SessionId>,
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
            timers: Timers::default(),
            moderation: Moderation::default(),
            chatting: 0,
            others: OnlineCounts::default(),
            online: OnlinePush::default(),
            dirty: Vec::new(),
            out: VecDeque::new(),
            now: 0,
        }
    }

    /// Takes one input at time `now` (milliseconds on a monotonic scale).
    pub fn handle(&mut self, input: Input, now: Millis) {
        self.now = self.now.max(now);
        match input {
            Input::Connect { conn, ip, country, resume } => {
                self.sessions.open(conn, ip, country);
                self.request(Request::Resolve { conn, ip, token: resume });
            }
            Input::Command { conn, cmd } => {
                if let Some(sid) = self.within_budget(conn) {
                    // `ready` changes nothing another node would need.
                    if !matches!(cmd, Command::Ready { .. } | Command::Hello) {
                        self.touch(sid);
                    }
                    self.command(sid, cmd);
                }
            }
            Input::Relay { conn, match_id, kind, frame, generation } => {
                if let Some(sid) = self.within_budget(conn) {
                    self.relay(sid, match_id, kind, frame, generation);
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
            Input::OtherNodes(counts) => self.others = counts,
            Input::Verdict { session, of, match_id, flagged } => self.verdict(session, of, match_id, flagged),
            Input::Timer => {
                while let Some(sid) = self.sessions.expired(self.now) {
                    self.expire(sid);
                }
                self.fire_deadlines();
                self.moderation.expire(self.now, self.report_window());
            }
            Input::Backend(Event::Resolved(r)) => self.resolved(r),
            Input::Backend(Event::Delivered { to, envelope }) => {
                // What changes the receiver's state: a match starting or ending, a new
                // negotiation, a block (relayed messages and notices do not).
                if matches!(envelope.body, Body::Started(_) | Body::Left { .. } | Body::Back { .. } | Body::Block) {
                    self.touch(to);
                }
                self.deliver(to, envelope)
            }
            Input::Backend(Event::Paired(p)) => self.paired(p),
            Input::Backend(Event::Evicted { session }) => self.evict(session),
            Input::Backend(Event::Banned(ban)) => self.banned(ban),
            Input::Backend(Event::Marked(mark)) => self.learn(mark),
        }
        self.save_dirty();
        self.push_online();
    }

    /// Notes that `sid`'s resumable state may have changed in this step.
    fn touch(&mut self, sid: SessionId) {
        if self.config.snapshots && !self.dirty.contains(&sid) {
            self.dirty.push(sid);
        }
    }

    /// Hands the directory the state of every session that changed in this step.
    fn save_dirty(&mut self) {
        for sid in std::mem::take(&mut self.dirty) {
            if let Some(session) = self.sessions.get(sid) {
                let snapshot = Box::new(Snapshot::of(session));
                self.request(Request::Save { session: sid, snapshot });
            }
        }
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`HubCore::handle`] with [`Input::Timer`] next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        [
            self.sessions.next_expiry(),
            self.timers.next(),
            self.moderation.next_expiry(self.report_window()),
            self.online.due,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The session registry (read-only, for statistics).
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Pending per-side deadlines.
    pub fn deadlines(&self) -> usize {
        self.timers.len()
    }

    /// The session whose current resume token is `token`, if it has a live socket
    /// here, and its current match: the sender of a sampled frame. `Err(())` when that
    /// session has sent frames faster than [`FRAME_RATE`] (the frame is not scored).
    pub fn frame_sender(
        &mut self,
        token: &protocol::ResumeToken,
        now: Millis,
    ) -> Option<Result<(SessionId, Option<MatchId>), ()>> {
        let sid = self.sessions.of_token(token)?;
        let session = self.sessions.get_mut(sid).filter(|s| s.conn.is_some())?;
        if !session.frames.spend(FRAME_RATE, now.max(self.now)) {
            return Some(Err(()));
        }
        Some(Ok((sid, session.current_match().map(|side| side.id))))
    }

    /// Reports counted so far.
    pub fn reports(&self) -> u64 {
        self.moderation.total()
    }

    /// Reports held within their window.
    pub fn reports_held(&self) -> usize {
        self.moderation.held()
    }

    fn report_window(&self) -> Millis {
        self.config.report_window.as_millis() as Millis
    }

    pub fn counts(&self) -> Counts {
        Counts { sessions: self.sessions.len(), live_sockets: self.sessions.live(), in_match: self.chatting as usize }
    }

    /// The session on socket `conn`, if it may send one more message now. Spent per
    /// session, so a new socket (a resume) does not refill it; over budget the
    /// message is dropped and the client told.
    fn within_budget(&mut self, conn: ConnId) -> Option<SessionId> {
        let sid = self.sessions.of_conn(conn)?;
        let (rate, now) = (self.config.message_rate, self.now);
        let session = self.sessions.get_mut(sid)?;
        if session.budget.spend(rate, now) {
            return Some(sid);
        }
        self.error(sid, ErrorCode::RateLimited, "too many messages; this one was dropped", None);
        None
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

    /// Everyone online, cluster-wide: this node's sessions and the others'.
    fn online_counts(&self) -> OnlineCounts {
        OnlineCounts {
            count: (self.sessions.len() as u32).saturating_add(self.others.count),
            chatting: self.chatting.saturating_add(self.others.chatting),
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_version_4_and_do_not_repeat() {
        let mut ids = RandomIds::from_os();
        let drawn: std::collections::HashSet<Uuid> = (0..10_000).map(|_| ids.next_id()).collect();
        assert_eq!(drawn.len(), 10_000);
        assert!(drawn.iter().all(|u| u.get_version_num() == 4 && u.get_variant() == uuid::Variant::RFC4122));
    }
}
