//! A node: the core joined to its backend, still without I/O. It feeds one input to
//! the core, carries the core's requests to the backend and the backend's answers
//! back as inputs until both are quiet, and hands what is left (frames, closes,
//! metrics) to the caller. The tokio shell and the unit tests drive the same code.

use super::backend::Backend;
use super::config::HubConfig;
use super::core::{Counts, HubCore, IdSource};
use super::io::{Input, Output};
use matcher::Millis;
use protocol::Mode;

/// Sizes of every table (tests and diagnostics; walks every session).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    pub sessions: usize,
    pub live_sockets: usize,
    /// Sockets opened and not yet welcomed.
    pub pending: usize,
    pub tokens: usize,
    pub waiting: usize,
    pub waiting_video: usize,
    pub in_match: usize,
    pub grace_timers: usize,
    /// Messages held in inboxes (signals before `ready`, chat while away), over every
    /// session whatever its state.
    pub buffered_signals: usize,
    /// Reports counted so far, over all reported addresses.
    pub reports: u64,
    /// Reports held within their window.
    pub reports_held: usize,
    /// Per-side deadlines pending (`ready`, TURN refresh).
    pub deadlines: usize,
    /// Entries in the matchmaking indexes.
    pub match_index: usize,
    /// Addresses holding sessions.
    pub addresses: usize,
    /// Entries in the per-address queues of sessions within their grace period.
    pub away: usize,
}

impl HubStats {
    /// Whether every table is empty (the report total is a counter, not a table).
    pub fn is_empty(&self) -> bool {
        let HubStats {
            sessions,
            live_sockets,
            pending,
            tokens,
            waiting,
            waiting_video: _,
            in_match,
            grace_timers,
            buffered_signals,
            reports: _,
            reports_held,
            deadlines,
            match_index,
            addresses,
            away,
        } = *self;
        sessions
            + live_sockets
            + pending
            + tokens
            + waiting
            + in_match
            + grace_timers
            + buffered_signals
            + reports_held
            + deadlines
            + match_index
            + addresses
            + away
            == 0
    }
}

/// The core and its backend.
#[derive(Debug)]
pub struct Node {
    core: HubCore,
    backend: Backend,
}

impl Node {
    pub fn new(config: HubConfig, backend: Backend, ids: Box<dyn IdSource>, unix_at_zero: u64) -> Self {
        Self { core: HubCore::new(config, ids, unix_at_zero), backend }
    }

    /// Takes one input at `now`; what must reach sockets and metrics goes to `out`.
    pub fn handle(&mut self, input: Input, now: Millis, out: &mut Vec<Output>) {
        self.core.handle(input, now);
        self.settle(now, out);
    }

    /// Lets time pass: grace periods, online pushes, matchmaking fallbacks.
    pub fn timer(&mut self, now: Millis, out: &mut Vec<Output>) {
        self.core.handle(Input::Timer, now);
        self.backend.matchmaking.tick(now);
        self.settle(now, out);
    }

    /// When [`Node::timer`] is due next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        [self.core.poll_timeout(), self.backend.matchmaking.next_deadline()].into_iter().flatten().min()
    }

    /// Takes whatever the backend holds for this node (a shared backend delivers
    /// envelopes and pairs from other nodes), until core and backend are both quiet.
    pub fn poll(&mut self, now: Millis, out: &mut Vec<Output>) {
        self.settle(now, out);
    }

    /// Exchanges requests and answers between core and backend until both are quiet.
    fn settle(&mut self, now: Millis, out: &mut Vec<Output>) {
        loop {
            while let Some(output) = self.core.poll_output() {
                match output {
                    Output::Backend(req) => self.backend.request(req, now),
                    other => out.push(other),
                }
            }
            match self.backend.poll_event() {
                Some(event) => self.core.handle(Input::Backend(event), now),
                None => return,
            }
        }
    }

    pub fn counts(&self) -> Counts {
        self.core.counts()
    }

    /// See [`HubCore::frame_sender`].
    pub fn frame_sender(
        &mut self,
        token: &protocol::ResumeToken,
        now: Millis,
    ) -> Option<Result<(protocol::SessionId, Option<protocol::MatchId>), ()>> {
        self.core.frame_sender(token, now)
    }

    /// The ban set this node enforces.
    pub fn bans(&self) -> &std::sync::Arc<crate::bans::Bans> {
        &self.backend.bans
    }

    /// Tickets waiting in `mode`.
    pub fn waiting(&self, mode: Mode) -> usize {
        self.backend.matchmaking.waiting(mode)
    }

    /// Bytes held in `session`'s inbox (diagnostics and tests).
    pub fn inbox_bytes(&self, session: protocol::SessionId) -> usize {
        self.core.sessions().get(session).map_or(0, |s| s.inbox.held_bytes())
    }

    pub fn stats(&self) -> HubStats {
        let sessions = self.core.sessions();
        let waiting_video = self.waiting(Mode::Video);
        HubStats {
            sessions: sessions.len(),
            live_sockets: sessions.live(),
            pending: sessions.pending(),
            tokens: self.backend.directory.tokens(),
            waiting: waiting_video + self.waiting(Mode::Text),
            waiting_video,
            in_match: sessions.iter().filter(|s| s.current_match().is_some()).count(),
            grace_timers: sessions.grace_timers(),
            buffered_signals: sessions.iter().map(|s| s.inbox.held()).sum(),
            reports: self.core.reports(),
            reports_held: self.core.reports_held(),
            deadlines: self.core.deadlines(),
            match_index: self.backend.matchmaking.index_entries(),
            addresses: self.backend.directory.addresses(),
            away: sessions.away(),
        }
    }
}
