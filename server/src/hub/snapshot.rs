//! What a session carries to another node: enough to resume it there after its own
//! node drained or died. The cluster backend stores one per session, replaced at
//! each change of state (never per relayed message); the in-memory backend needs none.
//!
//! Left behind on purpose: what the inbox holds (signals are renegotiated on every
//! resume anyway; chat lines that arrived while away are lost) and the budgets (the
//! new node starts them full).

use super::model::{PastMatch, Session, Side, State};
use matcher::{Avoid, Millis};
use protocol::{LeftReason, MatchId, Preferences, ResumeToken, Role, SessionId};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A session's resumable state. Times are the saving node's until
/// [`Snapshot::shift_times`] moves them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub token: ResumeToken,
    pub ip: IpAddr,
    pub country: Option<String>,
    pub prefs: Option<Preferences>,
    pub state: Saved,
    pub avoid: Vec<Avoid>,
    pub last_match: Option<PastMatch>,
    pub reported: Vec<MatchId>,
    pub missed_left: Option<(MatchId, LeftReason)>,
    /// Its own first video frame passed moderation (absent in older snapshots).
    #[serde(default)]
    pub cleared: bool,
}

/// [`State`] without the per-node timers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Saved {
    Idle,
    Queued {
        since: Millis,
    },
    Matched {
        id: MatchId,
        peer: SessionId,
        peer_ip: IpAddr,
        role: Role,
        common_interests: Vec<String>,
        peer_country: Option<String>,
        generation: u32,
    },
}

impl Snapshot {
    pub fn of(session: &Session) -> Self {
        let state = match &session.state {
            State::Idle => Saved::Idle,
            &State::Queued { since } => Saved::Queued { since },
            State::Matched(side) => Saved::Matched {
                id: side.id,
                peer: side.peer,
                peer_ip: side.peer_ip,
                role: side.role,
                common_interests: side.common_interests.clone(),
                peer_country: side.peer_country.clone(),
                generation: side.generation,
            },
        };
        Self {
            token: session.token.clone(),
            ip: session.ip,
            country: session.country.clone(),
            prefs: session.prefs.clone(),
            state,
            avoid: session.avoid.clone(),
            last_match: session.last_match,
            reported: session.reported.clone(),
            missed_left: session.missed_left,
            cleared: session.cleared,
        }
    }

    /// The session again, without a socket (the resume attaches one).
    pub fn into_session(self) -> Session {
        let mut session = Session::new(self.token, super::model::ConnId(0), self.ip);
        session.conn = None;
        session.country = self.country;
        session.prefs = self.prefs;
        session.state = match self.state {
            Saved::Idle => State::Idle,
            Saved::Queued { since } => State::Queued { since },
            Saved::Matched { id, peer, peer_ip, role, common_interests, peer_country, generation } => {
                State::Matched(Box::new(Side {
                    id,
                    peer,
                    peer_ip,
                    role,
                    common_interests,
                    peer_country,
                    generation,
                    ready_by: None,
                    refresh_at: None,
                }))
            }
        };
        session.avoid = self.avoid;
        session.last_match = self.last_match;
        session.cleared = self.cleared;
        session.reported = self.reported;
        session.missed_left = self.missed_left;
        session
    }

    /// Moves every time by `delta` ms (saturating): onto Unix ms to leave a node, back
    /// onto the receiving node's clock on arrival.
    pub fn shift_times(&mut self, delta: i64) {
        if let Saved::Queued { since } = &mut self.state {
            *since = since.saturating_add_signed(delta);
        }
        for a in &mut self.avoid {
            if let Some(until) = &mut a.until {
                *until = until.saturating_add_signed(delta);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::model::ConnId;

    #[test]
    fn a_snapshot_round_trips_and_moves_its_times() {
        let sid = |n| SessionId(uuid::Uuid::from_u128(n));
        let mut session = Session::new(ResumeToken(uuid::Uuid::from_u128(1)), ConnId(7), "192.0.2.1".parse().unwrap());
        session.prefs = Some(Preferences::new(protocol::Mode::Video));
        session.avoid = vec![Avoid { session: sid(2), until: Some(5_000) }, Avoid { session: sid(3), until: None }];
        session.state = State::Queued { since: 1_000 };
        let mut snap = Snapshot::of(&session);
        let json = serde_json::to_string(&snap).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snap);
        snap.shift_times(10_000);
        assert_eq!(snap.state, Saved::Queued { since: 11_000 });
        assert_eq!(snap.avoid[0].until, Some(15_000));
        assert_eq!(snap.avoid[1].until, None, "forever stays forever");
        snap.shift_times(-10_000);
        let back = snap.clone().into_session();
        assert_eq!(back.conn, None, "imported without a socket");
        assert_eq!(Snapshot::of(&back), snap);
    }
}
