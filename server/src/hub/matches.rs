//! Pairing and ending, one side at a time: each session changes only its own state,
//! and what its peer must do travels as an envelope (see `core`).

use super::model::{Parting, PastMatch, Session, Side, Started, State};
use matcher::{Avoid, Millis, Ticket};
use protocol::{MatchId, SessionId};
use std::net::IpAddr;

/// A session's match named by `report` or `block`: its current one or the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Named {
    pub peer: SessionId,
    pub peer_ip: IpAddr,
    /// The match is still going on.
    pub current: bool,
}

/// The match `match_id` if it is `session`'s current or last one.
pub fn named(session: &Session, match_id: MatchId) -> Option<Named> {
    if let Some(side) = session.side(match_id) {
        return Some(Named { peer: side.peer, peer_ip: side.peer_ip, current: true });
    }
    let past = session.last_match.filter(|m| m.id == match_id)?;
    Some(Named { peer: past.peer, peer_ip: past.peer_ip, current: false })
}

/// Puts a queued `session` into match `id` with `peer`. Returns when it had started
/// waiting, or `None` (and changes nothing) when it is not waiting any more.
pub fn start_side(session: &mut Session, id: MatchId, peer: SessionId, started: Started) -> Option<Millis> {
    let State::Queued { since } = session.state else {
        return None;
    };
    let Started { role, common_interests, peer_country, peer_ip } = started;
    session.state = State::Matched(Box::new(Side {
        id,
        peer,
        peer_ip,
        role,
        common_interests,
        peer_country,
        generation: 0,
        ready_by: None,
        refresh_at: None,
    }));
    session.inbox.clear();
    Some(since)
}

/// Ends `session`'s side of its match, if any: it becomes idle, remembers the match
/// for `report` / `block`, and avoids the peer as `parting` says.
pub fn end_side(session: &mut Session, parting: Parting, avoid_limit: usize) -> Option<Box<Side>> {
    if !matches!(session.state, State::Matched(_)) {
        return None;
    }
    let State::Matched(side) = std::mem::replace(&mut session.state, State::Idle) else {
        unreachable!("checked just above")
    };
    session.inbox.clear();
    session.last_match = Some(PastMatch { id: side.id, peer: side.peer, peer_ip: side.peer_ip });
    if let Some(until) = parting.avoid_until() {
        add_avoid(&mut session.avoid, side.peer, until, avoid_limit);
    }
    Some(side)
}

/// The matchmaking ticket for a queued session, without avoid entries that ran out.
pub fn ticket(sid: SessionId, session: &mut Session, now: Millis) -> Ticket {
    session.avoid.retain(|a| a.until.is_none_or(|t| t > now));
    let prefs = session.prefs.as_ref().expect("a queued session has preferences");
    Ticket {
        session: sid,
        mode: prefs.mode,
        interests: prefs.interests.clone(),
        // The connection's country, when known, is the one that counts: the pick in
        // the preferences is only a fallback for addresses the database does not know.
        country: session.country.clone().or_else(|| prefs.country.clone()),
        same_country: prefs.same_country,
        avoid: session.avoid.clone(),
    }
}

/// The country a queued session's partner may be told: the user's own pick, unless
/// the IP database knows the connection's (which is never told).
pub fn declared_country(session: &Session) -> Option<String> {
    match session.country {
        Some(_) => None,
        None => session.prefs.as_ref().and_then(|p| p.country.clone()),
    }
}

/// Records that `peer` is to be avoided until `until` (forever when `None`), keeping
/// the stronger of an existing entry and this one. At `limit` entries the one that
/// ends first makes room; blocks are kept over cooldowns.
pub fn add_avoid(list: &mut Vec<Avoid>, peer: SessionId, until: Option<Millis>, limit: usize) {
    if let Some(existing) = list.iter_mut().find(|a| a.session == peer) {
        existing.until = match (existing.until, until) {
            (None, _) | (_, None) => None,
            (Some(a), Some(b)) => Some(a.max(b)),
        };
        return;
    }
    if list.len() >= limit
        && let Some(i) = (0..list.len()).min_by_key(|&i| list[i].until.unwrap_or(Millis::MAX))
    {
        list.remove(i);
    }
    list.push(Avoid { session: peer, until });
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn sid(n: u128) -> SessionId {
        SessionId(Uuid::from_u128(n))
    }

    #[test]
    fn the_stronger_avoid_wins_and_blocks_outlive_cooldowns_at_the_limit() {
        let mut list = Vec::new();
        add_avoid(&mut list, sid(1), Some(100), 2);
        add_avoid(&mut list, sid(1), Some(50), 2);
        assert_eq!(list, [Avoid { session: sid(1), until: Some(100) }]);
        add_avoid(&mut list, sid(1), None, 2);
        assert_eq!(list[0].until, None, "a block over a cooldown is forever");
        add_avoid(&mut list, sid(2), Some(10), 2);
        add_avoid(&mut list, sid(3), Some(20), 2);
        assert_eq!(
            list,
            [Avoid { session: sid(1), until: None }, Avoid { session: sid(3), until: Some(20) }],
            "the entry ending first made room"
        );
    }
}
