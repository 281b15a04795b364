//! Matchmaking as a pure state machine.
//!
//! The [`Matcher`] holds the waiting tickets of both modes and pairs them. It does no
//! I/O, takes no locks and reads no clock: the caller passes the current time (in
//! milliseconds on any monotonic scale) into every call and gets the resulting
//! [`Pair`]s back. The server runs it inside the one task that owns it; a cluster
//! matcher service can run the same code over tickets stored in Redis, because the
//! only state that must survive, the waiting tickets with their enqueue times, is
//! plain serializable data ([`Waiting`]); everything else is an index rebuilt from it.
//!
//! Rules:
//! - Video and text tickets are never paired together.
//! - A ticket with interests only accepts partners sharing at least one of them until
//!   it has waited [`Config::interest_fallback`]; then anyone compatible will do.
//! - `same_country` is honoured in both directions.
//! - A ticket lists sessions it must not meet ([`Avoid`]), until a time or forever;
//!   the rule applies if either side lists the other.
//! - Among compatible partners the best has the most common interests, then the same
//!   country, then the longest wait.
//!
//! Invariant after every call: no two waiting tickets are compatible at the time given
//! (so nobody waits while a compatible partner waits), provided the caller calls
//! [`Matcher::tick`] once the time reaches [`Matcher::next_deadline`].

use protocol::{Mode, SessionId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Milliseconds on the caller's monotonic time scale.
pub type Millis = u64;

/// Tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// How long a ticket with interests holds out for a partner sharing one.
    pub interest_fallback: Millis,
}

impl Default for Config {
    fn default() -> Self {
        Self { interest_fallback: 5_000 }
    }
}

/// A session that must not be met, until `until` (exclusive) or forever when `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Avoid {
    pub session: SessionId,
    pub until: Option<Millis>,
}

impl Avoid {
    fn active(&self, now: Millis) -> bool {
        self.until.is_none_or(|t| now < t)
    }
}

/// What a session is looking for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub session: SessionId,
    pub mode: Mode,
    /// Normalized interests (see `protocol::Preferences::normalize`).
    pub interests: Vec<String>,
    pub country: Option<String>,
    pub same_country: bool,
    /// Sessions this one must not be paired with.
    pub avoid: Vec<Avoid>,
}

/// A ticket in the queue with the time it started waiting (kept across preference
/// changes and reconnects so a session keeps its place).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub ticket: Ticket,
    pub since: Millis,
}

/// Two sessions paired. `first` waited longer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    pub first: SessionId,
    pub second: SessionId,
    pub mode: Mode,
    /// Interests both listed, in `first`'s order.
    pub common_interests: Vec<String>,
}

/// Queue order: enqueue time, then insertion sequence (unique).
type Key = (Millis, u64);

/// The matchmaking state machine. See the crate docs for the rules.
#[derive(Debug, Default)]
pub struct Matcher {
    config: Config,
    /// Waiting tickets per mode, oldest first.
    pools: BTreeMap<Mode, BTreeMap<Key, Waiting>>,
    /// Where each waiting session's ticket is.
    index: HashMap<SessionId, (Mode, Key)>,
    /// Times at which a session's compatibility may widen (fallback reached or an
    /// avoid entry expired), so that session must look for a partner again.
    deadlines: BTreeSet<(Millis, SessionId)>,
    seq: u64,
}

impl Matcher {
    /// An empty matcher.
    pub fn new(config: Config) -> Self {
        Self { config, ..Self::default() }
    }

    /// Rebuilds a matcher from saved waiting tickets (e.g. after a matcher restart),
    /// pairing whatever has become compatible by `now`.
    pub fn from_waiting(config: Config, waiting: impl IntoIterator<Item = Waiting>, now: Millis) -> (Self, Vec<Pair>) {
        let mut m = Self::new(config);
        let mut pairs = Vec::new();
        for w in waiting {
            pairs.extend(m.insert(w.ticket, w.since, now));
        }
        (m, pairs)
    }

    /// The configuration in use.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Number of waiting tickets in `mode`.
    pub fn waiting_count(&self, mode: Mode) -> usize {
        self.pools.get(&mode).map_or(0, BTreeMap::len)
    }

    /// Total number of waiting tickets.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nobody is waiting.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `session` is waiting.
    pub fn contains(&self, session: SessionId) -> bool {
        self.index.contains_key(&session)
    }

    /// Every waiting ticket, per mode oldest first: the state worth saving.
    pub fn waiting(&self) -> impl Iterator<Item = &Waiting> {
        self.pools.values().flat_map(BTreeMap::values)
    }

    /// Queues `ticket` as waiting since `since` (use `now` for a fresh join, or the
    /// original time to keep a place), replacing any ticket of the same session, and
    /// pairs whatever is compatible at `now`.
    pub fn insert(&mut self, ticket: Ticket, since: Millis, now: Millis) -> Vec<Pair> {
        let session = ticket.session;
        // A ticket replaced in place (same `since`) keeps its arrival order too, so
        // tickets enqueued in the same millisecond keep their order.
        let kept = self.index.get(&session).filter(|(_, key)| key.0 == since).map(|&(_, key)| key);
        self.remove(session);
        let key = kept.unwrap_or_else(|| {
            self.seq += 1;
            (since, self.seq - 1)
        });
        self.add_deadlines(&ticket, since, now);
        self.index.insert(session, (ticket.mode, key));
        self.pools.entry(ticket.mode).or_default().insert(key, Waiting { ticket, since });
        let mut pairs = self.tick(now);
        if let Some(pair) = self.try_match(session, now) {
            pairs.push(pair);
        }
        pairs
    }

    /// Takes `session` out of the queue, returning its ticket.
    pub fn remove(&mut self, session: SessionId) -> Option<Waiting> {
        let (mode, key) = self.index.remove(&session)?;
        let pool = self.pools.get_mut(&mode).expect("an indexed ticket's pool exists");
        let waiting = pool.remove(&key).expect("an indexed ticket is in its pool");
        if pool.is_empty() {
            self.pools.remove(&mode);
        }
        for t in self.deadline_times(&waiting.ticket, waiting.since) {
            self.deadlines.remove(&(t, session));
        }
        Some(waiting)
    }

    /// The earliest time at which [`Matcher::tick`] may pair someone.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.deadlines.first().map(|&(t, _)| t)
    }

    /// Lets time pass: sessions whose fallback or avoid entries ran out by `now` look
    /// for partners again, oldest first.
    pub fn tick(&mut self, now: Millis) -> Vec<Pair> {
        let mut due: Vec<SessionId> = Vec::new();
        while let Some(&(t, session)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            due.push(session);
        }
        due.sort_by_key(|s| self.index.get(s).map(|&(_, key)| key));
        due.dedup();
        due.into_iter().filter_map(|s| self.try_match(s, now)).collect()
    }

    /// Whether `a` and `b` may be paired at `now` (both must be waiting).
    pub fn compatible(&self, a: SessionId, b: SessionId, now: Millis) -> bool {
        match (self.get(a), self.get(b)) {
            (Some(x), Some(y)) => a != b && self.score(x, y, now).is_some(),
            _ => false,
        }
    }

    fn get(&self, session: SessionId) -> Option<&Waiting> {
        let (mode, key) = self.index.get(&session)?;
        self.pools.get(mode)?.get(key)
    }

    /// Finds the best partner for `session` and, if there is one, removes both.
    fn try_match(&mut self, session: SessionId, now: Millis) -> Option<Pair> {
        let me = self.get(session)?;
        let pool = self.pools.get(&me.ticket.mode)?;
        let mut best: Option<(Score, SessionId)> = None;
        for other in pool.values() {
            if other.ticket.session == session {
                continue;
            }
            if let Some(score) = self.score(me, other, now) {
                // Pool iteration is oldest first, so on equal scores the first found
                // (the longest waiting) stays.
                if best.as_ref().is_none_or(|(b, _)| score > *b) {
                    best = Some((score, other.ticket.session));
                }
            }
        }
        let (_, partner) = best?;
        // Queue order (enqueue time, then arrival) decides who waited longer.
        let partner_first = self.index[&partner].1 < self.index[&session].1;
        let a = self.remove(session).expect("the ticket being matched is waiting");
        let b = self.remove(partner).expect("the chosen partner is waiting");
        let (first, second) = if partner_first { (b, a) } else { (a, b) };
        let common_interests = common(&first.ticket.interests, &second.ticket.interests);
        Some(Pair {
            first: first.ticket.session,
            second: second.ticket.session,
            mode: first.ticket.mode,
            common_interests,
        })
    }

    /// `None` when `x` and `y` may not be paired at `now`; otherwise how good a pair
    /// they make (higher is better).
    fn score(&self, x: &Waiting, y: &Waiting, now: Millis) -> Option<Score> {
        let (a, b) = (&x.ticket, &y.ticket);
        if a.mode != b.mode {
            return None;
        }
        let avoids = |p: &Ticket, q: &Ticket| p.avoid.iter().any(|v| v.session == q.session && v.active(now));
        if avoids(a, b) || avoids(b, a) {
            return None;
        }
        let same_country = a.country.is_some() && a.country == b.country;
        if (a.same_country || b.same_country) && !same_country {
            return None;
        }
        let shared = a.interests.iter().filter(|i| b.interests.contains(i)).count();
        if shared == 0 && (self.strict(x, now) || self.strict(y, now)) {
            return None;
        }
        Some(Score { shared, same_country })
    }

    /// Whether `w` still insists on a common interest.
    fn strict(&self, w: &Waiting, now: Millis) -> bool {
        !w.ticket.interests.is_empty() && now < w.since.saturating_add(self.config.interest_fallback)
    }

    fn deadline_times(&self, ticket: &Ticket, since: Millis) -> impl Iterator<Item = Millis> + use<> {
        let fallback = (!ticket.interests.is_empty()).then(|| since.saturating_add(self.config.interest_fallback));
        let avoid_ends: Vec<Millis> = ticket.avoid.iter().filter_map(|a| a.until).collect();
        fallback.into_iter().chain(avoid_ends)
    }

    fn add_deadlines(&mut self, ticket: &Ticket, since: Millis, now: Millis) {
        let times: Vec<Millis> = self.deadline_times(ticket, since).filter(|&t| t > now).collect();
        for t in times {
            self.deadlines.insert((t, ticket.session));
            // The avoided session may now find this one too; waking this side is enough
            // because compatibility is symmetric.
        }
    }
}

/// Ranking of a compatible partner: compared field by field, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    /// Number of interests in common.
    shared: usize,
    /// Both gave the same country (a tie-breaker when not required).
    same_country: bool,
}

fn common(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|i| b.contains(i)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u128) -> SessionId {
        SessionId(uuid::Uuid::from_u128(n))
    }

    fn ticket(n: u128, mode: Mode, interests: &[&str]) -> Ticket {
        Ticket {
            session: sid(n),
            mode,
            interests: interests.iter().map(|s| s.to_string()).collect(),
            country: None,
            same_country: false,
            avoid: vec![],
        }
    }

    fn matcher() -> Matcher {
        Matcher::new(Config { interest_fallback: 5_000 })
    }

    #[test]
    fn two_compatible_tickets_are_paired_oldest_first() {
        let mut m = matcher();
        assert!(m.insert(ticket(1, Mode::Video, &[]), 0, 0).is_empty());
        let pairs = m.insert(ticket(2, Mode::Video, &[]), 10, 10);
        assert_eq!(pairs, vec![Pair { first: sid(1), second: sid(2), mode: Mode::Video, common_interests: vec![] }]);
        assert!(m.is_empty());
        // Within the same millisecond, arrival order decides.
        m.insert(ticket(3, Mode::Video, &[]), 20, 20);
        let pairs = m.insert(ticket(4, Mode::Video, &[]), 20, 20);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(3), sid(4)));
    }

    #[test]
    fn modes_never_mix() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Video, &[]), 0, 0);
        assert!(m.insert(ticket(2, Mode::Text, &[]), 0, 0).is_empty());
        assert_eq!((m.waiting_count(Mode::Video), m.waiting_count(Mode::Text)), (1, 1));
    }

    #[test]
    fn an_interest_match_beats_an_earlier_waiter() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Video, &[]), 0, 0);
        m.insert(ticket(2, Mode::Text, &["chess"]), 0, 0);
        // 3 has interests: it holds out for 4 (shares "music") rather than take 1.
        assert!(m.insert(ticket(3, Mode::Text, &["music", "go"]), 1, 1).is_empty());
        let pairs = m.insert(ticket(4, Mode::Text, &["go", "music"]), 2, 2);
        assert_eq!(pairs[0].first, sid(3));
        assert_eq!(pairs[0].second, sid(4));
        assert_eq!(pairs[0].common_interests, vec!["music", "go"]);
    }

    #[test]
    fn more_common_interests_win_over_longer_waiting() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Video, &["a"]), 0, 0);
        m.insert(ticket(2, Mode::Video, &["b", "c"]), 1, 1);
        let pairs = m.insert(ticket(3, Mode::Video, &["a", "b", "c"]), 2, 2);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(2), sid(3)));
    }

    #[test]
    fn interests_fall_back_to_anyone_after_the_configured_wait() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Video, &["music"]), 0, 0);
        assert!(m.insert(ticket(2, Mode::Video, &[]), 100, 100).is_empty());
        assert_eq!(m.next_deadline(), Some(5_000));
        assert!(m.tick(4_999).is_empty());
        let pairs = m.tick(5_000);
        assert_eq!(pairs.len(), 1);
        assert!(pairs[0].common_interests.is_empty());
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn same_country_is_honoured_both_ways() {
        let mut m = matcher();
        let mut de = ticket(1, Mode::Video, &[]);
        de.country = Some("DE".into());
        de.same_country = true;
        m.insert(de, 0, 0);
        let mut fr = ticket(2, Mode::Video, &[]);
        fr.country = Some("FR".into());
        assert!(m.insert(fr, 1, 1).is_empty(), "1 insists on DE");
        // 3 gives no country; 2 does not insist, so they pair.
        let pairs = m.insert(ticket(3, Mode::Video, &[]), 2, 2);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(2), sid(3)));
        let mut de2 = ticket(4, Mode::Video, &[]);
        de2.country = Some("DE".into());
        let pairs = m.insert(de2, 3, 3);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(1), sid(4)));
    }

    #[test]
    fn country_breaks_ties_between_equal_interest_counts() {
        let mut m = matcher();
        let mut older = ticket(1, Mode::Video, &[]);
        older.avoid = vec![Avoid { session: sid(2), until: None }];
        m.insert(older, 0, 0);
        let mut french = ticket(2, Mode::Video, &[]);
        french.country = Some("FR".into());
        m.insert(french, 1, 1);
        let mut me = ticket(3, Mode::Video, &[]);
        me.country = Some("FR".into());
        let pairs = m.insert(me, 2, 2);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(2), sid(3)));
    }

    #[test]
    fn avoided_sessions_wait_out_the_cooldown_and_blocks_are_forever() {
        let mut m = matcher();
        let mut a = ticket(1, Mode::Video, &[]);
        a.avoid = vec![Avoid { session: sid(2), until: Some(60_000) }, Avoid { session: sid(3), until: None }];
        m.insert(a, 0, 0);
        let mut b = ticket(2, Mode::Video, &[]);
        b.avoid = vec![Avoid { session: sid(3), until: None }];
        assert!(m.insert(b, 1, 1).is_empty(), "1 and 2 are in cooldown, even as the only two waiting");
        assert!(m.insert(ticket(3, Mode::Video, &[]), 2, 2).is_empty(), "3 is blocked by both");
        assert_eq!(m.next_deadline(), Some(60_000));
        assert!(m.tick(59_999).is_empty());
        let pairs = m.tick(60_000);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(1), sid(2)));
        assert!(m.contains(sid(3)));
        assert!(m.tick(10_000_000).is_empty());
    }

    #[test]
    fn removed_tickets_keep_their_place_when_reinserted() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Text, &["a"]), 0, 0);
        m.insert(ticket(2, Mode::Text, &["b"]), 1, 1);
        let w = m.remove(sid(1)).unwrap();
        assert_eq!(m.next_deadline(), Some(5_001), "the removed ticket's deadline is gone");
        m.insert(w.ticket, w.since, 2);
        let pairs = m.insert(ticket(3, Mode::Text, &["a", "b"]), 3, 3);
        assert_eq!(pairs[0].first, sid(1), "1 kept its original place ahead of 2");
    }

    #[test]
    fn a_ticket_replaced_in_place_keeps_its_arrival_order() {
        let mut m = matcher();
        // Same millisecond: arrival decides who waited longer.
        let apart = |n: u128, other: u128| Ticket {
            avoid: vec![Avoid { session: sid(other), until: None }],
            ..ticket(n, Mode::Text, &[])
        };
        m.insert(apart(1, 2), 7, 7);
        m.insert(apart(2, 1), 7, 7);
        // 2's ticket is renewed, then 1's: neither moves ahead of the other.
        m.insert(apart(2, 1), 7, 8);
        m.insert(apart(1, 2), 7, 8);
        let pairs = m.insert(ticket(3, Mode::Text, &[]), 9, 9);
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(1), sid(3)));
    }

    #[test]
    fn state_survives_a_round_trip_through_its_waiting_tickets() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Video, &["a"]), 0, 0);
        m.insert(ticket(2, Mode::Text, &[]), 5, 5);
        let saved: Vec<Waiting> = m.waiting().cloned().collect();
        let (restored, pairs) = Matcher::from_waiting(m.config(), saved.clone(), 10);
        assert!(pairs.is_empty());
        assert_eq!(restored.waiting().cloned().collect::<Vec<_>>(), saved);
        assert_eq!(restored.next_deadline(), Some(5_000));
    }
}
