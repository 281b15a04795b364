//! The session registry: sessions by id and by socket, sockets waiting for the
//! directory, grace timers, and each address's queue of absent sessions (for its cap).

use super::model::{ConnId, Session};
use matcher::Millis;
use protocol::{ResumeToken, SessionId};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

/// What giving a session a new socket changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Attached {
    /// The live socket it replaced (to be closed with 4001).
    pub replaced: Option<ConnId>,
    /// It came back within its grace period.
    pub returned: bool,
}

/// Every session this node owns.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<SessionId, Session>,
    by_conn: HashMap<ConnId, SessionId>,
    /// Sessions by their current resume token (sampled frames name their session so).
    by_token: HashMap<ResumeToken, SessionId>,
    /// Sockets opened and not yet welcomed (the directory has not answered): their
    /// address and its country.
    pending: HashMap<ConnId, (IpAddr, Option<String>)>,
    /// Grace periods, soonest first.
    grace: BTreeSet<(Millis, SessionId)>,
    /// Per address, its sessions within their grace period in the order they went
    /// away (each once: taken out when it comes back or ends).
    away: HashMap<IpAddr, VecDeque<SessionId>>,
}

impl Sessions {
    pub fn get(&self, sid: SessionId) -> Option<&Session> {
        self.by_id.get(&sid)
    }

    pub fn get_mut(&mut self, sid: SessionId) -> Option<&mut Session> {
        self.by_id.get_mut(&sid)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.by_id.values()
    }

    pub fn iter_with_ids(&self) -> impl Iterator<Item = (SessionId, &Session)> {
        self.by_id.iter().map(|(sid, s)| (*sid, s))
    }

    /// The session whose live socket is `conn`.
    pub fn of_conn(&self, conn: ConnId) -> Option<SessionId> {
        self.by_conn.get(&conn).copied()
    }

    /// The session whose current resume token is `token`.
    pub fn of_token(&self, token: &ResumeToken) -> Option<SessionId> {
        self.by_token.get(token).copied()
    }

    /// Gives `sid` a new resume token (the old one stops naming it).
    pub fn set_token(&mut self, sid: SessionId, token: ResumeToken) {
        let Some(session) = self.by_id.get_mut(&sid) else { return };
        self.by_token.remove(&session.token);
        self.by_token.insert(token.clone(), sid);
        session.token = token;
    }

    /// A socket opened; it waits for the directory's answer.
    pub fn open(&mut self, conn: ConnId, ip: IpAddr, country: Option<String>) {
        self.pending.insert(conn, (ip, country));
    }

    /// The waiting socket `conn` (gone if it closed meanwhile): its address and country.
    pub fn take_pending(&mut self, conn: ConnId) -> Option<(IpAddr, Option<String>)> {
        self.pending.remove(&conn)
    }

    /// Adds a new session; its socket is `session.conn`.
    pub fn insert(&mut self, sid: SessionId, session: Session) {
        if let Some(conn) = session.conn {
            self.by_conn.insert(conn, sid);
        }
        self.by_token.insert(session.token.clone(), sid);
        self.by_id.insert(sid, session);
    }

    /// Gives `sid` the socket `conn` from `ip`, replacing a live one or ending its
    /// grace period.
    pub fn attach(&mut self, sid: SessionId, conn: ConnId, ip: IpAddr) -> Attached {
        let session = self.by_id.get_mut(&sid).expect("attaching a session of this node");
        let replaced = session.conn.replace(conn);
        if let Some(old) = replaced {
            self.by_conn.remove(&old);
        }
        self.by_conn.insert(conn, sid);
        let returned = session.grace_until.take();
        let old_ip = std::mem::replace(&mut session.ip, ip);
        if let Some(t) = returned {
            self.grace.remove(&(t, sid));
            forget_away(&mut self.away, old_ip, sid);
        }
        Attached { replaced, returned: returned.is_some() }
    }

    /// The socket `conn` closed. If it was its session's live socket, the session is
    /// held until `until`; returns that session.
    pub fn detach(&mut self, conn: ConnId, until: Millis) -> Option<SessionId> {
        let sid = self.by_conn.remove(&conn)?;
        let session = self.by_id.get_mut(&sid).expect("a socket maps to a session of this node");
        if session.conn != Some(conn) {
            return None;
        }
        session.conn = None;
        session.grace_until = Some(until);
        self.grace.insert((until, sid));
        self.away.entry(session.ip).or_default().push_back(sid);
        Some(sid)
    }

    /// Takes a session out for good.
    pub fn remove(&mut self, sid: SessionId) -> Option<Session> {
        let session = self.by_id.remove(&sid)?;
        self.by_token.remove(&session.token);
        if let Some(conn) = session.conn {
            self.by_conn.remove(&conn);
        }
        if let Some(t) = session.grace_until {
            self.grace.remove(&(t, sid));
            forget_away(&mut self.away, session.ip, sid);
        }
        Some(session)
    }

    /// When the next grace period ends.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.grace.first().map(|&(t, _)| t)
    }

    /// A session whose grace period ended by `now`.
    pub fn expired(&self, now: Millis) -> Option<SessionId> {
        self.grace.first().filter(|&&(t, _)| t <= now).map(|&(_, sid)| sid)
    }

    /// `ip`'s session that has been away the longest.
    pub fn longest_away(&self, ip: IpAddr) -> Option<SessionId> {
        self.away.get(&ip).and_then(|q| q.front().copied())
    }

    /// Live sockets of every session.
    pub fn live_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.by_conn.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn live(&self) -> usize {
        self.by_conn.len()
    }

    pub fn grace_timers(&self) -> usize {
        self.grace.len()
    }

    pub fn away(&self) -> usize {
        self.away.values().map(VecDeque::len).sum()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// `sid` is no longer away from `ip`. Sessions usually come back soon and end in the
/// order they left, so the search is short.
fn forget_away(away: &mut HashMap<IpAddr, VecDeque<SessionId>>, ip: IpAddr, sid: SessionId) {
    if let Some(queue) = away.get_mut(&ip) {
        if let Some(i) = queue.iter().rposition(|&s| s == sid) {
            queue.remove(i);
        }
        if queue.is_empty() {
            away.remove(&ip);
        }
    }
}
