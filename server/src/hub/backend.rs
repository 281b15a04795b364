//! The backend seam: the state a cluster shares between nodes, behind three traits.
//!
//! - [`Directory`]: who owns a session, resume tokens, sessions per address.
//! - [`Bus`]: deliver an [`Envelope`] to a session, wherever it lives.
//! - [`Matchmaking`]: submit and withdraw tickets; pairs come back as events.
//!
//! Every call returns at once and never waits on the network: answers come back as
//! [`Event`]s, which the node feeds to the core as inputs. The in-memory
//! implementations here are the embedded default (one process); a Redis backend
//! implements the same traits for a cluster.

use super::model::{ConnId, Envelope};
use super::snapshot::Snapshot;
use crate::bans::{Ban, BanOrder, Bans, Mark};
use matcher::{Matcher, Millis, Pair, Ticket};
use protocol::{Mode, ResumeToken, SessionId};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

/// A waiting ticket as matchmaking holds it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub ticket: Ticket,
    /// When the session started waiting (kept across reconnects and preference changes).
    pub since: Millis,
    /// The session's address, passed on to its partner's side for reports.
    pub ip: IpAddr,
    /// The country its partner may be told: the user's own pick, when the IP database
    /// does not know the address. A country from the database is never told.
    pub declared: Option<String>,
}

/// What one side of a pair brings to it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seat {
    /// Its country for matching: the connection's, else the user's pick.
    pub country: Option<String>,
    /// It insisted on a partner from its own country.
    pub same_country: bool,
    /// See [`Entry::declared`].
    pub declared: Option<String>,
    pub ip: IpAddr,
}

/// Two tickets paired by matchmaking.
#[derive(Clone, Debug)]
pub struct Paired {
    pub pair: Pair,
    pub first: Seat,
    pub second: Seat,
}

/// The directory's answer for a new socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub conn: ConnId,
    pub ip: IpAddr,
    /// The session the socket's resume token names, if it still exists.
    pub session: Option<SessionId>,
    /// Sessions (live or within their grace period) that `ip` holds now.
    pub at_address: usize,
    /// The session's state, when another node held it (it resumes here).
    pub imported: Option<Box<Snapshot>>,
}

/// Session directory: ownership, resume tokens, per-address counts.
pub trait Directory: Send {
    /// Asks who holds `token` and how many sessions `ip` holds; the answer comes back
    /// as [`Event::Resolved`].
    fn resolve(&mut self, conn: ConnId, ip: IpAddr, token: Option<ResumeToken>);
    /// Records that this node owns `session` (again, from `ip`).
    fn register(&mut self, session: SessionId, token: ResumeToken, ip: IpAddr);
    /// Forgets `session` and its token.
    fn unregister(&mut self, session: SessionId);
    /// Keeps `session`'s resumable state where another node can take it over (asked
    /// for only when [`super::HubConfig::snapshots`] is on).
    fn save(&mut self, _session: SessionId, _snapshot: Box<Snapshot>) {}
    fn poll_resolved(&mut self) -> Option<Resolved>;
    /// A session of this node that another node has resumed since.
    fn poll_evicted(&mut self) -> Option<SessionId> {
        None
    }
    /// Tokens held (diagnostics).
    fn tokens(&self) -> usize;
    /// Addresses holding sessions (diagnostics).
    fn addresses(&self) -> usize;
}

/// Delivery to a session wherever it lives.
pub trait Bus: Send {
    fn forward(&mut self, to: SessionId, envelope: Envelope);
    /// The next envelope for a session of this node.
    fn poll_delivery(&mut self) -> Option<(SessionId, Envelope)>;
}

/// Matchmaking: tickets in, pairs out.
pub trait Matchmaking: Send {
    /// Queues (or replaces) a ticket and pairs whatever has become compatible.
    fn submit(&mut self, entry: Entry, now: Millis);
    fn withdraw(&mut self, session: SessionId);
    /// Lets time pass: fallbacks and cooldowns that ran out may pair someone.
    fn tick(&mut self, now: Millis);
    /// When [`Matchmaking::tick`] may next pair someone.
    fn next_deadline(&self) -> Option<Millis>;
    fn poll_paired(&mut self) -> Option<Paired>;
    /// Tickets waiting in `mode`.
    fn waiting(&self, mode: Mode) -> usize;
    /// Entries in the matchmaking indexes (diagnostics: zero when nobody waits).
    fn index_entries(&self) -> usize;
}

/// What the core asks of the backend (one of its outputs).
#[derive(Debug)]
pub enum Request {
    Resolve {
        conn: ConnId,
        ip: IpAddr,
        token: Option<ResumeToken>,
    },
    Register {
        session: SessionId,
        token: ResumeToken,
        ip: IpAddr,
    },
    Unregister {
        session: SessionId,
    },
    Save {
        session: SessionId,
        snapshot: Box<Snapshot>,
    },
    Submit(Entry),
    Withdraw {
        session: SessionId,
    },
    Forward {
        to: SessionId,
        envelope: Envelope,
    },
    /// Ban an address (its key); the ban comes back as [`Event::Banned`].
    Ban(BanOrder),
    /// Evidence counted here, for the other nodes to count too (they hear of it as
    /// [`Event::Marked`]).
    Mark(Mark),
}

/// What the backend answers (one of the core's inputs).
#[derive(Debug)]
pub enum Event {
    Resolved(Resolved),
    Delivered {
        to: SessionId,
        envelope: Envelope,
    },
    Paired(Paired),
    /// Another node resumed `session`: drop it here without a word to its peer.
    Evicted {
        session: SessionId,
    },
    /// A ban was issued (here, by an operator, or on another node): the sessions of
    /// its address go.
    Banned(Ban),
    /// Another node counted evidence against an address: counted here too, so reports
    /// and flags add up over the cluster.
    Marked(Mark),
}

/// The three parts, chosen once at start-up, and the ban set (in memory, mirrored
/// from Redis in a cluster).
pub struct Backend {
    pub directory: Box<dyn Directory>,
    pub bus: Box<dyn Bus>,
    pub matchmaking: Box<dyn Matchmaking>,
    pub bans: Arc<Bans>,
    /// Bans issued for the core, not yet handed back.
    issued: VecDeque<Ban>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").finish_non_exhaustive()
    }
}

impl Backend {
    /// The embedded default: everything in this process.
    pub fn memory(matching: matcher::Config, bans: Arc<Bans>) -> Self {
        Self::new(
            Box::<MemoryDirectory>::default(),
            Box::<MemoryBus>::default(),
            Box::new(MemoryMatchmaking::new(matching)),
            bans,
        )
    }

    pub fn new(
        directory: Box<dyn Directory>,
        bus: Box<dyn Bus>,
        matchmaking: Box<dyn Matchmaking>,
        bans: Arc<Bans>,
    ) -> Self {
        Self { directory, bus, matchmaking, bans, issued: VecDeque::new() }
    }

    /// Carries out a request from the core.
    pub fn request(&mut self, req: Request, now: Millis) {
        match req {
            Request::Resolve { conn, ip, token } => self.directory.resolve(conn, ip, token),
            Request::Register { session, token, ip } => self.directory.register(session, token, ip),
            Request::Unregister { session } => self.directory.unregister(session),
            Request::Save { session, snapshot } => self.directory.save(session, snapshot),
            Request::Submit(entry) => self.matchmaking.submit(entry, now),
            Request::Withdraw { session } => self.matchmaking.withdraw(session),
            Request::Forward { to, envelope } => self.bus.forward(to, envelope),
            Request::Ban(order) => self.issued.push_back(self.bans.issue(order, crate::bans::unix_ms())),
            Request::Mark(mark) => self.bans.marked(mark),
        }
    }

    /// The next answer for the core, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(r) = self.directory.poll_resolved() {
            return Some(Event::Resolved(r));
        }
        if let Some(session) = self.directory.poll_evicted() {
            return Some(Event::Evicted { session });
        }
        if let Some(ban) = self.issued.pop_front() {
            return Some(Event::Banned(ban));
        }
        if let Some((to, envelope)) = self.bus.poll_delivery() {
            return Some(Event::Delivered { to, envelope });
        }
        self.matchmaking.poll_paired().map(Event::Paired)
    }
}

/// The directory of a single process: a token map and per-address counts.
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    tokens: HashMap<ResumeToken, SessionId>,
    sessions: HashMap<SessionId, (ResumeToken, IpAddr)>,
    per_ip: HashMap<IpAddr, usize>,
    answers: VecDeque<Resolved>,
}

impl MemoryDirectory {
    /// The session `token` names, if this directory holds it.
    pub fn session_of(&self, token: &ResumeToken) -> Option<SessionId> {
        self.tokens.get(token).copied()
    }

    /// Sessions `ip` holds.
    pub fn at_address(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    fn count(&mut self, ip: IpAddr, delta: isize) {
        let n = self.per_ip.entry(ip).or_default();
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.per_ip.remove(&ip);
        }
    }
}

impl Directory for MemoryDirectory {
    fn resolve(&mut self, conn: ConnId, ip: IpAddr, token: Option<ResumeToken>) {
        let session = token.and_then(|t| self.tokens.get(&t).copied());
        let at_address = self.per_ip.get(&ip).copied().unwrap_or(0);
        self.answers.push_back(Resolved { conn, ip, session, at_address, imported: None });
    }

    fn register(&mut self, session: SessionId, token: ResumeToken, ip: IpAddr) {
        if let Some((old_token, old_ip)) = self.sessions.remove(&session) {
            self.tokens.remove(&old_token);
            self.count(old_ip, -1);
        }
        self.tokens.insert(token.clone(), session);
        self.sessions.insert(session, (token, ip));
        self.count(ip, 1);
    }

    fn unregister(&mut self, session: SessionId) {
        if let Some((token, ip)) = self.sessions.remove(&session) {
            self.tokens.remove(&token);
            self.count(ip, -1);
        }
    }

    fn poll_resolved(&mut self) -> Option<Resolved> {
        self.answers.pop_front()
    }

    fn tokens(&self) -> usize {
        self.tokens.len()
    }

    fn addresses(&self) -> usize {
        self.per_ip.len()
    }
}

/// The bus of a single process: every session lives here, so delivery is a queue
/// read back in order.
#[derive(Debug, Default)]
pub struct MemoryBus {
    queue: VecDeque<(SessionId, Envelope)>,
}

impl Bus for MemoryBus {
    fn forward(&mut self, to: SessionId, envelope: Envelope) {
        self.queue.push_back((to, envelope));
    }

    fn poll_delivery(&mut self) -> Option<(SessionId, Envelope)> {
        self.queue.pop_front()
    }
}

/// Matchmaking in this process: the `matcher` state machine, plus what each waiting
/// ticket brings to a pair.
#[derive(Debug)]
pub struct MemoryMatchmaking {
    matcher: Matcher,
    seats: HashMap<SessionId, Seat>,
    paired: VecDeque<Paired>,
}

impl MemoryMatchmaking {
    pub fn new(config: matcher::Config) -> Self {
        Self { matcher: Matcher::new(config), seats: HashMap::new(), paired: VecDeque::new() }
    }

    fn take(&mut self, pairs: Vec<Pair>) {
        for pair in pairs {
            let mut seat = |s| self.seats.remove(&s).expect("a paired session submitted a ticket");
            let (first, second) = (seat(pair.first), seat(pair.second));
            self.paired.push_back(Paired { pair, first, second });
        }
    }
}

impl Matchmaking for MemoryMatchmaking {
    fn submit(&mut self, entry: Entry, now: Millis) {
        let Entry { ticket, since, ip, declared } = entry;
        let seat = Seat { country: ticket.country.clone(), same_country: ticket.same_country, declared, ip };
        self.seats.insert(ticket.session, seat);
        let pairs = self.matcher.insert(ticket, since, now);
        self.take(pairs);
    }

    fn withdraw(&mut self, session: SessionId) {
        if self.matcher.remove(session).is_some() {
            self.seats.remove(&session);
        }
    }

    fn tick(&mut self, now: Millis) {
        let pairs = self.matcher.tick(now);
        self.take(pairs);
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.matcher.next_deadline()
    }

    fn poll_paired(&mut self) -> Option<Paired> {
        self.paired.pop_front()
    }

    fn waiting(&self, mode: Mode) -> usize {
        self.matcher.waiting_count(mode)
    }

    fn index_entries(&self) -> usize {
        self.matcher.index_entries()
    }
}
