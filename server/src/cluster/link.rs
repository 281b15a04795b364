//! The Redis backend as the hub sees it: the three backend traits over a state shared
//! with the node's Redis tasks. Nothing here waits on the network: requests go into
//! an ordered queue that the writer task carries out in pipelines, and what the
//! reader task receives waits here until the hub takes it (see [`super`]).
//!
//! Delivery between nodes is numbered: each envelope carries its sender's sequence
//! number for the match. The receiving side drops repeats (a pipeline retried after a
//! broken connection may write twice) and never lets a gap pass silently: the match
//! ends on both sides, as if the peer's connection were lost.

use crate::hub::backend::{Bus, Directory, Entry, Matchmaking, MemoryDirectory, Paired, Resolved, Seat};
use crate::hub::model::{Body, ConnId, Envelope, Parting};
use crate::hub::snapshot::{Saved, Snapshot};
use matcher::store::{PairRecord, TicketRecord};
use matcher::{Avoid, Millis, Ticket};
use protocol::{LeftReason, MatchId, Mode, ResumeToken, SessionId};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc::UnboundedSender;

/// What the writer task does in Redis, in order.
#[derive(Debug)]
pub enum Op {
    /// This node owns the session under `token` (the session record's owner, with
    /// expiry, and the token's key); `old` is the token it replaces.
    Own { session: SessionId, token: ResumeToken, old: Option<ResumeToken> },
    /// The session is gone from this node (its record goes only if still ours).
    Disown { session: SessionId, token: ResumeToken },
    /// The session's resumable state (JSON, Unix ms).
    Save { session: SessionId, snapshot: String },
    /// A socket presented a token this node does not know: take the session over from
    /// whichever node held it, if any (exactly one node wins a token).
    Claim { conn: ConnId, ip: IpAddr, token: ResumeToken, at_address: usize },
    /// Tell `node` that `session` was resumed elsewhere.
    Evict { node: String, session: SessionId },
    /// Answer once everything before has gone to Redis.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// An envelope for a session of another node, found through its owner key.
    Forward { to: SessionId, wire: String },
    /// An envelope for a session on `node` (the sender heard from it there).
    ForwardTo { node: String, to: SessionId, wire: String },
    /// A waiting ticket, new or replaced.
    Put { session: SessionId, mode: Mode, since: Millis, record: String },
    /// The ticket is withdrawn.
    Del(SessionId),
}

/// An envelope between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Wire {
    /// The sender's number for this envelope within the match (from 1).
    pub seq: u64,
    /// Times in Unix ms.
    pub env: Envelope,
    /// The sending node: replies go straight there.
    #[serde(default)]
    pub node: Option<String>,
}

/// A ticket as put in Redis, kept to put it back if Redis loses it.
#[derive(Clone, Debug)]
pub struct Put {
    pub mode: Mode,
    pub since: Millis,
    pub record: String,
}

/// Counters the node's metrics read.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkCounts {
    /// Envelopes received twice and dropped.
    pub repeats: u64,
    /// Matches ended because envelopes between their sides went missing.
    pub gaps: u64,
}

#[derive(Debug)]
pub struct LinkState {
    pub node: String,
    /// Unix ms when the node's clock read 0.
    unix_at_zero: u64,
    ops: UnboundedSender<Op>,
    /// Tokens and per-address counts. An address's sessions are on one node (the
    /// balancer hashes the source address), so this node's own suffice.
    directory: MemoryDirectory,
    /// Sessions this node owns.
    pub local: HashSet<SessionId>,
    /// Tickets this node put in Redis and still renews.
    pub tickets: HashMap<SessionId, Put>,
    /// Per session of this node: its peer on another node, that node, and the match.
    homes: HashMap<SessionId, (SessionId, String, MatchId)>,
    /// Per session of this node: its current token.
    tokens: HashMap<SessionId, ResumeToken>,
    /// Per session of this node: its last saved state (to write back after Redis lost it).
    saved: HashMap<SessionId, String>,
    /// Sessions of this node whose peer's node died: the peer gets until then (Unix
    /// ms) to resume elsewhere before the match ends here.
    orphans: HashMap<SessionId, (SessionId, MatchId, Millis)>,
    /// Answers for sockets whose token another node held.
    claims: VecDeque<Resolved>,
    /// Sessions another node resumed, for the hub to drop.
    evicted: VecDeque<SessionId>,
    /// How long a session may be away (the hub's grace period), in ms.
    grace_ms: Millis,
    deliveries: VecDeque<(SessionId, Envelope)>,
    paired: VecDeque<Paired>,
    /// Waiting tickets per mode, cluster-wide (refreshed by the heartbeat).
    pub waiting: [usize; 2],
    /// Per sending session: its current match and the last number it used.
    sent: HashMap<SessionId, (MatchId, u64)>,
    /// Per receiving session: the sender, match, sending node and last number
    /// received. A session that moved to another node numbers afresh from there.
    received: HashMap<SessionId, (SessionId, MatchId, Option<String>, u64)>,
    pub counts: LinkCounts,
}

/// The shared state, one lock (held only for short, non-blocking work).
#[derive(Clone, Debug)]
pub struct Link(Arc<Mutex<LinkState>>);

impl Link {
    pub fn new(node: String, unix_at_zero: u64, grace_ms: Millis, ops: UnboundedSender<Op>) -> Self {
        Self(Arc::new(Mutex::new(LinkState {
            node,
            unix_at_zero,
            ops,
            directory: MemoryDirectory::default(),
            local: HashSet::new(),
            tickets: HashMap::new(),
            homes: HashMap::new(),
            tokens: HashMap::new(),
            saved: HashMap::new(),
            orphans: HashMap::new(),
            claims: VecDeque::new(),
            evicted: VecDeque::new(),
            grace_ms,
            deliveries: VecDeque::new(),
            paired: VecDeque::new(),
            waiting: [0, 0],
            sent: HashMap::new(),
            received: HashMap::new(),
            counts: LinkCounts::default(),
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, LinkState> {
        // A panic while holding this lock leaves nothing half-done that matters more
        // than stopping the node would; carry on with the data as it is.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An envelope read from this node's inbox. Returns whether the hub has
    /// something new to take.
    pub fn received(&self, to: SessionId, wire: &str) -> bool {
        let Ok(Wire { seq, mut env, node }) = serde_json::from_str::<Wire>(wire) else {
            tracing::warn!("an unreadable envelope in the inbox; dropped");
            return false;
        };
        let mut st = self.lock();
        env.shift_times(-(st.unix_at_zero as i64));
        if !st.local.contains(&to) {
            return false; // gone meanwhile
        }
        let (from, match_id) = (env.from, env.match_id);
        let last = match st.received.get(&to) {
            Some((f, m, n, last)) if *f == from && *m == match_id && *n == node => *last,
            _ => 0,
        };
        if seq <= last {
            st.counts.repeats += 1;
            return false;
        }
        st.received.insert(to, (from, match_id, node.clone(), seq));
        if let Some(node) = node {
            st.homes.insert(to, (from, node, match_id));
        }
        if st.orphans.get(&to).is_some_and(|&(peer, _, _)| peer == from) {
            st.orphans.remove(&to); // it is back, on another node
        }
        if let Body::Started(_) = env.body {
            st.tickets.remove(&to);
        }
        st.deliveries.push_back((to, env));
        if seq > last + 1 && last > 0 {
            // Something between them was lost: end the match on both sides rather
            // than let a negotiation or a chat go on with a hole in it.
            st.counts.gaps += 1;
            tracing::warn!(%match_id, missing = seq - last - 1, "envelopes lost between nodes: ending the match");
            let left = Body::Left { reason: LeftReason::Disconnected, parting: Parting::Free };
            st.deliveries.push_back((to, Envelope { from, match_id, body: left.clone() }));
            st.forward(from, Envelope { from: to, match_id, body: left });
        }
        true
    }

    /// A pair the matcher handed to this node.
    pub fn paired(&self, record: &str) -> bool {
        let parsed = serde_json::from_str::<PairRecord>(record).ok().and_then(|r| {
            let first: Seat = serde_json::from_value(r.first).ok()?;
            let second: Seat = serde_json::from_value(r.second).ok()?;
            Some((Paired { pair: r.pair, first, second }, r.second_node))
        });
        let Some((paired, second_node)) = parsed else {
            tracing::warn!("an unreadable pair in the inbox; dropped");
            return false;
        };
        let mut st = self.lock();
        let (first, second) = (paired.pair.first, paired.pair.second);
        st.tickets.remove(&first);
        st.tickets.remove(&second);
        if let Some(node) = second_node.filter(|_| st.local.contains(&first) && !st.local.contains(&second)) {
            // The match id is the first side's to make: set when its `Started` goes out.
            st.homes.insert(first, (second, node, MatchId(uuid::Uuid::nil())));
        }
        st.paired.push_back(paired);
        true
    }

    /// Redis lost its state: writes this node's back (owner keys, waiting tickets),
    /// in order with everything else it sends.
    pub fn rebuild(&self) -> (usize, usize) {
        let st = self.lock();
        for (&session, token) in &st.tokens {
            st.op(Op::Own { session, token: token.clone(), old: None });
            if let Some(snapshot) = st.saved.get(&session) {
                st.op(Op::Save { session, snapshot: snapshot.clone() });
            }
        }
        for (&session, put) in &st.tickets {
            let Put { mode, since, record } = put.clone();
            st.op(Op::Put { session, mode, since, record });
        }
        (st.local.len(), st.tickets.len())
    }

    /// The answer to a [`Op::Claim`]: the session (its id, the node that held it, its
    /// state) if the token named one. Returns the node to tell, if another held it,
    /// and the session's peer and match, if it is in one (see [`Link::peer_found`]).
    pub fn claimed(
        &self,
        conn: ConnId,
        ip: IpAddr,
        at_address: usize,
        found: Option<(SessionId, String, String)>,
    ) -> (Option<String>, Option<(SessionId, MatchId)>) {
        let mut st = self.lock();
        let shift = -(st.unix_at_zero as i64);
        let taken = found.and_then(|(session, node, state)| match serde_json::from_str::<Snapshot>(&state) {
            Ok(mut snapshot) => {
                snapshot.shift_times(shift);
                Some((session, node, snapshot))
            }
            Err(e) => {
                tracing::warn!("an unreadable session record for {}: {e}; starting afresh", session.0);
                None
            }
        });
        let (session, imported, old_node) = match taken {
            Some((session, node, snapshot)) => (Some(session), Some(Box::new(snapshot)), Some(node)),
            None => (None, None, None),
        };
        // Envelopes for it may reach this node's inbox from now on.
        if let Some(session) = session {
            st.local.insert(session);
        }
        let peer = match imported.as_deref().map(|s| &s.state) {
            Some(&Saved::Matched { id, peer, .. }) => Some((peer, id)),
            _ => None,
        };
        st.claims.push_back(Resolved { conn, ip, session, at_address, imported });
        (old_node.filter(|n| *n != st.node && !n.is_empty()), peer)
    }

    /// Where the peer of `me`, a session just resumed here in match `id`, lives (its
    /// node, if its record still names one) and whether that node is alive. A peer
    /// whose node is gone gets the grace period to resume elsewhere, as after a death
    /// seen by the heartbeat; `me` is told its peer is reconnecting meanwhile.
    pub fn peer_found(
        &self,
        me: SessionId,
        peer: SessionId,
        id: MatchId,
        node: Option<String>,
        alive: bool,
        now: Millis,
    ) {
        let mut st = self.lock();
        if st.local.contains(&peer) {
            return;
        }
        if let Some(node) = node.filter(|n| *n != st.node) {
            st.homes.insert(me, (peer, node, id));
        }
        if !alive {
            let until = now + st.grace_ms;
            st.orphans.insert(me, (peer, id, until));
            st.deliveries.push_back((me, Envelope { from: peer, match_id: id, body: Body::Away }));
        }
    }

    /// Queues `op` for the writer, after everything asked so far.
    pub fn send(&self, op: Op) {
        self.lock().op(op);
    }

    /// Resolves once everything asked of Redis so far has been written (a node that
    /// stops waits for this, so its last envelopes and states are not lost).
    pub async fn flush(&self) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        self.send(Op::Flush(done));
        let _ = flushed.await;
    }

    /// Another node resumed `session`: the hub drops it here. Returns whether the
    /// hub has something new to take.
    pub fn evicted(&self, session: SessionId) -> bool {
        let mut st = self.lock();
        if !st.local.contains(&session) {
            return false;
        }
        st.evicted.push_back(session);
        true
    }

    /// Nodes whose heartbeat lapsed (`now` in Unix ms): the sessions here whose peer was
    /// on one are told their peer is reconnecting, and get the grace period for it to
    /// resume elsewhere. Returns whether the hub has something new to take.
    pub fn nodes_died(&self, dead: &[&str], now: Millis) -> bool {
        let mut st = self.lock();
        let until = now + st.grace_ms;
        let orphaned: Vec<(SessionId, SessionId, MatchId)> = st
            .homes
            .iter()
            .filter(|(_, (_, node, _))| dead.contains(&node.as_str()))
            .map(|(&me, &(peer, _, id))| (me, peer, id))
            .collect();
        for &(me, peer, id) in &orphaned {
            st.orphans.insert(me, (peer, id, until));
            st.deliveries.push_back((me, Envelope { from: peer, match_id: id, body: Body::Away }));
        }
        !orphaned.is_empty()
    }

    /// Ends the matches whose peer did not come back in time (`now` in Unix ms).
    pub fn orphans_expired(&self, now: Millis) -> bool {
        let mut st = self.lock();
        let expired: Vec<(SessionId, SessionId, MatchId)> = st
            .orphans
            .iter()
            .filter(|(_, (_, _, until))| *until <= now)
            .map(|(&me, &(peer, id, _))| (me, peer, id))
            .collect();
        for &(me, peer, id) in &expired {
            st.orphans.remove(&me);
            let left = Body::Left { reason: LeftReason::Disconnected, parting: Parting::Free };
            st.deliveries.push_back((me, Envelope { from: peer, match_id: id, body: left }));
        }
        !expired.is_empty()
    }
}

impl LinkState {
    /// This node's sessions and their tokens.
    pub fn tokens(&self) -> impl Iterator<Item = (SessionId, ResumeToken)> + '_ {
        self.tokens.iter().map(|(s, t)| (*s, t.clone()))
    }

    fn op(&self, op: Op) {
        // The writer task outlives the hub; if it has stopped, the hub is stopping.
        let _ = self.ops.send(op);
    }

    fn forward(&mut self, to: SessionId, mut env: Envelope) {
        if self.local.contains(&to) {
            // The peer is here now (it resumed on this node): not elsewhere, not lost.
            if self.homes.get(&to).is_some_and(|(peer, _, _)| *peer == env.from) {
                self.homes.remove(&to);
            }
            if self.orphans.get(&to).is_some_and(|(peer, _, _)| *peer == env.from) {
                self.orphans.remove(&to);
            }
            self.deliveries.push_back((to, env));
            return;
        }
        let seq = match self.sent.get(&env.from) {
            Some(&(m, last)) if m == env.match_id => last + 1,
            _ => 1,
        };
        // (A sender that is gone already sends this one last word, unnumbered.)
        if self.local.contains(&env.from) {
            self.sent.insert(env.from, (env.match_id, seq));
        }
        env.shift_times(self.unix_at_zero as i64);
        let home = match self.homes.get_mut(&env.from) {
            Some((peer, node, id)) if *peer == to => {
                *id = env.match_id;
                Some(node.clone())
            }
            _ => None,
        };
        let wire = match serde_json::to_string(&Wire { seq, env, node: Some(self.node.clone()) }) {
            Ok(wire) => wire,
            Err(e) => return tracing::error!("cannot encode an envelope: {e}"),
        };
        match home {
            Some(node) => self.op(Op::ForwardTo { node, to, wire }),
            None => self.op(Op::Forward { to, wire }),
        }
    }

    fn to_unix(&self, t: Millis) -> Millis {
        t.saturating_add(self.unix_at_zero)
    }
}

/// [`Directory`] over the link.
#[derive(Debug)]
pub struct LinkDirectory(pub Link);
/// [`Bus`] over the link.
#[derive(Debug)]
pub struct LinkBus(pub Link);
/// [`Matchmaking`] over the link: the matcher service pairs.
#[derive(Debug)]
pub struct LinkMatchmaking(pub Link);

impl Directory for LinkDirectory {
    fn resolve(&mut self, conn: ConnId, ip: IpAddr, token: Option<ResumeToken>) {
        let mut st = self.0.lock();
        match token {
            // Not a session of this node: another node may hold it.
            Some(token) if st.directory.session_of(&token).is_none() => {
                let at_address = st.directory.at_address(ip);
                st.op(Op::Claim { conn, ip, token, at_address });
            }
            token => st.directory.resolve(conn, ip, token),
        }
    }

    fn register(&mut self, session: SessionId, token: ResumeToken, ip: IpAddr) {
        let mut st = self.0.lock();
        st.directory.register(session, token.clone(), ip);
        st.local.insert(session);
        let old = st.tokens.insert(session, token.clone()).filter(|old| *old != token);
        st.op(Op::Own { session, token, old });
    }

    fn save(&mut self, session: SessionId, mut snapshot: Box<Snapshot>) {
        let mut st = self.0.lock();
        snapshot.shift_times(st.unix_at_zero as i64);
        let snapshot = serde_json::to_string(&snapshot).expect("a snapshot is plain data");
        st.saved.insert(session, snapshot.clone());
        st.op(Op::Save { session, snapshot });
    }

    fn unregister(&mut self, session: SessionId) {
        let mut st = self.0.lock();
        st.directory.unregister(session);
        st.local.remove(&session);
        st.tickets.remove(&session);
        st.homes.remove(&session);
        st.saved.remove(&session);
        st.orphans.remove(&session);
        st.sent.remove(&session);
        st.received.remove(&session);
        if let Some(token) = st.tokens.remove(&session) {
            st.op(Op::Disown { session, token });
        }
    }

    fn poll_resolved(&mut self) -> Option<Resolved> {
        let mut st = self.0.lock();
        st.directory.poll_resolved().or_else(|| st.claims.pop_front())
    }

    fn poll_evicted(&mut self) -> Option<SessionId> {
        self.0.lock().evicted.pop_front()
    }

    fn tokens(&self) -> usize {
        self.0.lock().directory.tokens()
    }

    fn addresses(&self) -> usize {
        self.0.lock().directory.addresses()
    }
}

impl Bus for LinkBus {
    fn forward(&mut self, to: SessionId, envelope: Envelope) {
        self.0.lock().forward(to, envelope);
    }

    fn poll_delivery(&mut self) -> Option<(SessionId, Envelope)> {
        self.0.lock().deliveries.pop_front()
    }
}

impl Matchmaking for LinkMatchmaking {
    fn submit(&mut self, entry: Entry, _now: Millis) {
        let mut st = self.0.lock();
        let Entry { ticket, since, ip, declared } = entry;
        let seat = Seat { country: ticket.country.clone(), same_country: ticket.same_country, declared, ip };
        let ticket = Ticket {
            avoid: ticket
                .avoid
                .iter()
                .map(|a| Avoid { session: a.session, until: a.until.map(|t| st.to_unix(t)) })
                .collect(),
            ..ticket
        };
        let (session, mode, since) = (ticket.session, ticket.mode, st.to_unix(since));
        let record = TicketRecord {
            ticket,
            since,
            node: st.node.clone(),
            seat: serde_json::to_value(seat).expect("a seat is plain data"),
        };
        let record = serde_json::to_string(&record).expect("a ticket is plain data");
        st.tickets.insert(session, Put { mode, since, record: record.clone() });
        st.op(Op::Put { session, mode, since, record });
    }

    fn withdraw(&mut self, session: SessionId) {
        let mut st = self.0.lock();
        st.tickets.remove(&session);
        st.op(Op::Del(session));
    }

    fn tick(&mut self, _now: Millis) {}

    fn next_deadline(&self) -> Option<Millis> {
        None
    }

    fn poll_paired(&mut self) -> Option<Paired> {
        self.0.lock().paired.pop_front()
    }

    fn waiting(&self, mode: Mode) -> usize {
        self.0.lock().waiting[mode_index(mode)]
    }

    fn index_entries(&self) -> usize {
        0
    }
}

pub fn mode_index(mode: Mode) -> usize {
    match mode {
        Mode::Video => 0,
        Mode::Text => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::model::RelayKind;

    fn sid(n: u128) -> SessionId {
        SessionId(uuid::Uuid::from_u128(n))
    }

    fn chat(from: SessionId, match_id: MatchId, seq: u64, text: &str) -> String {
        let frame = protocol::ServerMsg::Chat { match_id, text: text.into() }.to_json().into();
        let env = Envelope { from, match_id, body: Body::Relay { kind: RelayKind::Chat, frame, generation: 0 } };
        serde_json::to_string(&Wire { seq, env, node: Some("n2".into()) }).unwrap()
    }

    fn texts(bus: &mut LinkBus) -> Vec<String> {
        std::iter::from_fn(|| bus.poll_delivery())
            .map(|(_, env)| match env.body {
                Body::Relay { frame, .. } => frame.as_str().to_string(),
                Body::Left { reason, .. } => format!("left:{reason:?}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn repeats_are_dropped_and_a_gap_ends_the_match_on_both_sides() {
        let (ops, mut sent) = tokio::sync::mpsc::unbounded_channel();
        let link = Link::new("n1".into(), 1_000, 15_000, ops);
        let (me, peer, m) = (sid(1), sid(2), MatchId(uuid::Uuid::from_u128(3)));
        LinkDirectory(link.clone()).register(me, ResumeToken(uuid::Uuid::from_u128(4)), "127.0.0.1".parse().unwrap());
        assert!(matches!(sent.try_recv(), Ok(Op::Own { session, .. }) if session == me));
        let mut bus = LinkBus(link.clone());

        assert!(link.received(me, &chat(peer, m, 1, "one")));
        assert!(link.received(me, &chat(peer, m, 2, "two")));
        assert!(!link.received(me, &chat(peer, m, 2, "two")), "a repeat is dropped");
        assert!(!link.received(me, &chat(peer, m, 1, "one")), "so is an older one");
        assert_eq!(texts(&mut bus).len(), 2);
        assert_eq!(link.lock().counts.repeats, 2);

        // 3 and 4 went missing: 5 is delivered, and the match ends here and there.
        assert!(link.received(me, &chat(peer, m, 5, "five")));
        let got = texts(&mut bus);
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("five"));
        assert_eq!(got[1], "left:Disconnected");
        let Ok(Op::ForwardTo { node, to, wire }) = sent.try_recv() else { panic!("the peer is told, on its node") };
        assert_eq!(node, "n2");
        assert_eq!(to, peer);
        let Wire { env, .. } = serde_json::from_str(&wire).unwrap();
        assert!(matches!(env.body, Body::Left { reason: LeftReason::Disconnected, .. }) && env.from == me);
        assert_eq!(link.lock().counts.gaps, 1);

        // The peer resumed on another node, which numbers from 1 again.
        let moved = {
            let mut w: Wire = serde_json::from_str(&chat(peer, m, 1, "moved")).unwrap();
            w.node = Some("n3".into());
            serde_json::to_string(&w).unwrap()
        };
        assert!(link.received(me, &moved), "a new node's numbering is its own");
        assert_eq!(texts(&mut bus).len(), 1);

        // A session that is gone receives nothing.
        LinkDirectory(link.clone()).unregister(me);
        assert!(!link.received(me, &chat(peer, m, 6, "six")));
    }

    #[test]
    fn a_dead_nodes_peers_wait_the_grace_period_unless_it_comes_back() {
        let (ops, _sent) = tokio::sync::mpsc::unbounded_channel();
        let link = Link::new("n1".into(), 1_000, 15_000, ops);
        let (me, other, peer, m) = (sid(1), sid(5), sid(2), MatchId(uuid::Uuid::from_u128(3)));
        let ip = "127.0.0.1".parse().unwrap();
        LinkDirectory(link.clone()).register(me, ResumeToken(uuid::Uuid::from_u128(4)), ip);
        LinkDirectory(link.clone()).register(other, ResumeToken(uuid::Uuid::from_u128(6)), ip);
        let mut bus = LinkBus(link.clone());
        assert!(link.received(me, &chat(peer, m, 1, "hi")), "heard from n2");
        assert!(link.received(other, &chat(sid(7), m, 1, "hi")));
        texts(&mut bus);
        assert!(!link.nodes_died(&["n9"], 100_000), "nobody's peer was there");
        assert!(link.nodes_died(&["n2"], 100_000));
        assert_eq!(texts(&mut bus), vec!["Away".to_string(), "Away".to_string()]);
        // One peer resumes on this very node: its `Back` arrives locally.
        LinkDirectory(link.clone()).register(peer, ResumeToken(uuid::Uuid::from_u128(8)), ip);
        LinkBus(link.clone()).forward(me, Envelope { from: peer, match_id: m, body: Body::Back { generation: 1 } });
        texts(&mut bus);
        assert!(!link.orphans_expired(114_999), "within the grace period");
        assert!(link.orphans_expired(115_000));
        // Only the one whose peer never came back is told the match ended.
        let ended: Vec<(SessionId, String)> =
            std::iter::from_fn(|| bus.poll_delivery()).map(|(to, env)| (to, format!("{:?}", env.body))).collect();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].0, other);
        assert!(ended[0].1.starts_with("Left"));
    }

    #[test]
    fn a_session_resumed_here_whose_peers_node_is_gone_waits_the_grace_period() {
        let (ops, _sent) = tokio::sync::mpsc::unbounded_channel();
        let link = Link::new("n1".into(), 1_000, 15_000, ops);
        let (me, peer, m) = (sid(1), sid(2), MatchId(uuid::Uuid::from_u128(3)));
        let mut session = crate::hub::model::Session::new(
            ResumeToken(uuid::Uuid::from_u128(4)),
            ConnId(1),
            "127.0.0.1".parse().unwrap(),
        );
        session.state = crate::hub::model::State::Matched(Box::new(crate::hub::model::Side {
            id: m,
            peer,
            peer_ip: "127.0.0.1".parse().unwrap(),
            role: protocol::Role::Offerer,
            common_interests: vec![],
            peer_country: None,
            generation: 0,
            ready_by: None,
            refresh_at: None,
        }));
        let state = serde_json::to_string(&Snapshot::of(&session)).unwrap();
        let (old, matched) = link.claimed(ConnId(9), "127.0.0.1".parse().unwrap(), 0, Some((me, "n0".into(), state)));
        assert_eq!(old.as_deref(), Some("n0"), "the old node is told");
        assert_eq!(matched, Some((peer, m)));
        let mut dir = LinkDirectory(link.clone());
        assert!(dir.poll_resolved().is_some_and(|r| r.session == Some(me) && r.imported.is_some()));
        link.peer_found(me, peer, m, Some("n0".into()), false, 100_000);
        let mut bus = LinkBus(link.clone());
        assert_eq!(texts(&mut bus), vec!["Away".to_string()]);
        assert!(!link.orphans_expired(114_999));
        assert!(link.orphans_expired(115_000));
        assert_eq!(texts(&mut bus), vec!["left:Disconnected".to_string()]);
    }

    #[test]
    fn times_cross_nodes_on_the_unix_scale() {
        let (ops, mut sent) = tokio::sync::mpsc::unbounded_channel();
        let link = Link::new("n1".into(), 1_000, 15_000, ops);
        let (me, peer, m) = (sid(1), sid(2), MatchId(uuid::Uuid::from_u128(3)));
        let left = Body::Left { reason: LeftReason::Skipped, parting: Parting::Cooldown(60_000) };
        LinkBus(link.clone()).forward(peer, Envelope { from: me, match_id: m, body: left });
        let Ok(Op::Forward { wire, .. }) = sent.try_recv() else { panic!("sent to the peer's node") };
        let Wire { seq, env, .. } = serde_json::from_str(&wire).unwrap();
        assert_eq!(seq, 1);
        assert!(matches!(env.body, Body::Left { parting: Parting::Cooldown(61_000), .. }), "{:?}", env.body);
        // A node whose clock started 500 ms later reads it 500 ms earlier on its own.
        let (ops2, _rx) = tokio::sync::mpsc::unbounded_channel();
        let other = Link::new("n2".into(), 1_500, 15_000, ops2);
        LinkDirectory(other.clone()).register(
            peer,
            ResumeToken(uuid::Uuid::from_u128(5)),
            "127.0.0.1".parse().unwrap(),
        );
        assert!(other.received(peer, &wire));
        let (_, env) = LinkBus(other).poll_delivery().unwrap();
        assert!(matches!(env.body, Body::Left { parting: Parting::Cooldown(59_500), .. }), "{:?}", env.body);
    }
}
